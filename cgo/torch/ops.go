package torch

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"

	gotorch "github.com/wangkuiyi/gotorch"
)

// op calls one of the shim's named operations (see cgo/native/shim.cc).
func (s *Scope) op(name string, in []*Tensor, f []float64, i []int64) *Tensor {
	if !s.ready(name, in) {
		return nil
	}
	handles := make([]C.cf_tensor, len(in)+1)
	for k, t := range in {
		handles[k] = C.cf_tensor(t.p)
	}
	fs := append(append([]float64(nil), f...), 0)
	is := append(append([]int64(nil), i...), 0)
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var out C.cf_tensor
	err := cerr(C.cf_op(cname, &handles[0], C.int(len(in)),
		(*C.double)(unsafe.Pointer(&fs[0])), C.int(len(f)),
		(*C.int64_t)(unsafe.Pointer(&is[0])), C.int(len(i)), &out))
	runtime.KeepAlive(handles)
	runtime.KeepAlive(fs)
	runtime.KeepAlive(is)
	if err != nil {
		s.Fail(fmt.Errorf("%s: %w", name, err))
		return nil
	}
	return s.own(unsafe.Pointer(out))
}

// Arithmetic. Shapes broadcast as in libtorch.

func (s *Scope) Add(a, b *Tensor) *Tensor { return s.op("add", []*Tensor{a, b}, nil, nil) }
func (s *Scope) Sub(a, b *Tensor) *Tensor { return s.op("sub", []*Tensor{a, b}, nil, nil) }
func (s *Scope) Mul(a, b *Tensor) *Tensor { return s.op("mul", []*Tensor{a, b}, nil, nil) }
func (s *Scope) Div(a, b *Tensor) *Tensor { return s.op("div", []*Tensor{a, b}, nil, nil) }
func (s *Scope) AddScalar(a *Tensor, v float64) *Tensor {
	return s.op("add_scalar", []*Tensor{a}, []float64{v}, nil)
}
func (s *Scope) MulScalar(a *Tensor, v float64) *Tensor {
	return s.op("mul_scalar", []*Tensor{a}, []float64{v}, nil)
}
func (s *Scope) PowScalar(a *Tensor, v float64) *Tensor {
	return s.op("pow_scalar", []*Tensor{a}, []float64{v}, nil)
}
func (s *Scope) Neg(a *Tensor) *Tensor        { return s.op("neg", []*Tensor{a}, nil, nil) }
func (s *Scope) Abs(a *Tensor) *Tensor        { return s.op("abs", []*Tensor{a}, nil, nil) }
func (s *Scope) Sign(a *Tensor) *Tensor       { return s.op("sign", []*Tensor{a}, nil, nil) }
func (s *Scope) Sqrt(a *Tensor) *Tensor       { return s.op("sqrt", []*Tensor{a}, nil, nil) }
func (s *Scope) Exp(a *Tensor) *Tensor        { return s.op("exp", []*Tensor{a}, nil, nil) }
func (s *Scope) Log(a *Tensor) *Tensor        { return s.op("log", []*Tensor{a}, nil, nil) }
func (s *Scope) Round(a *Tensor) *Tensor      { return s.op("round", []*Tensor{a}, nil, nil) }
func (s *Scope) Trunc(a *Tensor) *Tensor      { return s.op("trunc", []*Tensor{a}, nil, nil) }
func (s *Scope) LogSigmoid(a *Tensor) *Tensor { return s.op("logsigmoid", []*Tensor{a}, nil, nil) }
func (s *Scope) Maximum(a, b *Tensor) *Tensor { return s.op("maximum", []*Tensor{a, b}, nil, nil) }
func (s *Scope) Minimum(a, b *Tensor) *Tensor { return s.op("minimum", []*Tensor{a, b}, nil, nil) }

// Clamp limits a to [lo, hi].
func (s *Scope) Clamp(a *Tensor, lo, hi float64) *Tensor {
	return s.op("clamp", []*Tensor{a}, []float64{lo, hi}, nil)
}

// ClampTensor limits a elementwise to [lo, hi].
func (s *Scope) ClampTensor(a, lo, hi *Tensor) *Tensor {
	return s.op("clamp_tensor", []*Tensor{a, lo, hi}, nil, nil)
}

// GtScalar is 1 where a > v, else 0, in a's dtype.
func (s *Scope) GtScalar(a *Tensor, v float64) *Tensor {
	return s.op("gt_scalar", []*Tensor{a}, []float64{v}, nil)
}

// gotorch covers these.

func (s *Scope) Sigmoid(a *Tensor) *Tensor {
	return s.viaGotorch("sigmoid", func() gotorch.Tensor { return gotorch.Sigmoid(a.Gotorch()) }, a)
}
func (s *Scope) Relu(a *Tensor) *Tensor {
	return s.viaGotorch("relu", func() gotorch.Tensor { return gotorch.Relu(a.Gotorch()) }, a)
}
func (s *Scope) Tanh(a *Tensor) *Tensor {
	return s.viaGotorch("tanh", func() gotorch.Tensor { return gotorch.Tanh(a.Gotorch()) }, a)
}

// MM is the matrix product of two 2-D tensors.
func (s *Scope) MM(a, b *Tensor) *Tensor {
	return s.viaGotorch("mm", func() gotorch.Tensor { return gotorch.MM(a.Gotorch(), b.Gotorch()) }, a, b)
}

// Transpose swaps two dimensions.
func (s *Scope) Transpose(a *Tensor, d0, d1 int64) *Tensor {
	return s.viaGotorch("transpose", func() gotorch.Tensor { return gotorch.Transpose(a.Gotorch(), d0, d1) }, a)
}

// Matmul is libtorch's broadcasting matrix product.
func (s *Scope) Matmul(a, b *Tensor) *Tensor { return s.op("matmul", []*Tensor{a, b}, nil, nil) }

// Reductions.

func (s *Scope) Sum(a *Tensor) *Tensor  { return s.op("sum", []*Tensor{a}, nil, nil) }
func (s *Scope) Mean(a *Tensor) *Tensor { return s.op("mean", []*Tensor{a}, nil, nil) }
func (s *Scope) SumDims(a *Tensor, keep bool, dims ...int64) *Tensor {
	return s.op("sum_dims", []*Tensor{a}, []float64{b2f(keep)}, dims)
}
func (s *Scope) MeanDims(a *Tensor, keep bool, dims ...int64) *Tensor {
	return s.op("mean_dims", []*Tensor{a}, []float64{b2f(keep)}, dims)
}

// NormDims is the L2 norm over dims.
func (s *Scope) NormDims(a *Tensor, keep bool, dims ...int64) *Tensor {
	return s.op("norm_dims", []*Tensor{a}, []float64{b2f(keep)}, dims)
}
func (s *Scope) AmaxDims(a *Tensor, keep bool, dims ...int64) *Tensor {
	return s.op("amax_dims", []*Tensor{a}, []float64{b2f(keep)}, dims)
}
func (s *Scope) Argmax(a *Tensor, dim int64) *Tensor {
	return s.op("argmax", []*Tensor{a}, nil, []int64{dim})
}
func (s *Scope) Softmax(a *Tensor, dim int64) *Tensor {
	return s.op("softmax", []*Tensor{a}, nil, []int64{dim})
}
func (s *Scope) LogSoftmax(a *Tensor, dim int64) *Tensor {
	return s.op("log_softmax", []*Tensor{a}, nil, []int64{dim})
}

// AllFinite is true when a holds no NaN or Inf.
func (s *Scope) AllFinite(a *Tensor) (bool, error) {
	sc := NewScope()
	defer sc.Close()
	sc.Fail(s.err)
	v, err := sc.Item(sc.op("isfinite_all", []*Tensor{a}, nil, nil))
	return v != 0, err
}

// Item reads a one-element tensor, or reports the scope's error.
func (s *Scope) Item(a *Tensor) (float32, error) {
	if s.err != nil {
		return 0, s.err
	}
	return a.Item()
}

// Shapes and indexing.

func (s *Scope) Reshape(a *Tensor, shape ...int64) *Tensor {
	return s.op("reshape", []*Tensor{a}, nil, shape)
}
func (s *Scope) Permute(a *Tensor, dims ...int64) *Tensor {
	return s.op("permute", []*Tensor{a}, nil, dims)
}
func (s *Scope) Narrow(a *Tensor, dim, start, length int64) *Tensor {
	return s.op("narrow", []*Tensor{a}, nil, []int64{dim, start, length})
}
func (s *Scope) Select(a *Tensor, dim, index int64) *Tensor {
	return s.op("select", []*Tensor{a}, nil, []int64{dim, index})
}
func (s *Scope) IndexSelect(a *Tensor, dim int64, index *Tensor) *Tensor {
	return s.op("index_select", []*Tensor{a, index}, nil, []int64{dim})
}
func (s *Scope) Cat(ts []*Tensor, dim int64) *Tensor { return s.op("cat", ts, nil, []int64{dim}) }
func (s *Scope) Stack(ts []*Tensor, dim int64) *Tensor {
	return s.op("stack", ts, nil, []int64{dim})
}
func (s *Scope) Unsqueeze(a *Tensor, dim int64) *Tensor {
	return s.op("unsqueeze", []*Tensor{a}, nil, []int64{dim})
}
func (s *Scope) Expand(a *Tensor, shape ...int64) *Tensor {
	return s.op("expand", []*Tensor{a}, nil, shape)
}
func (s *Scope) Contiguous(a *Tensor) *Tensor { return s.op("contiguous", []*Tensor{a}, nil, nil) }

// PadConstant pads the last dimensions (pairs: last dim left, right, then the
// one before) with value.
func (s *Scope) PadConstant(a *Tensor, value float64, pads ...int64) *Tensor {
	return s.op("pad_constant", []*Tensor{a}, []float64{value}, pads)
}

// Roll shifts the last two dimensions cyclically by dy, dx.
func (s *Scope) Roll(a *Tensor, dy, dx int64) *Tensor {
	return s.op("roll", []*Tensor{a}, nil, []int64{dy, dx, -2, -1})
}

// Copies and autograd.

func (s *Scope) Detach(a *Tensor) *Tensor    { return s.op("detach", []*Tensor{a}, nil, nil) }
func (s *Scope) Clone(a *Tensor) *Tensor     { return s.op("clone", []*Tensor{a}, nil, nil) }
func (s *Scope) ZerosLike(a *Tensor) *Tensor { return s.op("zeros_like", []*Tensor{a}, nil, nil) }
func (s *Scope) ToFloat(a *Tensor) *Tensor   { return s.op("to_float", []*Tensor{a}, nil, nil) }

// Indices makes an int64 index tensor on device (for IndexSelect).
func (s *Scope) Indices(idx []int, device string) *Tensor {
	v := make([]float32, len(idx))
	for i, x := range idx {
		v[i] = float32(x) // exact below 2^24
	}
	return s.op("to_long", []*Tensor{s.FromFloat32(v, []int64{int64(len(v))}, device)}, nil, nil)
}

// ToDeviceOf copies a to the device that holds like.
func (s *Scope) ToDeviceOf(a, like *Tensor) *Tensor {
	return s.op("to_device_of", []*Tensor{a, like}, nil, nil)
}

// RandnLike is standard normal noise shaped like a, drawn from its own
// generator seeded with seed (never a shared global stream).
func (s *Scope) RandnLike(a *Tensor, seed uint64) *Tensor {
	return s.op("randn_like_seeded", []*Tensor{a}, []float64{float64(seed & (1<<53 - 1))}, nil)
}

// RandLike is uniform [0,1) noise shaped like a from its own seeded generator.
func (s *Scope) RandLike(a *Tensor, seed uint64) *Tensor {
	return s.op("rand_like_seeded", []*Tensor{a}, []float64{float64(seed & (1<<53 - 1))}, nil)
}

// Images and signals.

// RFFT2 is the orthonormal 2-D real FFT over the last two dimensions.
func (s *Scope) RFFT2(a *Tensor) *Tensor { return s.op("rfft2", []*Tensor{a}, nil, nil) }

// IRFFT2 inverts RFFT2 to an h×w signal.
func (s *Scope) IRFFT2(a *Tensor, h, w int64) *Tensor {
	return s.op("irfft2", []*Tensor{a}, nil, []int64{h, w})
}

// Complex builds a complex tensor from real and imaginary parts.
func (s *Scope) Complex(re, im *Tensor) *Tensor { return s.op("complex", []*Tensor{re, im}, nil, nil) }

// Resize resizes [N,C,H,W] images bilinearly to h×w.
func (s *Scope) Resize(a *Tensor, h, w int64, antialias bool) *Tensor {
	return s.op("interpolate_bilinear", []*Tensor{a}, nil, []int64{h, w, 0, int64(b2f(antialias))})
}

// AffineSample resamples [N,C,H,W] images through [N,2,3] affine matrices
// (bilinear, border padding), as torch's affine_grid + grid_sample.
func (s *Scope) AffineSample(a, theta *Tensor) *Tensor {
	return s.op("affine_sample", []*Tensor{a, theta}, nil, nil)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ViewAsReal views a complex tensor as a real one with a last dimension of
// two (real, imaginary), sharing its storage.
func (s *Scope) ViewAsReal(a *Tensor) *Tensor { return s.op("view_as_real", []*Tensor{a}, nil, nil) }

// SetGrad makes g (detached) the .grad of the leaf p, for an optimizer's
// step; it returns p's new gradient.
func (s *Scope) SetGrad(p, g *Tensor) *Tensor { return s.op("set_grad", []*Tensor{p, g}, nil, nil) }

// CopyInto overwrites dst's values with src's outside autograd, keeping dst's
// identity (a parameter stays the same leaf); it returns a handle to dst.
func (s *Scope) CopyInto(dst, src *Tensor) *Tensor {
	return s.op("copy_into", []*Tensor{dst, src}, nil, nil)
}
