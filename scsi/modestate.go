package scsi

// modeValues are the changeable mode parameters of an LU. One set is shared
// by every I_T nexus (SPC-4 allows per-nexus pages; sharing is simpler and
// is what MODE PARAMETERS CHANGED on the other nexuses is for).
type modeValues struct {
	wce    bool // caching page WCE (SBC-3 6.4.5)
	dsense bool // control page D_SENSE (SPC-4 7.5.8)
	swp    bool // control page SWP: software write protect (SPC-4 7.5.8)
}

// modeState holds current and default values; there are no saved pages
// (SAVING PARAMETERS NOT SUPPORTED).
type modeState struct {
	cur, def modeValues
}

func defaultModeState(cfg *LUConfig) modeState {
	d := modeValues{wce: cfg.WriteCache}
	return modeState{cur: d, def: d}
}

// resetToSaved restores the current values after a logical unit reset
// (SPC-4 7.5.1: current values revert to saved, or default without saved
// pages).
func (m *modeState) resetToSaved() { m.cur = m.def }
