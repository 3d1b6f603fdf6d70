package rbdlun

import "github.com/rbdgw/rbdgw/scsi"

// The sixteen combinations of optional interfaces a wrapper may need to
// expose, so that a type assertion on the wrapper succeeds exactly when it
// succeeds on the inner backend.

type wrapBase struct {
	*base
}

type wrapZ struct {
	*base
	zeroer
}

type wrapS struct {
	*base
	sameWriter
}

type wrapZS struct {
	*base
	zeroer
	sameWriter
}

type wrapC struct {
	*base
	compareWriter
}

type wrapZC struct {
	*base
	zeroer
	compareWriter
}

type wrapSC struct {
	*base
	sameWriter
	compareWriter
}

type wrapZSC struct {
	*base
	zeroer
	sameWriter
	compareWriter
}

type wrapM struct {
	*base
	mapper
}

type wrapZM struct {
	*base
	zeroer
	mapper
}

type wrapSM struct {
	*base
	sameWriter
	mapper
}

type wrapZSM struct {
	*base
	zeroer
	sameWriter
	mapper
}

type wrapCM struct {
	*base
	compareWriter
	mapper
}

type wrapZCM struct {
	*base
	zeroer
	compareWriter
	mapper
}

type wrapSCM struct {
	*base
	sameWriter
	compareWriter
	mapper
}

type wrapZSCM struct {
	*base
	zeroer
	sameWriter
	compareWriter
	mapper
}

// wrap returns inner wrapped by ic, with the optional interfaces of inner.
func wrap(inner scsi.Backend, ic interceptor) scsi.Backend {
	b := &base{inner: inner, ic: ic}
	mask := 0
	if _, ok := inner.(scsi.WriteZeroer); ok {
		mask |= 1
	}
	if _, ok := inner.(scsi.SameWriter); ok {
		mask |= 2
	}
	if _, ok := inner.(scsi.CompareWriter); ok {
		mask |= 4
	}
	if _, ok := inner.(scsi.AllocationMapper); ok {
		mask |= 8
	}
	switch mask {
	case 0:
		return wrapBase{b}
	case 1:
		return wrapZ{b, zeroer{b}}
	case 2:
		return wrapS{b, sameWriter{b}}
	case 3:
		return wrapZS{b, zeroer{b}, sameWriter{b}}
	case 4:
		return wrapC{b, compareWriter{b}}
	case 5:
		return wrapZC{b, zeroer{b}, compareWriter{b}}
	case 6:
		return wrapSC{b, sameWriter{b}, compareWriter{b}}
	case 7:
		return wrapZSC{b, zeroer{b}, sameWriter{b}, compareWriter{b}}
	case 8:
		return wrapM{b, mapper{b}}
	case 9:
		return wrapZM{b, zeroer{b}, mapper{b}}
	case 10:
		return wrapSM{b, sameWriter{b}, mapper{b}}
	case 11:
		return wrapZSM{b, zeroer{b}, sameWriter{b}, mapper{b}}
	case 12:
		return wrapCM{b, compareWriter{b}, mapper{b}}
	case 13:
		return wrapZCM{b, zeroer{b}, compareWriter{b}, mapper{b}}
	case 14:
		return wrapSCM{b, sameWriter{b}, compareWriter{b}, mapper{b}}
	case 15:
		return wrapZSCM{b, zeroer{b}, sameWriter{b}, compareWriter{b}, mapper{b}}
	}
	panic("unreachable")
}
