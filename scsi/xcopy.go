package scsi

type xcopyResults struct{}

func registerXCopy(t *opcodeTable) {}
