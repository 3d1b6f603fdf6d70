package scsi

// Limits advertised in the block limits VPD page (SBC-3 6.5.3) and
// enforced by the commands that they bound. The extras commands (COMPARE
// AND WRITE, UNMAP, WRITE SAME) enforce the ones that concern them.
const (
	maxCompareAndWriteBlocks = 255     // MAXIMUM COMPARE AND WRITE LENGTH (one byte)
	maxUnmapLBACount         = 1 << 20 // MAXIMUM UNMAP LBA COUNT (libiscsi: sane is <= 1Mi)
	maxUnmapDescriptors      = 256     // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
	maxWriteSameBlocks       = 1 << 22 // MAXIMUM WRITE SAME LENGTH
	optimalGranularityBytes  = 4096    // OPTIMAL TRANSFER LENGTH GRANULARITY, in bytes
)
