package config

import (
	"fmt"
	"path/filepath"
)

// imagesDir is the default image root, inside the data directory. The
// data directory itself is no root: it holds the API password, the
// generated TLS key and the reservations, which a file: disk must never
// be able to export.
const imagesDir = "images"

// ImageRoots returns the directories file: disks may live in: the
// configured ones, else <data_dir>/images. Each is made absolute and
// clean, so that the containment check compares like with like.
func ImageRoots(configured []string, dataDir string) ([]string, error) {
	if len(configured) == 0 {
		configured = []string{filepath.Join(dataDir, imagesDir)}
	}
	roots := make([]string, 0, len(configured))
	for _, r := range configured {
		abs, err := filepath.Abs(r)
		if err != nil {
			return nil, fmt.Errorf("image root %q: %w", r, err)
		}
		roots = append(roots, abs)
	}
	return roots, nil
}

// LocateImage splits a file: disk's path into the image root that holds
// it and the path below that root. A relative path lives under the first
// root; an absolute one must lie below one of the roots. Anything else
// (another directory, "..") is refused: whoever writes the configuration
// decides what an initiator reads, and must not be able to name
// /etc/shadow. The check is lexical; opening the image inside its root
// (os.Root) keeps symlinks from leaving it.
func LocateImage(roots []string, path string) (root, rel string, err error) {
	if !filepath.IsAbs(path) {
		if !filepath.IsLocal(path) {
			return "", "", fmt.Errorf("file image %q leaves its image root", path)
		}
		return roots[0], filepath.Clean(path), nil
	}
	for _, r := range roots {
		if rel, err := filepath.Rel(r, filepath.Clean(path)); err == nil && filepath.IsLocal(rel) {
			return r, rel, nil
		}
	}
	return "", "", fmt.Errorf("file image %s is outside the image roots %v (rbdgw serve --image-root)", path, roots)
}
