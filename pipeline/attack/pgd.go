package attack

import (
	"fmt"
	"math"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/model"
	"github.com/cavforge/cavforge/pipeline/progress"
)

// Budget is one perturbation budget and how to spend it.
type Budget struct {
	Norm        string  // linf | l2
	Eps         float64 // pixel scale [0,1]
	Step        float64
	Steps       int
	RandomStart bool
	Momentum    float64       // 0: plain PGD
	Progress    *progress.Bar // may be nil
}

// Result is a perturbed concept set.
type Result struct {
	Pixels []float32 // [n,3,H,W], on the 8-bit grid, within the budget
	Losses []float64 // objective per step, then after quantization
}

// Perturb runs projected gradient descent on the objective over the concept
// images x0 ([n,3,H,W] pixels in [0,1] on the 8-bit grid), the model frozen
// in eval mode and its normalization applied inside. The last step rounds
// to the 8-bit grid without leaving the budget, so written PNGs are what
// was optimized.
func Perturb(m *model.Model, x0 []float32, shape []int64, layer string, obj Objective, b Budget, batch int, seed uint64) (*Result, error) {
	if b.Norm != "linf" && b.Norm != "l2" {
		return nil, fmt.Errorf("attack norm %q: want linf or l2", b.Norm)
	}
	root := torch.NewScope()
	defer root.Close()
	orig := root.FromFloat32(x0, shape, m.Device())
	delta := root.ZerosLike(orig)
	if b.RandomStart && b.Eps > 0 {
		delta = project(root, randomStart(root, orig, b, seed), orig, b)
	}
	var mom *torch.Tensor
	defer func() { mom.Close() }()
	res := &Result{}
	defer b.Progress.Done()
	for step := 0; step < b.Steps && b.Eps > 0; step++ {
		b.Progress.Add(1)
		s := torch.NewScope()
		loss, grad := lossAndGrad(s, m, layer, obj, s.Add(orig, delta), batch)
		if err := s.Err(); err != nil {
			s.Close()
			return nil, fmt.Errorf("attack step %d: %w", step, err)
		}
		res.Losses = append(res.Losses, loss)
		if b.Momentum > 0 {
			g := s.Div(grad, s.AddScalar(s.MeanDims(s.Abs(grad), true, 1, 2, 3), 1e-12))
			if mom != nil {
				g = s.Add(s.MulScalar(mom, b.Momentum), g)
			}
			mom.Close()
			mom = s.Keep(g)
			grad = mom
		}
		next := root.Take(s.Keep(project(s, s.Sub(delta, direction(s, grad, b)), orig, b)))
		delta.Close()
		delta = next
		s.Close()
	}
	final := quantize(root, delta, orig, b)
	s := torch.NewScope()
	loss, _ := lossAndGrad(s, m, layer, obj, final, batch)
	err := s.Err()
	s.Close()
	if err != nil {
		return nil, err
	}
	res.Losses = append(res.Losses, loss)
	px, err := final.Float32s()
	if err != nil {
		return nil, err
	}
	res.Pixels = px
	return res, root.Err()
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
