package attack

import (
	"fmt"
	"math"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/interrupt"
	"github.com/cavforge/cavforge/pipeline/progress"
)

// Budget is one perturbation budget and how to spend it.
type Budget struct {
	Norm        string  // linf | l2
	Eps         float64 // pixel scale [0,1], per image at its own resolution
	Step        float64
	Steps       int
	RandomStart bool
	Momentum    float64       // 0: plain PGD
	Stealth     *Stealth      // nil: no stealth term
	Adaptive    *Adaptive     // nil: attack the images as they are
	Progress    *progress.Bar // may be nil
}

// Result is a perturbed concept set.
type Result struct {
	// Images are the perturbed images, each at its original's size, on the
	// 8-bit grid and within the budget.
	Images []images.Image
	Losses []float64 // objective per step, then after quantization
}

// Perturb runs projected gradient descent on the objective over the concept
// images x0, each at its own size, the model frozen in eval mode with the
// configured preprocessing (resize, crop, normalization) inside the
// differentiable loop: what comes out are drop-in replacements for the
// files. The originals are taken on the 8-bit grid; the last step rounds to
// it without leaving the budget, so written PNGs are what was optimized.
//
// Only the current batch lives on the device: each image's original and
// perturbation stay on the host between steps.
func Perturb(m Network, x0 []images.Image, layer string, obj Objective, b Budget, batch int, seed uint64) (*Result, error) {
	if b.Norm != "linf" && b.Norm != "l2" {
		return nil, fmt.Errorf("attack norm %q: want linf or l2", b.Norm)
	}
	if len(x0) == 0 {
		return nil, fmt.Errorf("attack: no images")
	}
	if _, ok := obj.(Aligner); b.Adaptive.on() && b.Adaptive.AlignmentWeight > 0 && !ok {
		return nil, fmt.Errorf("attack: the alignment penalty needs an objective with class gradients (tcav-surrogate)")
	}
	st := newState(x0)
	if b.RandomStart && b.Eps > 0 {
		for i := range st.orig {
			err := st.update(m.Device(), i, func(s *torch.Scope, orig, _ *torch.Tensor) *torch.Tensor {
				return project(s, randomStart(s, orig, b, seed+uint64(i)*0x9e3779b97f4a7c15), orig, b)
			})
			if err != nil {
				return nil, err
			}
		}
	}
	res := &Result{}
	defer b.Progress.Done()
	for step := 0; step < b.Steps && b.Eps > 0; step++ {
		if err := interrupt.Err(); err != nil { // between steps: a safe point
			return nil, err
		}
		b.Progress.Add(1)
		take := st.step
		if b.Adaptive.on() {
			take = st.stepAdaptive
		}
		loss, err := take(m, layer, obj, b, batch)
		if err != nil {
			return nil, fmt.Errorf("attack step %d: %w", step, err)
		}
		res.Losses = append(res.Losses, loss)
	}
	for i := range st.orig {
		err := st.update(m.Device(), i, func(s *torch.Scope, orig, delta *torch.Tensor) *torch.Tensor {
			return s.Sub(quantize(s, delta, orig, b), orig)
		})
		if err != nil {
			return nil, err
		}
		px := make([]float32, len(st.orig[i].Pix))
		for j, v := range st.orig[i].Pix {
			px[j] = v + st.delta[i][j]
		}
		images.Quantize(px) // exact k/255 again after the float addition
		res.Images = append(res.Images, images.Image{Path: x0[i].Path, C: 3, H: st.orig[i].H, W: st.orig[i].W, Pix: px})
	}
	var loss float64
	var err error
	if b.Adaptive.on() {
		loss, _, err = AdaptiveLoss(m, layer, obj, b.Adaptive, res.Images, batch)
	} else {
		loss, err = Loss(m, layer, obj, res.Images, batch)
	}
	if err != nil {
		return nil, err
	}
	if b.Stealth.on() {
		pen, err := b.Stealth.Penalty(m, res.Images, batch)
		if err != nil {
			return nil, err
		}
		loss += b.Stealth.Weight * pen
	}
	res.Losses = append(res.Losses, loss)
	return res, nil
}

// state is the optimization's host side: per image, the original pixels,
// the perturbation and (with momentum) the accumulated gradient.
type state struct {
	orig  []images.Image
	delta [][]float32
	mom   [][]float32
}

func newState(x0 []images.Image) *state {
	st := &state{}
	for _, im := range x0 {
		px := append([]float32(nil), im.Floats()...)
		images.Quantize(px)
		st.orig = append(st.orig, images.Image{Path: im.Path, C: 3, H: im.H, W: im.W, Pix: px})
		st.delta = append(st.delta, make([]float32, len(px)))
	}
	return st
}

func (st *state) shape(i int) []int64 {
	return []int64{1, 3, int64(st.orig[i].H), int64(st.orig[i].W)}
}

// upload puts image i's original and perturbation on the device.
func (st *state) upload(s *torch.Scope, device string, i int) (orig, delta *torch.Tensor) {
	return s.FromFloat32(st.orig[i].Pix, st.shape(i), device), s.FromFloat32(st.delta[i], st.shape(i), device)
}

// update replaces image i's perturbation with f(orig, delta).
func (st *state) update(device string, i int, f func(s *torch.Scope, orig, delta *torch.Tensor) *torch.Tensor) error {
	s := torch.NewScope()
	defer s.Close()
	orig, delta := st.upload(s, device, i)
	next := f(s, orig, delta)
	if err := s.Err(); err != nil {
		return err
	}
	v, err := next.Float32s()
	if err != nil {
		return err
	}
	st.delta[i] = v
	return nil
}

// step takes one projected gradient step on every image. The objective
// couples the images (through the CAV), so with more than one batch the
// activations of all batches are gathered first, ∂loss/∂activations taken
// there, and pushed back batch by batch; each image's step then needs only
// its own gradient.
func (st *state) step(m Network, layer string, obj Objective, b Budget, batch int) (float64, error) {
	groups := batches(len(st.orig), batch)
	outer := torch.NewScope()
	defer outer.Close()
	var loss float64
	var dActs *torch.Tensor
	if len(groups) > 1 {
		var parts []*torch.Tensor
		for _, g := range groups {
			acts, err := st.activations(outer, m, layer, g, torch.NoGrad)
			if err != nil {
				return 0, err
			}
			parts = append(parts, acts)
		}
		all := outer.Cat(parts, 0)
		if all == nil {
			return 0, outer.Err()
		}
		outer.Fail(all.SetRequiresGrad(true))
		l := obj.Loss(outer, all)
		d := outer.Grad([]*torch.Tensor{l}, nil, []*torch.Tensor{all}, false, false)
		v, err := outer.Item(l)
		if err != nil || d == nil {
			return 0, firstErr(err, outer.Err())
		}
		loss, dActs = float64(v), d[0]
	}
	n := float64(len(st.orig))
	start := int64(0)
	for _, g := range groups {
		s := torch.NewScope()
		leaves, x := st.inputs(s, m, g, true)
		var logits *torch.Tensor
		var acts []*torch.Tensor
		if b.Stealth.on() {
			logits, acts = m.Forward(s, m.Normalize(s, x), []string{layer}, torch.Grad, torch.FP32)
		} else {
			// Only the layer is needed: a graph pruned after it.
			acts = m.Capture(s, m.Normalize(s, x), []string{layer}, torch.Grad, torch.FP32)
		}
		var total *torch.Tensor
		if acts != nil {
			if dActs == nil {
				total = obj.Loss(s, s.Reshape(acts[0], int64(len(g)), -1))
				v, err := s.Item(total)
				s.Fail(err)
				loss = float64(v)
			} else {
				// Σ acts·∂loss/∂acts has the objective's gradient at x.
				up := s.Reshape(s.Narrow(dActs, 0, start, int64(len(g))), acts[0].Shape()...)
				total = s.Sum(s.Mul(acts[0], up))
			}
			if b.Stealth.on() {
				pen := s.MulScalar(b.Stealth.sum(s, logits, g, m.Device()), b.Stealth.Weight/n)
				v, err := s.Item(pen)
				s.Fail(err)
				loss += float64(v)
				total = s.Add(total, pen)
			}
		}
		var grads []*torch.Tensor
		if total != nil {
			grads = s.Grad([]*torch.Tensor{total}, nil, leaves, false, false)
		}
		if err := s.Err(); err != nil || grads == nil {
			s.Close()
			return 0, firstErr(err, fmt.Errorf("no gradient"))
		}
		for k, i := range g {
			if err := st.descend(s, m.Device(), i, grads[k], b); err != nil {
				s.Close()
				return 0, err
			}
		}
		s.Close()
		start += int64(len(g))
	}
	return loss, nil
}

// descend moves image i's perturbation against its gradient and projects it
// back into the budget.
func (st *state) descend(s *torch.Scope, device string, i int, grad *torch.Tensor, b Budget) error {
	if b.Momentum > 0 {
		g := s.Div(grad, s.AddScalar(s.MeanDims(s.Abs(grad), true, 1, 2, 3), 1e-12))
		if st.mom != nil && st.mom[i] != nil {
			g = s.Add(s.MulScalar(s.FromFloat32(st.mom[i], st.shape(i), device), b.Momentum), g)
		}
		v, err := g.Float32s()
		if err != nil {
			return err
		}
		if st.mom == nil {
			st.mom = make([][]float32, len(st.orig))
		}
		st.mom[i] = v
		grad = g
	}
	return st.update(device, i, func(s *torch.Scope, orig, delta *torch.Tensor) *torch.Tensor {
		return project(s, s.Sub(delta, direction(s, grad, b)), orig, b)
	})
}

// inputs are the batch's images as the model sees them ([n,3,H,W] at the
// input size), and with leaves the perturbed images at their own sizes as
// gradient leaves.
func (st *state) inputs(s *torch.Scope, m Network, g []int, leaves bool) ([]*torch.Tensor, *torch.Tensor) {
	var ls, parts []*torch.Tensor
	for _, i := range g {
		orig, delta := st.upload(s, m.Device(), i)
		x := s.Add(orig, delta)
		if leaves {
			x = s.Detach(x)
			if x == nil {
				return nil, nil
			}
			s.Fail(x.SetRequiresGrad(true))
			ls = append(ls, x)
		}
		parts = append(parts, m.Fit(s, x))
	}
	return ls, s.Cat(parts, 0)
}

// activations of batch g at layer, [n, d], owned by s.
func (st *state) activations(s *torch.Scope, m Network, layer string, g []int, mode torch.Mode) (*torch.Tensor, error) {
	inner := torch.NewScope()
	defer inner.Close()
	_, x := st.inputs(inner, m, g, false)
	acts := m.Capture(inner, m.Normalize(inner, x), []string{layer}, mode, torch.FP32)
	if acts == nil {
		return nil, firstErr(inner.Err(), fmt.Errorf("no activations"))
	}
	flat := inner.Reshape(acts[0], int64(len(g)), -1)
	if err := inner.Err(); err != nil {
		return nil, err
	}
	return s.Take(inner.Keep(flat)), nil
}

// Loss is the objective on images (each at its own size) without a graph.
func Loss(m Network, layer string, obj Objective, imgs []images.Image, batch int) (float64, error) {
	st := newState(imgs)
	s := torch.NewScope()
	defer s.Close()
	var parts []*torch.Tensor
	for _, g := range batches(len(imgs), batch) {
		a, err := st.activations(s, m, layer, g, torch.NoGrad)
		if err != nil {
			return 0, err
		}
		parts = append(parts, a)
	}
	v, err := s.Item(obj.Loss(s, s.Cat(parts, 0)))
	return float64(v), firstErr(err, s.Err())
}

// batches splits 0..n-1 into runs of at most size (all of them for size ≤ 0).
func batches(n, size int) [][]int {
	if size <= 0 {
		size = n
	}
	var out [][]int
	for start := 0; start < n; start += size {
		g := make([]int, 0, size)
		for i := start; i < min(start+size, n); i++ {
			g = append(g, i)
		}
		out = append(out, g)
	}
	return out
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// direction is the step to subtract: step·sign(g) for L∞, step·g/‖g‖ per
// image for L2.
func direction(s *torch.Scope, g *torch.Tensor, b Budget) *torch.Tensor {
	if b.Norm == "linf" {
		return s.MulScalar(s.Sign(g), b.Step)
	}
	return s.MulScalar(s.Div(g, s.AddScalar(s.NormDims(g, true, 1, 2, 3), 1e-12)), b.Step)
}

// project puts delta back into the eps-ball and x0+delta into [0,1].
func project(s *torch.Scope, delta, orig *torch.Tensor, b Budget) *torch.Tensor {
	if b.Norm == "linf" {
		delta = s.Clamp(delta, -b.Eps, b.Eps)
	} else {
		// δ · min(1, eps/‖δ‖)
		norm := s.AddScalar(s.NormDims(delta, true, 1, 2, 3), 1e-12)
		delta = s.Mul(delta, s.Clamp(s.MulScalar(s.PowScalar(norm, -1), b.Eps), 0, 1))
	}
	return s.Sub(s.Clamp(s.Add(orig, delta), 0, 1), orig)
}

func randomStart(s *torch.Scope, orig *torch.Tensor, b Budget, seed uint64) *torch.Tensor {
	if b.Norm == "linf" {
		return s.MulScalar(s.AddScalar(s.RandLike(orig, seed), -0.5), 2*b.Eps)
	}
	// A random direction, halfway to the edge of the ball.
	n := s.RandnLike(orig, seed)
	n = s.Div(n, s.AddScalar(s.NormDims(n, true, 1, 2, 3), 1e-12))
	return s.MulScalar(n, b.Eps*0.5)
}

// levelSlack lets budgets written to four decimals mean the 8-bit levels
// they stand for: 0.0078 is 2/255 (0.00784), not one level.
const levelSlack = 0.02

// Levels is how many 8-bit levels an L∞ budget allows each pixel to move.
func Levels(eps float64) int { return int(math.Floor(eps*255 + levelSlack)) }

// quantize returns orig+delta on the 8-bit grid (orig is on it) without
// leaving the budget: L∞ rounds δ and caps it at ⌊eps·255⌋/255; L2 rounds,
// then shrinks and truncates toward zero if the rounded norm exceeds eps.
func quantize(s *torch.Scope, delta, orig *torch.Tensor, b Budget) *torch.Tensor {
	levels := s.Round(s.MulScalar(delta, 255))
	if b.Norm == "linf" {
		k := float64(Levels(b.Eps))
		levels = s.Clamp(levels, -k, k)
	} else {
		norm := s.AddScalar(s.NormDims(levels, true, 1, 2, 3), 1e-12)
		levels = s.Trunc(s.Mul(levels, s.Clamp(s.MulScalar(s.PowScalar(norm, -1), b.Eps*255+levelSlack), 0, 1)))
	}
	// Integer levels of orig plus the change, clipped to [0,255], then
	// divided once: exact 8-bit values.
	px := s.Clamp(s.Add(s.Round(s.MulScalar(orig, 255)), levels), 0, 255)
	// A true division by a full tensor: libtorch turns division by a scalar
	// into a multiplication by its reciprocal, one ULP away from k/255 as
	// image decoding computes it.
	return s.Div(px, s.AddScalar(s.ZerosLike(px), 255))
}
