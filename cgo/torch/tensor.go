package torch

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

	gotorch "github.com/wangkuiyi/gotorch"
)

// Tensor is a libtorch tensor handle (an at::Tensor*, as in gotorch). Its
// owner frees it: the Scope that made it, or whoever called Keep.
type Tensor struct {
	p     unsafe.Pointer
	owner *Scope
}

var live atomic.Int64

// LiveTensors is the number of tensor handles not yet freed; tests use it to
// show that loops free what they make.
func LiveTensors() int64 { return live.Load() }

// Close frees the tensor now. Closing twice is harmless.
func (t *Tensor) Close() {
	if t == nil || t.p == nil {
		return
	}
	C.cf_tensor_free(C.cf_tensor(t.p))
	t.p = nil
	t.owner = nil
	live.Add(-1)
}

// Gotorch returns a gotorch view of the tensor for gotorch's own functions.
// It borrows the handle: it must not outlive t.
func (t *Tensor) Gotorch() gotorch.Tensor {
	p := t.p
	return gotorch.Tensor{T: &p}
}

// Shape is the tensor's size per dimension.
func (t *Tensor) Shape() []int64 {
	if t == nil || t.p == nil {
		return nil
	}
	var dims [16]C.int64_t
	var n C.int
	if err := cerr(C.cf_tensor_shape(C.cf_tensor(t.p), &dims[0], 16, &n)); err != nil {
		return nil
	}
	out := make([]int64, int(n))
	for i := range out {
		out[i] = int64(dims[i])
	}
	return out
}

// Numel is the number of elements.
func (t *Tensor) Numel() int64 {
	n := int64(1)
	for _, d := range t.Shape() {
		n *= d
	}
	return n
}

// Device names the device that holds the tensor, e.g. "cpu" or "cuda:0".
func (t *Tensor) Device() string {
	var p *C.char
	if err := cerr(C.cf_tensor_device(C.cf_tensor(t.p), &p)); err != nil {
		return ""
	}
	return goString(p)
}

// RequiresGrad reports whether autograd tracks the tensor.
func (t *Tensor) RequiresGrad() bool {
	var f C.int
	if err := cerr(C.cf_tensor_requires_grad(C.cf_tensor(t.p), &f)); err != nil {
		return false
	}
	return f != 0
}

// SetRequiresGrad makes a leaf tensor tracked (or not) by autograd.
func (t *Tensor) SetRequiresGrad(on bool) error {
	flag := C.int(0)
	if on {
		flag = 1
	}
	return cerr(C.cf_tensor_set_requires_grad(C.cf_tensor(t.p), flag))
}

// Float32s copies the tensor's values to Go (row-major, converted to
// float32, moved to the CPU).
func (t *Tensor) Float32s() ([]float32, error) {
	if t == nil || t.p == nil {
		return nil, errors.New("read of a freed or missing tensor")
	}
	n := t.Numel()
	out := make([]float32, n)
	var dst *C.float
	if n > 0 {
		dst = (*C.float)(unsafe.Pointer(&out[0]))
	}
	err := cerr(C.cf_tensor_to_float32(C.cf_tensor(t.p), dst, C.int64_t(n)))
	runtime.KeepAlive(out)
	return out, err
}

// Item is the value of a one-element tensor.
func (t *Tensor) Item() (float32, error) {
	v, err := t.Float32s()
	if err != nil {
		return 0, err
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("item of a tensor with %d elements", len(v))
	}
	return v[0], nil
}

// Scope owns the tensors made through it and frees them all on Close. The
// first error of any operation is kept (see Err); operations after it return
// nil and do nothing, so a sequence of operations needs one check.
type Scope struct {
	owned []*Tensor
	err   error
}

// NewScope returns an empty scope.
func NewScope() *Scope { return &Scope{} }

// Err is the first error of an operation in this scope.
func (s *Scope) Err() error { return s.err }

// Fail records err as the scope's error unless one is already recorded.
func (s *Scope) Fail(err error) {
	if s.err == nil && err != nil {
		s.err = err
	}
}

// Close frees every tensor the scope still owns.
func (s *Scope) Close() {
	for _, t := range s.owned {
		if t.owner == s {
			t.Close()
		}
	}
	s.owned = s.owned[:0]
}

// Keep releases t from the scope: the caller now owns it and must Close it.
func (s *Scope) Keep(t *Tensor) *Tensor {
	if t != nil && t.owner == s {
		t.owner = nil
	}
	return t
}

// Take moves t into this scope from whichever scope owned it.
func (s *Scope) Take(t *Tensor) *Tensor {
	if t == nil || t.p == nil {
		return t
	}
	t.owner = s
	s.owned = append(s.owned, t)
	return t
}

func (s *Scope) own(p unsafe.Pointer) *Tensor {
	live.Add(1)
	return s.Take(&Tensor{p: p})
}

// Adopt takes ownership of a tensor that a gotorch function returned: its
// finalizer is removed, and the scope frees it.
func (s *Scope) Adopt(g gotorch.Tensor) *Tensor {
	if g.T == nil || *g.T == nil {
		s.Fail(errors.New("gotorch returned no tensor"))
		return nil
	}
	runtime.SetFinalizer(g.T, nil)
	return s.own(*g.T)
}

// viaGotorch runs a gotorch operation, turning its panics into the scope's error.
func (s *Scope) viaGotorch(name string, f func() gotorch.Tensor, in ...*Tensor) (out *Tensor) {
	if !s.ready(name, in) {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			s.Fail(fmt.Errorf("%s: %v", name, firstLine(fmt.Sprint(r))))
			out = nil
		}
	}()
	return s.Adopt(f())
}

func (s *Scope) ready(name string, in []*Tensor) bool {
	if s.err != nil {
		return false
	}
	for i, t := range in {
		if t == nil || t.p == nil {
			s.Fail(fmt.Errorf("%s: tensor argument %d is missing or freed", name, i))
			return false
		}
	}
	return true
}

// FromFloat32 copies data with the given shape onto a device.
func (s *Scope) FromFloat32(data []float32, shape []int64, device string) *Tensor {
	if s.err != nil {
		return nil
	}
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	if n != int64(len(data)) {
		s.Fail(fmt.Errorf("tensor of shape %v needs %d values, got %d", shape, n, len(data)))
		return nil
	}
	var src *C.float
	if len(data) > 0 {
		src = (*C.float)(unsafe.Pointer(&data[0]))
	}
	var shp *C.int64_t
	if len(shape) > 0 {
		shp = (*C.int64_t)(unsafe.Pointer(&shape[0]))
	}
	cdev := C.CString(device)
	defer C.free(unsafe.Pointer(cdev))
	var out C.cf_tensor
	err := cerr(C.cf_tensor_from_float32(src, shp, C.int(len(shape)), cdev, &out))
	runtime.KeepAlive(data)
	runtime.KeepAlive(shape)
	if err != nil {
		s.Fail(err)
		return nil
	}
	return s.own(unsafe.Pointer(out))
}

// FromUint8 copies bytes into a new uint8 tensor of the given shape on
// device: 8-bit images travel at a quarter of their float size.
func (s *Scope) FromUint8(data []uint8, shape []int64, device string) *Tensor {
	if s.err != nil {
		return nil
	}
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	if n != int64(len(data)) || n == 0 {
		s.Fail(fmt.Errorf("uint8 tensor of shape %v needs %d values, got %d", shape, n, len(data)))
		return nil
	}
	host := s.viaGotorch("from_uint8", func() gotorch.Tensor {
		return gotorch.FromBlob(unsafe.Pointer(&data[0]), gotorch.Byte, shape)
	})
	runtime.KeepAlive(data)
	if host == nil || device == "cpu" {
		return host
	}
	return s.ToDeviceOf(host, s.FromFloat32([]float32{0}, []int64{1}, device))
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
