package facets

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/interrupt"
	"github.com/cavforge/cavforge/pipeline/progress"
)

// Network is what rendering needs of a model; *model.Model is one.
type Network interface {
	Device() string
	// Normalize maps [0,1] pixels to the model's input.
	Normalize(s *torch.Scope, x *torch.Tensor) *torch.Tensor
	Forward(s *torch.Scope, x *torch.Tensor, paths []string, mode torch.Mode, cast torch.Autocast) (*torch.Tensor, []*torch.Tensor)
}

// Settings tune the optimization loop.
type Settings struct {
	Steps int
	LR    float64 // Adam's learning rate; lucid's default is 0.05
	// Seed draws the transforms' random choices: step i uses its own
	// generator seeded with (Seed, i), so a render is reproducible and
	// independent of anything else the program draws.
	Seed       uint64
	Transforms []Transform // applied in order each step; nil applies none (Standard() is the usual list)
	// InputSize is the model's input [height, width]: transformed images
	// are resized to it. Zero leaves them as they are.
	InputSize [2]int
	Cast      torch.Autocast
	Progress  *progress.Bar // may be nil
}

// Result is a rendered batch.
type Result struct {
	N, H, W int
	Pixels  []float32 // [N,3,H,W] in [0,1]
	Trace   []float64 // the objective summed over the batch, before each step
}

// Image is image i of the batch.
func (r *Result) Image(i int) images.Image {
	per := 3 * r.H * r.W
	return images.Image{C: 3, H: r.H, W: r.W, Pix: r.Pixels[i*per : (i+1)*per]}
}

// Render maximizes obj over the images of p with Adam (β = 0.9, 0.999).
// Every step's tensors are freed before the next, so memory stays flat
// however many steps run.
func Render(net Network, p Param, obj Objective, st Settings) (*Result, error) {
	if st.Steps < 0 || !(st.LR > 0) {
		return nil, fmt.Errorf("render: %d steps at learning rate %g", st.Steps, st.LR)
	}
	leaves := p.Leaves()
	opt := torch.NewAdam(leaves, st.LR, 0.9, 0.999, 0)
	defer opt.Close()

	layers := obj.Layers()
	res := &Result{Trace: make([]float64, 0, st.Steps)}
	defer st.Progress.Done()
	for step := range st.Steps {
		if err := interrupt.Err(); err != nil { // between steps: a safe point
			return nil, err
		}
		st.Progress.Add(1)
		v, err := renderStep(net, p, obj, layers, st, step)
		if err != nil {
			return nil, fmt.Errorf("render step %d: %w", step, err)
		}
		res.Trace = append(res.Trace, v)
		opt.Step()
	}

	s := torch.NewScope()
	defer s.Close()
	img := p.Image(s)
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	shape := img.Shape()
	px, err := img.Float32s()
	if err != nil {
		return nil, err
	}
	res.N, res.H, res.W, res.Pixels = int(shape[0]), int(shape[2]), int(shape[3]), px
	return res, nil
}

// renderStep evaluates the objective on one random transform of the batch
// and leaves its negated gradient in the leaves' .grad for Adam, which
// minimizes.
func renderStep(net Network, p Param, obj Objective, layers []string, st Settings, step int) (float64, error) {
	s := torch.NewScope()
	defer s.Close()
	img := p.Image(s)
	x := Apply(s, img, st.Transforms, rand.New(rand.NewPCG(st.Seed, uint64(step))))
	if h, w := int64(st.InputSize[0]), int64(st.InputSize[1]); h > 0 && w > 0 {
		if shape, ok := batchShape(s, x); ok && (shape[2] != h || shape[3] != w) {
			x = s.Resize(x, h, w, false)
		}
	}
	logits, acts := net.Forward(s, net.Normalize(s, x), layers, torch.Grad, st.Cast)
	pass := &Pass{Image: img, Logits: logits, Acts: map[string]*torch.Tensor{}}
	for i, l := range layers {
		if i < len(acts) {
			pass.Acts[l] = acts[i]
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	total := s.Sum(obj.Value(s, pass))
	leaves := p.Leaves()
	grads := s.Grad([]*torch.Tensor{total}, nil, leaves, false, false)
	for i, g := range grads {
		s.SetGrad(leaves[i], s.Neg(g))
	}
	v, err := s.Item(total)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
		return 0, errors.New("the objective is NaN or Inf")
	}
	return float64(v), nil
}
