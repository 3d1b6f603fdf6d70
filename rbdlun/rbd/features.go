//go:build rbd

package rbd

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ceph/go-ceph/rbd"
)

// imageFeatures are librbd's feature names in the order `rbd info` prints
// them; settable marks the ones an admin may ask for at create time (the
// rest librbd sets itself: data-pool with a data pool, operations and
// migrating internally).
var imageFeatures = []featureDef{
	{rbd.FeatureNameLayering, rbd.FeatureLayering, true},
	{rbd.FeatureNameStripingV2, rbd.FeatureStripingV2, true},
	{rbd.FeatureNameExclusiveLock, rbd.FeatureExclusiveLock, true},
	{rbd.FeatureNameObjectMap, rbd.FeatureObjectMap, true},
	{rbd.FeatureNameFastDiff, rbd.FeatureFastDiff, true},
	{rbd.FeatureNameDeepFlatten, rbd.FeatureDeepFlatten, true},
	{rbd.FeatureNameJournaling, rbd.FeatureJournaling, true},
	{rbd.FeatureNameDataPool, rbd.FeatureDataPool, false},
	{rbd.FeatureNameOperations, rbd.FeatureOperations, false},
	{rbd.FeatureNameMigrating, rbd.FeatureMigrating, false},
}

type featureDef struct {
	name     string
	bit      uint64
	settable bool
}

// DefaultFeatures are what CreateImage, CopyImage and CloneImage give an
// image when CreateOptions.Features is empty: Ceph's own defaults, which
// include exclusive-lock, so the gateway can lock the image.
var DefaultFeatures = []string{"layering", "exclusive-lock", "object-map", "fast-diff", "deep-flatten"}

// featureNeeds are librbd's dependencies between features, checked here so
// that the refusal names them instead of librbd's bare EINVAL.
var featureNeeds = [][2]string{
	{"object-map", "exclusive-lock"},
	{"fast-diff", "object-map"},
	{"journaling", "exclusive-lock"},
}

// parseFeatures turns feature names into librbd's bits, refusing unknown
// names, names librbd sets itself and unmet dependencies.
func parseFeatures(names []string) (uint64, error) {
	if len(names) == 0 {
		names = DefaultFeatures
	}
	var bits uint64
	for _, n := range names {
		i := slices.IndexFunc(imageFeatures, func(f featureDef) bool { return f.name == n })
		if i < 0 || !imageFeatures[i].settable {
			return 0, invalid("unknown image feature %q (known: %s)", n, strings.Join(settableFeatures(), ", "))
		}
		bits |= imageFeatures[i].bit
	}
	for _, d := range featureNeeds {
		if slices.Contains(names, d[0]) && !slices.Contains(names, d[1]) {
			return 0, invalid("image feature %s needs %s", d[0], d[1])
		}
	}
	return bits, nil
}

func settableFeatures() []string {
	var s []string
	for _, f := range imageFeatures {
		if f.settable {
			s = append(s, f.name)
		}
	}
	return s
}

// featureNames lists the features set in bits, in imageFeatures' order.
func featureNames(bits uint64) []string {
	names := []string{}
	for _, f := range imageFeatures {
		if bits&f.bit != 0 {
			names = append(names, f.name)
		}
	}
	return names
}

// missingFeature returns an ErrFeatureMissing refusal when bits lacks the
// feature named, telling the admin how to add it.
func missingFeature(spec ImageSpec, bits uint64, name, why string) error {
	for _, f := range imageFeatures {
		if f.name == name && bits&f.bit == 0 {
			return refuse(ErrFeatureMissing, nil,
				"image %s lacks the %s feature, which %s: enable it with `rbd feature enable %s %s`",
				spec, name, why, spec, name)
		}
	}
	return nil
}

// RequireFeatures checks that the open image has what the gateway's
// locking path needs: exclusive-lock (AcquireExclusiveLock, BreakLock and
// fencing all rely on it; without it librbd answers EINVAL). It returns an
// *Error of kind ErrFeatureMissing naming the feature and the command that
// enables it. Open does not call it: a backend that never takes the lock
// (a read-only export) does not need the feature.
func (b *Backend) RequireFeatures() error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.open {
		return fmt.Errorf("rbd: features: %s is not open", b.spec)
	}
	bits, err := b.img.GetFeatures()
	if err != nil {
		return failed(err, "read the features of %s", b.spec)
	}
	return missingFeature(b.spec, bits, rbd.FeatureNameExclusiveLock, "the gateway's exclusive locking and failover need")
}
