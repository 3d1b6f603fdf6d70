//go:build rbd

package rbd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// The refusals of the image lifecycle calls (image.go, snapshot.go,
// clone.go, trash.go, namespace.go). Each call returns an *Error whose Kind
// is one of these, so callers (the REST API, gwcli) pick an answer with
// errors.Is and show the admin Error()'s sentence, which names the image or
// snapshot and says what to do.
var (
	ErrImageNotFound      = errors.New("image not found")
	ErrImageExists        = errors.New("image already exists")
	ErrSnapshotNotFound   = errors.New("snapshot not found")
	ErrSnapshotExists     = errors.New("snapshot already exists")
	ErrSnapshotProtected  = errors.New("snapshot is protected")
	ErrImageHasSnapshots  = errors.New("image has snapshots")
	ErrImageHasChildren   = errors.New("image has clones")
	ErrImageBusy          = errors.New("image is in use")
	ErrParentNotProtected = errors.New("parent snapshot is not protected")
	ErrNamespaceNotEmpty  = errors.New("namespace is not empty")
	ErrNamespaceNotFound  = errors.New("namespace not found")
	ErrNamespaceExists    = errors.New("namespace already exists")
	ErrTrashNotExpired    = errors.New("trash entry not expired")
	ErrShrinkRefused      = errors.New("shrink refused")
	ErrPoolNotFound       = errors.New("pool not found")
	ErrInvalidArgument    = errors.New("invalid argument")
	// ErrFeatureMissing: the image lacks a feature the gateway needs (see
	// RequireFeatures).
	ErrFeatureMissing = errors.New("image feature missing")
)

// Error is a refused or failed lifecycle operation.
type Error struct {
	// Kind is one of the Err* sentinels above, or nil for a failure that
	// fits none of them (then Cause says what librbd reported).
	Kind error
	// Msg is the sentence for the admin, without the "rbd: " prefix.
	Msg string
	// Children lists the clones that block the operation (Kind
	// ErrImageHasChildren).
	Children []ImageSpec
	// Cause is librbd's or rados' error (a syscall.Errno inside), if any.
	Cause error
}

func (e *Error) Error() string { return "rbd: " + e.Msg }

// Unwrap lets errors.Is match both the Kind and librbd's errno.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

// refuse builds an *Error of kind with a formatted sentence.
func refuse(kind, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), Cause: cause}
}

// failed wraps an error no sentinel fits: the sentence says what was being
// done and librbd's reason.
func failed(cause error, format string, args ...any) error {
	if e := (*Error)(nil); errors.As(cause, &e) {
		return cause // already explained
	}
	if ce := contextErr(cause); ce != nil {
		return ce
	}
	msg := fmt.Sprintf(format, args...)
	return &Error{Msg: fmt.Sprintf("%s: %v", msg, errnoText(cause)), Cause: cause}
}

// contextErr returns cause if it is a context error: cancellation passes
// through unwrapped, as callers expect from a ctx-taking call.
func contextErr(cause error) error {
	if errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded) {
		return cause
	}
	return nil
}

// errnoText is librbd's reason in words ("Device or resource busy") rather
// than go-ceph's "rbd: ret=-16, ..." form.
func errnoText(err error) string {
	if e := code(err); e != 0 {
		return e.Error()
	}
	return strings.TrimPrefix(err.Error(), "rbd: ")
}

// invalid is an ErrInvalidArgument refusal.
func invalid(format string, args ...any) *Error {
	return refuse(ErrInvalidArgument, nil, format, args...)
}

// is reports whether err carries librbd errno e.
func is(err error, e syscall.Errno) bool { return err != nil && code(err) == e }

// code is the errno in err: a syscall.Errno of ours (image_progress.go) or
// go-ceph's error code.
func code(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return errno(err)
}

// checkName refuses an empty image, snapshot or namespace name and one with
// a character that would make "pool/ns/image@snap" ambiguous.
func checkName(what, name string) error {
	if name == "" {
		return invalid("%s name is empty", what)
	}
	if strings.ContainsAny(name, "/@") || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' }) {
		return invalid("%s name %q may not contain '/', '@' or control characters", what, name)
	}
	return nil
}

// checkSpec refuses an incomplete or malformed image spec.
func checkSpec(spec ImageSpec) error {
	if err := checkName("pool", spec.Pool); err != nil {
		return err
	}
	if spec.Namespace != "" {
		if err := checkName("namespace", spec.Namespace); err != nil {
			return err
		}
	}
	return checkName("image", spec.Image)
}
