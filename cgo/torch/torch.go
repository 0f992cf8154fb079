// Package torch is cavforge's Go binding over libtorch: gotorch's tensors
// plus the project's C++ shim (cgo/native) for what gotorch lacks. It is the
// only package of the project that talks to C.
//
// Every tensor has one owner that frees it: a Scope, or the caller of Keep.
// Device memory therefore never waits for Go's garbage collector.
package torch

// #cgo CFLAGS: -I${SRCDIR}/../native
// #cgo LDFLAGS: -L${SRCDIR}/../../build/lib -Wl,-rpath,${SRCDIR}/../../build/lib -lcavshim
// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	gotorch "github.com/wangkuiyi/gotorch"
)

func init() {
	// gotorch's init limits libtorch to half the cores; cavforge is a batch
	// tool that owns the machine unless the user says otherwise.
	if os.Getenv("OMP_NUM_THREADS") == "" && os.Getenv("MKL_NUM_THREADS") == "" {
		SetNumThreads(runtime.NumCPU())
	}
}

// cerr turns a shim error string into a Go error and frees it.
func cerr(p *C.char) error {
	if p == nil {
		return nil
	}
	msg := C.GoString(p)
	C.cf_free(unsafe.Pointer(p))
	return errors.New(firstLine(msg))
}

// goString copies and frees a string the shim allocated.
func goString(p *C.char) string {
	s := C.GoString(p)
	C.cf_free(unsafe.Pointer(p))
	return s
}

// Version is the libtorch version the shim was compiled against.
func Version() string { return C.GoString(C.cf_torch_version()) }

// CUDAAvailable reports whether libtorch sees a usable CUDA device.
func CUDAAvailable() bool { return gotorch.IsCUDAAvailable() }

// CUDADevices lists the names of the CUDA devices.
func CUDADevices() ([]string, error) {
	n := int(C.cf_cuda_device_count())
	var names []string
	for i := 0; i < n; i++ {
		var p *C.char
		if err := cerr(C.cf_cuda_device_name(C.int(i), &p)); err != nil {
			return names, err
		}
		names = append(names, goString(p))
	}
	return names, nil
}

// SetNumThreads sets libtorch's intra-op thread count.
func SetNumThreads(n int) { C.cf_set_num_threads(C.int(n)) }

// NumThreads is libtorch's intra-op thread count.
func NumThreads() int { return int(C.cf_num_threads()) }

// ResolveDevice turns auto|cpu|cuda|cuda:N into a concrete device name, or an
// error when CUDA is asked for and absent. fellBack is true when auto chose
// the CPU because no GPU was found.
func ResolveDevice(dev string) (name string, fellBack bool, err error) {
	switch {
	case dev == "" || dev == "auto":
		if CUDAAvailable() {
			return "cuda:0", false, nil
		}
		return "cpu", true, nil
	case dev == "cpu":
		return "cpu", false, nil
	case dev == "cuda" || strings.HasPrefix(dev, "cuda:"):
		if !CUDAAvailable() {
			return "", false, fmt.Errorf("device %q requested but CUDA is not available (use device: auto to fall back to the CPU)", dev)
		}
		if dev == "cuda" {
			return "cuda:0", false, nil
		}
		var idx int
		if _, err := fmt.Sscanf(dev, "cuda:%d", &idx); err != nil || idx < 0 {
			return "", false, fmt.Errorf("device %q: want cuda:N", dev)
		}
		if n := int(C.cf_cuda_device_count()); idx >= n {
			return "", false, fmt.Errorf("device %q does not exist (%d CUDA devices)", dev, n)
		}
		return dev, false, nil
	}
	return "", false, fmt.Errorf("device %q: want auto, cpu, cuda or cuda:N", dev)
}

// Synchronize waits for all work queued on a CUDA device; no-op on the CPU.
func Synchronize(device string) error {
	idx, ok := cudaIndex(device)
	if !ok {
		return nil
	}
	return cerr(C.cf_cuda_synchronize(C.int(idx)))
}

// DeviceMemory is what the CUDA caching allocator holds on one device.
type DeviceMemory struct{ Allocated, Reserved, Peak int64 }

// CUDAMemory reports allocator statistics; zero on the CPU.
func CUDAMemory(device string) (DeviceMemory, error) {
	var m DeviceMemory
	idx, ok := cudaIndex(device)
	if !ok {
		return m, nil
	}
	var a, r, p C.int64_t
	err := cerr(C.cf_cuda_memory(C.int(idx), &a, &r, &p))
	return DeviceMemory{int64(a), int64(r), int64(p)}, err
}

func cudaIndex(device string) (int, bool) {
	if device == "cuda" {
		return 0, true
	}
	var idx int
	if _, err := fmt.Sscanf(device, "cuda:%d", &idx); err == nil {
		return idx, true
	}
	return 0, false
}
