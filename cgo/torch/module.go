package torch

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"unsafe"
)

// Mode selects how a forward pass treats autograd.
type Mode int

const (
	// Grad records the autograd graph, so gradients at captured layers and
	// at the input can be taken afterwards (also for frozen models).
	Grad Mode = C.CF_GRAD
	// NoGrad records nothing.
	NoGrad Mode = C.CF_NO_GRAD
	// Inference is libtorch's inference mode: fastest, and its tensors can
	// never enter autograd later.
	Inference Mode = C.CF_INFERENCE
)

// Autocast picks the reduced precision of a CUDA forward pass.
type Autocast int

const (
	FP32 Autocast = 0
	BF16 Autocast = 1
	FP16 Autocast = 2
)

// Module is a TorchScript module loaded onto one device, in eval mode.
type Module struct {
	m      *C.cf_module
	device string
	paths  []string
}

// LoadModule loads a TorchScript file onto device (auto|cpu|cuda|cuda:N).
func LoadModule(path, device string) (*Module, error) {
	dev, _, err := ResolveDevice(device)
	if err != nil {
		return nil, err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	cdev := C.CString(dev)
	defer C.free(unsafe.Pointer(cdev))
	var m *C.cf_module
	if err := cerr(C.cf_module_load(cpath, cdev, &m)); err != nil {
		return nil, fmt.Errorf("load %s: not a TorchScript model: %s", path, err)
	}
	mod := &Module{m: m, device: dev}
	var p *C.char
	if err := cerr(C.cf_module_paths(m, &p)); err != nil {
		mod.Close()
		return nil, err
	}
	for _, line := range strings.Split(goString(p), "\n") {
		if line != "" {
			mod.paths = append(mod.paths, line)
		}
	}
	return mod, nil
}

// Close frees the module.
func (m *Module) Close() {
	if m.m != nil {
		C.cf_module_free(m.m)
		m.m = nil
	}
}

// Device is where the module lives, e.g. "cpu" or "cuda:0".
func (m *Module) Device() string { return m.device }

// Paths lists the dotted path of every submodule.
func (m *Module) Paths() []string { return append([]string(nil), m.paths...) }

// Forward runs the module on x and captures the outputs of the submodules at
// paths. The output and the captured tensors belong to s.
func (m *Module) Forward(s *Scope, x *Tensor, paths []string, mode Mode, cast Autocast) (*Tensor, []*Tensor) {
	var out C.cf_tensor
	acts := m.capture(s, "forward", x, paths, func(cpaths **C.char, caps *C.cf_tensor) *C.char {
		return C.cf_module_forward(m.m, C.cf_tensor(x.p), cpaths, C.int(len(paths)), C.int(mode), C.int(cast), &out, caps)
	})
	if acts == nil {
		return nil, nil
	}
	return s.own(unsafe.Pointer(out)), acts
}

// Capture runs the module on x and returns the outputs of the submodules at
// paths; the pass runs only up to the last of them. Inference and NoGrad
// record no autograd; Grad makes the outputs differentiable with respect to
// x (see Plan for what runs). The tensors belong to s.
func (m *Module) Capture(s *Scope, x *Tensor, paths []string, mode Mode, cast Autocast) []*Tensor {
	return m.capture(s, "capture", x, paths, func(cpaths **C.char, caps *C.cf_tensor) *C.char {
		return C.cf_module_capture(m.m, C.cf_tensor(x.p), cpaths, C.int(len(paths)), C.int(mode), C.int(cast), caps)
	})
}

// ForwardLeaf runs the whole module on x in grad mode with the output of
// the submodule at path made an autograd leaf where it is computed: the
// gradient of the output with respect to the returned activation can be
// taken, and nothing before the layer records autograd. Both tensors belong
// to s.
func (m *Module) ForwardLeaf(s *Scope, x *Tensor, path string, cast Autocast) (*Tensor, *Tensor) {
	var out C.cf_tensor
	acts := m.capture(s, "forward", x, []string{path}, func(cpaths **C.char, caps *C.cf_tensor) *C.char {
		return C.cf_module_forward_leaf(m.m, C.cf_tensor(x.p), *cpaths, C.int(cast), &out, caps)
	})
	if acts == nil {
		return nil, nil
	}
	return s.own(unsafe.Pointer(out)), acts[0]
}

// Pass names the kinds of pass that run a graph of their own.
type Pass int

const (
	// ActivationPass is Capture without gradients.
	ActivationPass Pass = 0
	// InputGradPass is Capture in Grad mode.
	InputGradPass Pass = 1
	// LeafPass is ForwardLeaf.
	LeafPass Pass = 2
)

// Plan says what a pass over paths runs — a pruned, frozen graph, or the
// full forward pass and why — building the graph when it is not built yet.
func (m *Module) Plan(pass Pass, paths []string) (string, error) {
	cpaths := make([]*C.char, len(paths)+1)
	for i, p := range paths {
		cpaths[i] = C.CString(p)
	}
	defer func() {
		for _, p := range cpaths {
			C.free(unsafe.Pointer(p))
		}
	}()
	var desc *C.char
	if err := cerr(C.cf_module_plan(m.m, C.int(pass), &cpaths[0], C.int(len(paths)), &desc)); err != nil {
		return "", err
	}
	return goString(desc), nil
}

// SetChannelsLast makes activation passes feed 4-d inputs in channels_last
// memory format (faster for some networks on some devices; values equal).
func (m *Module) SetChannelsLast(on bool) { C.cf_module_set_channels_last(m.m, C.int(b2f(on))) }

// capture passes paths as C strings to call and takes ownership of the
// captured tensors it returns; nil on error (recorded in s).
func (m *Module) capture(s *Scope, name string, x *Tensor, paths []string, call func(**C.char, *C.cf_tensor) *C.char) []*Tensor {
	if !s.ready(name, []*Tensor{x}) {
		return nil
	}
	cpaths := make([]*C.char, len(paths)+1)
	for i, p := range paths {
		cpaths[i] = C.CString(p)
	}
	defer func() {
		for _, p := range cpaths {
			C.free(unsafe.Pointer(p))
		}
	}()
	caps := make([]C.cf_tensor, len(paths)+1)
	err := cerr(call(&cpaths[0], &caps[0]))
	runtime.KeepAlive(cpaths)
	if err != nil {
		s.Fail(err)
		return nil
	}
	acts := make([]*Tensor, len(paths))
	for i := range paths {
		acts[i] = s.own(unsafe.Pointer(caps[i]))
	}
	return acts
}

// LayerShape is a capturable submodule and the shape of its output.
type LayerShape struct {
	Path  string  `json:"path"`
	Shape []int64 `json:"shape"`
}

// LayerShapes runs one zero input of the given shape (batch dimension
// included) through the module, capturing every submodule that returns a
// tensor. It returns the model output's shape and every capturable layer.
// It leaves every layer captured: use a module of its own for it.
func (m *Module) LayerShapes(inputShape []int64) ([]int64, []LayerShape, error) {
	shp := append([]int64(nil), inputShape...)
	var p *C.char
	err := cerr(C.cf_module_layer_shapes(m.m, (*C.int64_t)(unsafe.Pointer(&shp[0])), C.int(len(shp)), &p))
	runtime.KeepAlive(shp)
	if err != nil {
		return nil, nil, err
	}
	var out []int64
	var layers []LayerShape
	for _, line := range strings.Split(goString(p), "\n") {
		if line == "" {
			continue
		}
		path, dims, _ := strings.Cut(line, "\t")
		var shape []int64
		for _, d := range strings.Split(dims, ",") {
			if d == "" {
				continue
			}
			v, err := strconv.ParseInt(d, 10, 64)
			if err != nil {
				return nil, nil, fmt.Errorf("layer shapes: bad line %q", line)
			}
			shape = append(shape, v)
		}
		if path == "" {
			out = shape
		} else {
			layers = append(layers, LayerShape{Path: path, Shape: shape})
		}
	}
	return out, layers, nil
}

// Grad returns the gradients of Σ_k sum(outputs[k] · gradOutputs[k]) with
// respect to inputs (gradOutputs nil means ones). retain keeps the autograd
// graph for another call; create records the gradient computation itself so
// it can be differentiated again. The gradients belong to s.
func (s *Scope) Grad(outputs, gradOutputs, inputs []*Tensor, retain, create bool) []*Tensor {
	if !s.ready("grad", append(append([]*Tensor(nil), outputs...), inputs...)) {
		return nil
	}
	outs := make([]C.cf_tensor, len(outputs)+1)
	for i, t := range outputs {
		outs[i] = C.cf_tensor(t.p)
	}
	var gouts []C.cf_tensor
	var gptr *C.cf_tensor
	if gradOutputs != nil {
		if len(gradOutputs) != len(outputs) {
			s.Fail(fmt.Errorf("grad: %d outputs but %d output gradients", len(outputs), len(gradOutputs)))
			return nil
		}
		gouts = make([]C.cf_tensor, len(outputs)+1)
		for i, t := range gradOutputs {
			if t != nil {
				gouts[i] = C.cf_tensor(t.p)
			}
		}
		gptr = &gouts[0]
	}
	ins := make([]C.cf_tensor, len(inputs)+1)
	for i, t := range inputs {
		ins[i] = C.cf_tensor(t.p)
	}
	grads := make([]C.cf_tensor, len(inputs)+1)
	err := cerr(C.cf_grad(&outs[0], gptr, C.int(len(outputs)), &ins[0], C.int(len(inputs)),
		C.int(b2f(retain)), C.int(b2f(create)), &grads[0]))
	runtime.KeepAlive(outs)
	runtime.KeepAlive(gouts)
	runtime.KeepAlive(ins)
	if err != nil {
		s.Fail(fmt.Errorf("grad: %w", err))
		return nil
	}
	res := make([]*Tensor, len(inputs))
	for i := range inputs {
		res[i] = s.own(unsafe.Pointer(grads[i]))
	}
	return res
}
