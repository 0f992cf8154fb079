// Package model is the "load model" stage: a TorchScript classifier on a
// device, its layers addressable by dotted module path, and the preprocessing
// its input needs.
package model

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/nearest"
)

// Input describes what the model expects: images resized so the shorter side
// is Resize, center-cropped (or resized directly when Crop is "none") to
// Size, mapped from [0,1] to PixelRange and normalized with Mean and Std.
type Input struct {
	Size       [2]int     // height, width
	Resize     int        // shorter side before the crop; 0 = resize straight to Size
	Crop       string     // "center" or "none"
	Mean, Std  [3]float64 // per channel, on the PixelRange scale
	PixelRange [2]float64 // e.g. [0,1] or [0,255]; all zero means [0,1]
}

// Model is a loaded classifier.
type Model struct {
	Path   string
	Input  Input
	module *torch.Module
	layers map[string]bool
}

// Load reads a TorchScript file onto device (auto|cpu|cuda|cuda:N).
func Load(path, device string, in Input) (*Model, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, errors.Unwrap(err))
	}
	if st.IsDir() {
		return nil, fmt.Errorf("model %s: is a folder, not a TorchScript file", path)
	}
	mod, err := torch.LoadModule(path, device)
	if err != nil {
		return nil, err
	}
	m := &Model{Path: path, Input: in, module: mod, layers: map[string]bool{}}
	for _, p := range mod.Paths() {
		m.layers[p] = true
	}
	return m, nil
}

// WithInput is the same loaded model seen through other preprocessing. It
// shares the module: close only the original.
func (m *Model) WithInput(in Input) *Model {
	c := *m
	c.Input = in
	return &c
}

// Close frees the model.
func (m *Model) Close() { m.module.Close() }

// Device is where the model runs.
func (m *Model) Device() string { return m.module.Device() }

// Paths lists every submodule path.
func (m *Model) Paths() []string { return m.module.Paths() }

// CheckLayers returns an error naming the first path that is not a submodule,
// with the valid paths nearest to it.
func (m *Model) CheckLayers(paths []string) error {
	for _, p := range paths {
		if !m.layers[p] {
			return fmt.Errorf("layer %q is not a module path of %s; nearest: %s",
				p, m.Path, strings.Join(nearest.Paths(p, m.module.Paths(), 5), ", "))
		}
	}
	return nil
}

// Forward runs a preprocessed batch and captures the layers at paths. All
// tensors returned belong to s.
func (m *Model) Forward(s *torch.Scope, x *torch.Tensor, paths []string, mode torch.Mode, cast torch.Autocast) (*torch.Tensor, []*torch.Tensor) {
	if err := m.CheckLayers(paths); err != nil {
		s.Fail(err)
		return nil, nil
	}
	out, acts := m.module.Forward(s, x, paths, mode, cast)
	if out != nil {
		if shape := out.Shape(); len(shape) != 2 {
			s.Fail(fmt.Errorf("model %s: output has shape %v, want [N, classes]", m.Path, shape))
			return nil, nil
		}
	}
	return out, acts
}

// Capture returns the activations at paths for a preprocessed batch,
// without running the model past the last of them: in a pruned, frozen
// graph of its own per layer set when the model allows it (see Plan). With
// mode torch.Grad they are differentiable with respect to x.
func (m *Model) Capture(s *torch.Scope, x *torch.Tensor, paths []string, mode torch.Mode, cast torch.Autocast) []*torch.Tensor {
	if err := m.CheckLayers(paths); err != nil {
		s.Fail(err)
		return nil
	}
	return m.module.Capture(s, x, paths, mode, cast)
}

// Plan says what a pass of the given kind over paths runs: a pruned,
// frozen graph, or the full forward pass and why.
func (m *Model) Plan(pass torch.Pass, paths []string) (string, error) {
	if err := m.CheckLayers(paths); err != nil {
		return "", err
	}
	return m.module.Plan(pass, paths)
}

// SetChannelsLast makes activation passes feed the model channels_last
// input (the same values, sometimes faster).
func (m *Model) SetChannelsLast(on bool) { m.module.SetChannelsLast(on) }

// Layers loads the file on its own and lists every capturable layer with its
// output shape for one input of shape chw. The model output's shape is
// returned too.
func Layers(path, device string, chw []int64) ([]int64, []torch.LayerShape, error) {
	m, err := Load(path, device, Input{})
	if err != nil {
		return nil, nil, err
	}
	defer m.Close()
	out, layers, err := m.module.LayerShapes(append([]int64{1}, chw...))
	if err != nil {
		return nil, nil, fmt.Errorf("model %s rejects input %s: %w", path, shapeString(chw), err)
	}
	// Shapes per example: drop the batch dimension of the one-image pass.
	for i := range layers {
		if len(layers[i].Shape) > 0 {
			layers[i].Shape = layers[i].Shape[1:]
		}
	}
	if len(out) > 0 {
		out = out[1:]
	}
	return out, layers, nil
}

// ClassGradients runs a preprocessed batch x and returns, per example, the
// gradient of the class logit h_k with respect to the activation at layer,
// ∇_a h_k(a) with a = f_layer(x), and the logits (detached). Examples are
// independent in eval mode, so one backward pass of Σ_n h_k(x_n) gives every
// example's gradient. The activation is an autograd leaf: the part of the
// model before the layer records no autograd.
func (m *Model) ClassGradients(s *torch.Scope, x *torch.Tensor, layer string, class int, cast torch.Autocast) (grad, logits *torch.Tensor) {
	if err := m.CheckLayers([]string{layer}); err != nil {
		s.Fail(err)
		return nil, nil
	}
	out, act := m.module.ForwardLeaf(s, x, layer, cast)
	if out == nil {
		return nil, nil
	}
	if shape := out.Shape(); len(shape) != 2 {
		s.Fail(fmt.Errorf("model %s: output has shape %v, want [N, classes]", m.Path, shape))
		return nil, nil
	}
	acts := []*torch.Tensor{act}
	if shape := out.Shape(); class < 0 || int64(class) >= shape[1] {
		s.Fail(fmt.Errorf("class index %d out of range for a model with %d outputs", class, shape[1]))
		return nil, nil
	}
	g := s.Grad([]*torch.Tensor{s.Sum(s.Select(out, 1, int64(class)))}, nil, acts, false, false)
	if g == nil {
		return nil, nil
	}
	return g[0], s.Detach(out)
}

// Prepare sets the module up for every layer a run will capture: the shim
// reloads the module when a pass asks for a layer it has not captured yet,
// so a run prepares once, with all of them, before any other pass. It runs
// one zero image and returns the number of outputs, failing clearly when
// the model rejects the configured input size or does not return
// [N, classes].
func (m *Model) Prepare(layers []string) (classes int, err error) {
	s := torch.NewScope()
	defer s.Close()
	h, w := int64(m.Input.Size[0]), int64(m.Input.Size[1])
	x := s.FromFloat32(make([]float32, 3*h*w), []int64{1, 3, h, w}, m.Device())
	out, _ := m.Forward(s, x, layers, torch.NoGrad, torch.FP32)
	if err := s.Err(); err != nil {
		return 0, fmt.Errorf("model %s rejects input 3,%d,%d: %w", m.Path, h, w, err)
	}
	return int(out.Shape()[1]), nil
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return strings.Join(parts, ",")
}
