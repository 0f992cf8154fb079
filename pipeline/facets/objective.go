package facets

import (
	"fmt"

	"github.com/cavforge/cavforge/cgo/torch"
)

// Pass is what one forward pass of the rendered batch offers objectives.
type Pass struct {
	Image  *torch.Tensor            // the batch being optimized, [N,3,H,W] in [0,1], before transforms
	Logits *torch.Tensor            // the model's output, [N, classes]
	Acts   map[string]*torch.Tensor // the captured layers, by path
}

// Objective is what rendering maximizes: one value per image of the batch.
// Objectives compose with Sum and Scaled.
type Objective interface {
	// Layers are the layers Value reads from Pass.Acts.
	Layers() []string
	// Value is the objective of every image, [N], in the autograd graph.
	Value(s *torch.Scope, p *Pass) *torch.Tensor
}

// Class is the logit of one class.
type Class int

// Layers implements Objective.
func (Class) Layers() []string { return nil }

// Value implements Objective.
func (c Class) Value(s *torch.Scope, p *Pass) *torch.Tensor {
	return s.Select(p.Logits, 1, int64(c))
}

// Channel is the mean activation of one channel of a layer.
type Channel struct {
	Layer   string
	Channel int
}

// Layers implements Objective.
func (c Channel) Layers() []string { return []string{c.Layer} }

// Value implements Objective.
func (c Channel) Value(s *torch.Scope, p *Pass) *torch.Tensor {
	a, ok := p.Acts[c.Layer]
	if !ok {
		s.Fail(fmt.Errorf("channel objective: layer %s was not captured", c.Layer))
		return nil
	}
	shape := a.Shape()
	if len(shape) < 2 || int64(c.Channel) >= shape[1] {
		s.Fail(fmt.Errorf("channel %d of layer %s: the layer's output has shape %v", c.Channel, c.Layer, shape))
		return nil
	}
	ch := s.Select(a, 1, int64(c.Channel))
	if len(shape) == 2 {
		return ch
	}
	return s.MeanDims(s.Reshape(ch, shape[0], -1), false, 1)
}

// L2 is −mean((x − 0.5)²) over each image: added with a weight, it keeps
// pixels away from saturation (the CLIP facets notebook uses 10).
type L2 struct{}

// Layers implements Objective.
func (L2) Layers() []string { return nil }

// Value implements Objective.
func (L2) Value(s *torch.Scope, p *Pass) *torch.Tensor {
	d := s.AddScalar(p.Image, -0.5)
	return s.Neg(s.MeanDims(s.Mul(d, d), false, 1, 2, 3))
}

// Sum adds objectives.
func Sum(objs ...Objective) Objective { return sum(objs) }

type sum []Objective

func (o sum) Layers() []string {
	var out []string
	for _, x := range o {
		out = appendNew(out, x.Layers()...)
	}
	return out
}

func (o sum) Value(s *torch.Scope, p *Pass) *torch.Tensor {
	var total *torch.Tensor
	for i, x := range o {
		if i == 0 {
			total = x.Value(s, p)
		} else {
			total = s.Add(total, x.Value(s, p))
		}
	}
	return total
}

// Scaled multiplies an objective by k.
func Scaled(k float64, o Objective) Objective { return scaled{k, o} }

type scaled struct {
	k float64
	o Objective
}

func (o scaled) Layers() []string { return o.o.Layers() }

func (o scaled) Value(s *torch.Scope, p *Pass) *torch.Tensor {
	return s.MulScalar(o.o.Value(s, p), o.k)
}

// Direction is a facet direction at one layer: probe weights with the
// layer's per-example shape (e.g. [C,H,W]), pointing toward the facet.
type Direction struct {
	Layer  string
	Shape  []int64
	Weight []float32
}

// Facet is the facet term of faceted feature visualization (Goh et al.,
// "Multimodal neurons", 2021):
//
//	Σ_layers λ · s_n · wᵀ(g(x) ⊙ relu(stopgrad(∇_g f)))
//
// for target f, activation g at each facet layer, probe weights w, and the
// strength s_n of image n. The gradient mask keeps only the parts of g that
// raise f, so the facet shapes how the target is drawn rather than drawing
// the facet instead. Sum(f, facet) is the full objective.
type Facet struct {
	Of        Objective
	Lambda    float64 // per layer; NewFacet's default is 5/len(layers)
	strengths *torch.Tensor
	dirs      []Direction
	weights   []*torch.Tensor // per direction, [1, Shape...]
}

// NewFacet builds the facet term for target of, one strength per image of
// the batch, on device. lambda ≤ 0 selects 5/len(dirs).
func NewFacet(device string, of Objective, dirs []Direction, strengths []float64, lambda float64) (*Facet, error) {
	if len(dirs) == 0 {
		return nil, fmt.Errorf("facet: no directions")
	}
	if lambda <= 0 {
		lambda = 5 / float64(len(dirs))
	}
	s := torch.NewScope()
	defer s.Close()
	f := &Facet{Of: of, Lambda: lambda, dirs: dirs}
	sv := make([]float32, len(strengths))
	for i, v := range strengths {
		sv[i] = float32(v)
	}
	f.strengths = s.Keep(s.FromFloat32(sv, []int64{int64(len(sv))}, device))
	for _, d := range dirs {
		n := int64(1)
		for _, k := range d.Shape {
			n *= k
		}
		if n != int64(len(d.Weight)) {
			f.Close()
			return nil, fmt.Errorf("facet direction at %s: %d weights for shape %v", d.Layer, len(d.Weight), d.Shape)
		}
		f.weights = append(f.weights, s.Keep(s.FromFloat32(d.Weight, append([]int64{1}, d.Shape...), device)))
	}
	if err := s.Err(); err != nil {
		f.Close()
		return nil, fmt.Errorf("facet: %w", err)
	}
	return f, nil
}

// Strengths are n values evenly spaced from lo to hi (lo alone when n is 1).
func Strengths(lo, hi float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		if n > 1 {
			out[i] = lo + (hi-lo)*float64(i)/float64(n-1)
		} else {
			out[i] = lo
		}
	}
	return out
}

// Layers implements Objective.
func (f *Facet) Layers() []string {
	out := append([]string(nil), f.Of.Layers()...)
	for _, d := range f.dirs {
		out = appendNew(out, d.Layer)
	}
	return out
}

// Value implements Objective.
func (f *Facet) Value(s *torch.Scope, p *Pass) *torch.Tensor {
	target := f.Of.Value(s, p)
	acts := make([]*torch.Tensor, len(f.dirs))
	for i, d := range f.dirs {
		a, ok := p.Acts[d.Layer]
		if !ok {
			s.Fail(fmt.Errorf("facet: layer %s was not captured", d.Layer))
			return nil
		}
		acts[i] = a
	}
	if s.Err() != nil {
		return nil
	}
	if n, want := acts[0].Shape()[0], f.strengths.Shape()[0]; n != want {
		s.Fail(fmt.Errorf("facet: a batch of %d images for %d strengths", n, want))
		return nil
	}
	// ∇_g f per image: the images of a batch are independent in eval mode,
	// so the gradient of Σ_n f_n gives each image its own. The graph is
	// kept for the optimizer's backward pass.
	grads := s.Grad([]*torch.Tensor{s.Sum(target)}, nil, acts, true, false)
	var total *torch.Tensor
	for i := range f.dirs {
		mask := s.Relu(s.Detach(grads[i]))
		w := f.weightFor(s, i, acts[i])
		n := acts[i].Shape()[0]
		term := s.SumDims(s.Reshape(s.Mul(s.Mul(acts[i], mask), w), n, -1), false, 1)
		if total == nil {
			total = term
		} else {
			total = s.Add(total, term)
		}
	}
	return s.Mul(s.MulScalar(total, f.Lambda), f.strengths)
}

// weightFor is direction i shaped like act's examples: resized bilinearly
// when the layer's spatial size differs from the one the probe was fitted
// at (another render size).
func (f *Facet) weightFor(s *torch.Scope, i int, act *torch.Tensor) *torch.Tensor {
	w := f.weights[i]
	as, ws := act.Shape(), w.Shape()
	if len(as) == 4 && len(ws) == 4 && as[1] == ws[1] && (as[2] != ws[2] || as[3] != ws[3]) {
		return s.Resize(w, as[2], as[3], false)
	}
	return w
}

// Close frees the facet's tensors.
func (f *Facet) Close() {
	f.strengths.Close()
	for _, w := range f.weights {
		w.Close()
	}
}

func appendNew(list []string, xs ...string) []string {
	for _, x := range xs {
		found := false
		for _, y := range list {
			found = found || y == x
		}
		if !found {
			list = append(list, x)
		}
	}
	return list
}
