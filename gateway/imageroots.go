package gateway

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/rbdlun"
	"github.com/rbdgw/rbdgw/scsi"
)

// imagePath is the absolute path of a file: disk's image, checked
// against the roots.
func (g *Gateway) imagePath(bk config.Backend) (string, error) {
	root, rel, err := config.LocateImage(g.imageRoots, bk.Path)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, rel), nil
}

// openFile opens a file: disk's image inside its root, without following
// a symlink out of it (os.Root) or at its last element.
func (g *Gateway) openFile(d *config.Disk, bk config.Backend) (scsi.Backend, error) {
	rootDir, rel, err := config.LocateImage(g.imageRoots, bk.Path)
	if err != nil {
		return nil, fmt.Errorf("gateway: disk %s: %w", d.Name, err)
	}
	if err := g.checkMovedImage(d, bk, rootDir, rel); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(rootDir, 0o700); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if dir := filepath.Dir(rel); dir != "." {
		if err := root.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	// In a cluster every gateway on the machine keeps the file open; the
	// owner's ha.FileImage holds the flock instead.
	return rbdlun.OpenFileIn(root, rel, int64(d.Size), rbdlun.FileOptions{ReadOnly: d.ReadOnly, NoLock: g.ha != nil})
}

// checkMovedImage refuses, with what to do, a relative image that still
// sits where relative paths used to lead (the data directory itself):
// creating an empty image in its place would look like data loss.
func (g *Gateway) checkMovedImage(d *config.Disk, bk config.Backend, root, rel string) error {
	if filepath.IsAbs(bk.Path) {
		return nil
	}
	old := filepath.Join(g.cfg.DataDir, rel)
	if old == filepath.Join(root, rel) {
		return nil
	}
	if _, err := os.Lstat(filepath.Join(root, rel)); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := os.Lstat(old); err != nil {
		return nil
	}
	return fmt.Errorf("gateway: disk %s: its image is at %s, but relative file: paths now live under the image root %s: move it there (mv %s %s)",
		d.Name, old, root, old, filepath.Join(root, rel))
}
