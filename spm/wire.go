package spm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Protocol buffer wire types used by ModelProto.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// field is one protobuf field exactly as it appeared on the wire. Messages are
// kept as ordered field lists so that fields this package does not know about
// survive a read and write unchanged.
type field struct {
	num  int
	wire int
	val  uint64 // varint, fixed32 and fixed64 values
	data []byte // length-delimited payload
}

// fields is a message in wire order.
type fields []field

var errTruncated = errors.New("truncated protobuf data")

func readVarint(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1, nil
		}
	}
	if len(b) >= 10 {
		return 0, 0, errors.New("varint longer than 10 bytes")
	}
	return 0, 0, errTruncated
}

// parseFields splits b into its fields. The payloads alias b.
func parseFields(b []byte) (fields, error) {
	var fs fields
	for off := 0; off < len(b); {
		key, n, err := readVarint(b[off:])
		if err != nil {
			return nil, fmt.Errorf("at byte %d: %w", off, err)
		}
		start := off
		off += n
		f := field{num: int(key >> 3), wire: int(key & 7)}
		if f.num <= 0 || f.num > 1<<29-1 {
			return nil, fmt.Errorf("at byte %d: invalid field number %d", start, f.num)
		}
		switch f.wire {
		case wireVarint:
			f.val, n, err = readVarint(b[off:])
			if err != nil {
				return nil, fmt.Errorf("field %d at byte %d: %w", f.num, start, err)
			}
			off += n
		case wireFixed64:
			if len(b)-off < 8 {
				return nil, fmt.Errorf("field %d at byte %d: %w", f.num, start, errTruncated)
			}
			f.val = binary.LittleEndian.Uint64(b[off:])
			off += 8
		case wireFixed32:
			if len(b)-off < 4 {
				return nil, fmt.Errorf("field %d at byte %d: %w", f.num, start, errTruncated)
			}
			f.val = uint64(binary.LittleEndian.Uint32(b[off:]))
			off += 4
		case wireBytes:
			l, n, err := readVarint(b[off:])
			if err != nil {
				return nil, fmt.Errorf("field %d at byte %d: %w", f.num, start, err)
			}
			off += n
			if l > uint64(len(b)-off) {
				return nil, fmt.Errorf("field %d at byte %d: length %d runs past the end (%d bytes left): %w", f.num, start, l, len(b)-off, errTruncated)
			}
			f.data = b[off : off+int(l)]
			off += int(l)
		default:
			return nil, fmt.Errorf("field %d at byte %d: unsupported wire type %d", f.num, start, f.wire)
		}
		fs = append(fs, f)
	}
	return fs, nil
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func (f field) appendTo(b []byte) []byte {
	b = appendVarint(b, uint64(f.num)<<3|uint64(f.wire))
	switch f.wire {
	case wireVarint:
		b = appendVarint(b, f.val)
	case wireFixed64:
		b = binary.LittleEndian.AppendUint64(b, f.val)
	case wireFixed32:
		b = binary.LittleEndian.AppendUint32(b, uint32(f.val))
	case wireBytes:
		b = appendVarint(b, uint64(len(f.data)))
		b = append(b, f.data...)
	}
	return b
}

func (fs fields) appendTo(b []byte) []byte {
	for _, f := range fs {
		b = f.appendTo(b)
	}
	return b
}

// last returns the last occurrence of field num, as protobuf's
// "last one wins" rule for singular fields says.
func (fs fields) last(num int) (field, bool) {
	for i := len(fs) - 1; i >= 0; i-- {
		if fs[i].num == num {
			return fs[i], true
		}
	}
	return field{}, false
}

// set replaces field num (all occurrences) by f, keeping the position of the
// first occurrence, or inserts it before the first field with a larger number.
func (fs *fields) set(f field) {
	out := (*fs)[:0:0]
	placed := false
	for _, g := range *fs {
		if g.num == f.num {
			if !placed {
				out = append(out, f)
				placed = true
			}
			continue
		}
		if !placed && g.num > f.num {
			out = append(out, f)
			placed = true
		}
		out = append(out, g)
	}
	if !placed {
		out = append(out, f)
	}
	*fs = out
}

// remove deletes every occurrence of field num.
func (fs *fields) remove(num int) {
	out := (*fs)[:0:0]
	for _, g := range *fs {
		if g.num != num {
			out = append(out, g)
		}
	}
	*fs = out
}

func float32Field(num int, v float32) field {
	return field{num: num, wire: wireFixed32, val: uint64(math.Float32bits(v))}
}
