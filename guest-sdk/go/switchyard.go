// Package switchyard is the Switchyard strategy ABI v1 for Go (GOOS=wasip1,
// GOARCH=wasm, -buildmode=c-shared): it exports switchyard_abi_version and
// switchyard_input, and reads the input buffer. docs/abi.md documents every
// offset; docs/strategies.md the build.
//
// A strategy is a main package that imports this one and exports its
// decision:
//
//	//go:wasmexport switchyard_decide
//	func decide(n int32) int32 {
//		in := switchyard.Current(n)
//		for i := uint32(0); i < in.Count(); i++ {
//			if in.Eligible(i) {
//				return int32(i)
//			}
//		}
//		return -1
//	}
//
//	func main() {}
//
// -buildmode=c-shared makes a WASI reactor: the host calls its _initialize
// (the Go runtime's start) once per instance, before anything else.
package switchyard

import (
	"encoding/binary"
	"unsafe"
)

// ABIVersion is what switchyard_abi_version returns.
const ABIVersion = 1

// Parts of the input, for a switchyard_reads export.
const (
	ReadsCandidates = 1
	ReadsRequest    = 2
	ReadsTarget     = 4
	ReadsHeaders    = 8
	ReadsTLS        = 16
	ReadsSequence   = 32
	ReadsAll        = 63
)

// Candidate flags.
const (
	FlagHealthy  = 1
	FlagDraining = 2
)

// Offsets of the header, the candidate record and the request section.
const (
	hCandidateCount   = 8
	hCandidateStride  = 12
	hCandidatesOffset = 16
	hRequestOffset    = 20
	hSequence         = 24
	hRandom           = 32
	hNowMs            = 40

	CID          = 0
	CWorker      = 4
	CFlags       = 8
	CWeight      = 12
	CActive      = 16
	CInFlight    = 20
	CFailures    = 32
	CEwmaUs      = 36
	CCPUPermille = 40

	rProtocol      = 0
	rAttempt       = 4
	rHeaderCount   = 24
	rHeadersOffset = 28
	rFailedCount   = 32
	rFailedOffset  = 36
	RMethod        = 40
	RPath          = 48
	RAuthority     = 56
	RSNI           = 64
	RALPN          = 72
	headerEntryLen = 16
)

// The input buffer. Go's collector never moves objects, so its address
// stays valid while this variable holds it.
var buffer []byte

//go:wasmexport switchyard_abi_version
func abiVersion() int32 { return ABIVersion }

//go:wasmexport switchyard_input
func input(capacity int32) int32 {
	if int(capacity) > len(buffer) || buffer == nil {
		buffer = make([]byte, max(int(capacity), 1024))
	}
	return int32(uintptr(unsafe.Pointer(&buffer[0])))
}

// Input is one decision's input.
type Input struct{ b []byte }

// Current is the input of this call: n is switchyard_decide's argument.
func Current(n int32) Input { return Input{buffer[:n]} }

func (in Input) u32(off uint32) uint32 { return binary.LittleEndian.Uint32(in.b[off:]) }
func (in Input) u64(off uint32) uint64 { return binary.LittleEndian.Uint64(in.b[off:]) }

// Count is the number of candidates.
func (in Input) Count() uint32 { return in.u32(hCandidateCount) }

// Sequence is the generation's decision count (for round-robin).
func (in Input) Sequence() uint64 { return in.u64(hSequence) }

// Random is fresh random bits for this decision.
func (in Input) Random() uint64 { return in.u64(hRandom) }

// NowMs is the host's clock in milliseconds.
func (in Input) NowMs() uint64 { return in.u64(hNowMs) }

// candidate is the offset of record i, through the header's stride (never
// assume 64: later hosts may append fields).
func (in Input) candidate(i uint32) uint32 {
	stride := uint32(binary.LittleEndian.Uint16(in.b[hCandidateStride:]))
	return in.u32(hCandidatesOffset) + i*stride
}

// Field is a u32 field of candidate i (CActive, CWeight, ...).
func (in Input) Field(i uint32, field uint32) uint32 { return in.u32(in.candidate(i) + field) }

func (in Input) request() uint32 { return in.u32(hRequestOffset) }

// Protocol is 0 opaque, 1 HTTP/1, 2 HTTP/2, 3 HTTP/3, 4 TLS.
func (in Input) Protocol() uint8 { return in.b[in.request()+rProtocol] }

// Attempt is 0 on the first decision, then the retry number.
func (in Input) Attempt() uint32 { return in.u32(in.request() + rAttempt) }

// String is a request string: RMethod, RPath, RAuthority, RSNI or RALPN.
func (in Input) String(field uint32) []byte {
	r := in.request()
	off, n := in.u32(r+field), in.u32(r+field+4)
	return in.b[off : off+n]
}

// Failed reports whether candidate i already failed for this request.
func (in Input) Failed(i uint32) bool {
	r := in.request()
	n, at := in.u32(r+rFailedCount), in.u32(r+rFailedOffset)
	for k := uint32(0); k < n; k++ {
		if in.u32(at+4*k) == i {
			return true
		}
	}
	return false
}

// Eligible: healthy, not draining, weight above 0, not failed for this
// request.
func (in Input) Eligible(i uint32) bool {
	return in.Field(i, CFlags)&(FlagHealthy|FlagDraining) == FlagHealthy &&
		in.Field(i, CWeight) > 0 && !in.Failed(i)
}

// Header is the first header called name (lower-case: the host lower-cases
// names), and whether there was one.
func (in Input) Header(name string) ([]byte, bool) {
	r := in.request()
	n, e := in.u32(r+rHeaderCount), in.u32(r+rHeadersOffset)
	for k := uint32(0); k < n; k, e = k+1, e+headerEntryLen {
		off, l := in.u32(e), in.u32(e+4)
		if string(in.b[off:off+l]) == name {
			off, l = in.u32(e+8), in.u32(e+12)
			return in.b[off : off+l], true
		}
	}
	return nil, false
}
