//go:build rbd

package rbd

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

// CreateNamespace creates namespace in pool (an rbd pool: `rbd pool init`).
// ErrNamespaceExists when it exists.
func (c *Cluster) CreateNamespace(ctx context.Context, pool, namespace string) error {
	if err := checkName("namespace", namespace); err != nil {
		return err
	}
	return c.withNamespace(ctx, pool, "", func(ioctx *rados.IOContext) error {
		err := rbd.NamespaceCreate(ioctx, namespace)
		switch {
		case err == nil:
			return nil
		case is(err, syscall.EEXIST):
			return refuse(ErrNamespaceExists, err, "namespace %s/%s already exists", pool, namespace)
		}
		return failed(err, "create namespace %s/%s", pool, namespace)
	})
}

// RemoveNamespace removes an empty namespace: ErrNamespaceNotEmpty (naming
// what is left) while it holds images or trash entries,
// ErrNamespaceNotFound when it does not exist.
func (c *Cluster) RemoveNamespace(ctx context.Context, pool, namespace string) error {
	if err := checkName("namespace", namespace); err != nil {
		return err
	}
	return c.withNamespace(ctx, pool, "", func(ioctx *rados.IOContext) error {
		if err := requireNamespace(ioctx, pool, namespace); err != nil {
			return err
		}
		err := rbd.NamespaceRemove(ioctx, namespace)
		switch {
		case err == nil:
			return nil
		case is(err, syscall.ENOENT):
			return refuse(ErrNamespaceNotFound, err, "namespace %s/%s does not exist", pool, namespace)
		case is(err, syscall.EBUSY), is(err, syscall.ENOTEMPTY):
			return namespaceNotEmpty(ioctx, pool, namespace, err)
		}
		return failed(err, "remove namespace %s/%s", pool, namespace)
	})
}

// namespaceNotEmpty names what is left in pool/namespace.
func namespaceNotEmpty(ioctx *rados.IOContext, pool, namespace string, cause error) error {
	ioctx.SetNamespace(namespace)
	defer ioctx.SetNamespace("")
	var left []string
	if names, err := rbd.GetImageNames(ioctx); err == nil && len(names) > 0 {
		slices.Sort(names)
		left = append(left, fmt.Sprintf("images %s", strings.Join(names, ", ")))
	}
	if trash, err := trashList(ioctx); err == nil && len(trash) > 0 {
		left = append(left, fmt.Sprintf("%d trash entries", len(trash)))
	}
	if len(left) == 0 {
		left = []string{"librbd reports it in use"}
	}
	return refuse(ErrNamespaceNotEmpty, cause, "namespace %s/%s is not empty (%s): remove or purge them first",
		pool, namespace, strings.Join(left, "; "))
}

// ListNamespaces names the namespaces of pool, sorted.
func (c *Cluster) ListNamespaces(ctx context.Context, pool string) ([]string, error) {
	var names []string
	err := c.withNamespace(ctx, pool, "", func(ioctx *rados.IOContext) error {
		var err error
		if names, err = rbd.NamespaceList(ioctx); err != nil {
			return failed(err, "list the namespaces of %s", pool)
		}
		slices.Sort(names)
		return nil
	})
	return names, err
}
