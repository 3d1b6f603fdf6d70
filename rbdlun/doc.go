// Package rbdlun holds LUN backends (implementations of scsi.Backend) and
// the wrappers that add behaviour around any backend.
//
//   - FileBackend: a (sparse) file, the embedded default. Discard punches
//     holes, zeroing uses fallocate, durability is fdatasync.
//   - WithFaults: fails chosen operations, for tests.
//   - WithStallDetection: reports operations that take longer than a
//     threshold, watched by one ticker goroutine.
//
// Wrappers forward exactly the optional interfaces (scsi.WriteZeroer,
// scsi.SameWriter, scsi.CompareWriter, scsi.AllocationMapper) that the
// wrapped backend implements, so the device server's type assertions see
// the same capabilities with or without the wrapper. Unwrap returns the
// inner backend.
//
// The librbd backend will live in its own package (cgo), so that this one
// builds and tests without librbd.
package rbdlun
