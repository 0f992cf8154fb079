// Package attack is the "optimize perturbations" stage: projected gradient
// steps on a concept's example images so that the explanation built from
// them says what the attacker wants.
package attack

import (
	"fmt"
	"math"

	"github.com/cavforge/cavforge/cgo/torch"
)

// Objective maps the activations of the whole perturbed concept set, [n, d]
// and still in the autograd graph, to the scalar the attack minimizes.
type Objective interface {
	Loss(s *torch.Scope, acts *torch.Tensor) *torch.Tensor
	Close()
}

// Surrogate is the tcav-surrogate objective. The class gradients g(x) at
// the layer do not depend on the concept images, so only the CAV moves: the
// mean-difference CAV v = mean f(P+δ) − mean f(R) against the attack's
// random sets, and the loss is ±mean_x σ(τ · g(x)·v/‖v‖) over the class
// images (+ to suppress, − to promote).
type Surrogate struct {
	grads      *torch.Tensor // [N, d] class gradients
	gradNorms  *torch.Tensor // [N]
	randomMean *torch.Tensor // [d]
	tau        float64
	sign       float64
}

// NewSurrogate uploads the class gradients and the random sets' mean
// activation. tau is relative to the mean norm of the gradients, so it
// means the same at every layer.
func NewSurrogate(device string, grads []float32, n int, randomMean []float32, tau float64, promote bool) (*Surrogate, error) {
	d := len(randomMean)
	if n == 0 || len(grads) != n*d {
		return nil, fmt.Errorf("surrogate: %d gradient values for %d images of %d features", len(grads), n, d)
	}
	mean := 0.0
	for i := 0; i < n; i++ {
		sq := 0.0
		for _, v := range grads[i*d : (i+1)*d] {
			sq += float64(v) * float64(v)
		}
		mean += math.Sqrt(sq) / float64(n)
	}
	if mean == 0 {
		return nil, fmt.Errorf("surrogate: the class gradients at this layer are all zero")
	}
	s := torch.NewScope()
	g := s.Keep(s.FromFloat32(grads, []int64{int64(n), int64(d)}, device))
	r := s.Keep(s.FromFloat32(randomMean, []int64{int64(d)}, device))
	gn := s.Keep(s.AddScalar(s.NormDims(g, false, 1), 1e-12))
	if err := s.Err(); err != nil {
		g.Close()
		r.Close()
		gn.Close()
		return nil, err
	}
	sign := 1.0
	if promote {
		sign = -1
	}
	return &Surrogate{grads: g, gradNorms: gn, randomMean: r, tau: tau / mean, sign: sign}, nil
}

// Loss implements Objective.
func (o *Surrogate) Loss(s *torch.Scope, acts *torch.Tensor) *torch.Tensor {
	v := s.Sub(s.MeanDims(acts, false, 0), o.randomMean)
	u := s.Div(v, s.AddScalar(s.Sqrt(s.Sum(s.Mul(v, v))), 1e-12))
	sens := s.Reshape(s.MM(o.grads, s.Reshape(u, -1, 1)), -1)
	return s.MulScalar(s.Mean(s.Sigmoid(s.MulScalar(sens, o.tau))), o.sign)
}

// Alignment is the mean over the class images of cos(g(x), v), v the
// mean-difference CAV: the attacker's stand-in for the audit's gradient
// alignment signal.
func (o *Surrogate) Alignment(s *torch.Scope, acts *torch.Tensor) *torch.Tensor {
	v := s.Sub(s.MeanDims(acts, false, 0), o.randomMean)
	u := s.Div(v, s.AddScalar(s.Sqrt(s.Sum(s.Mul(v, v))), 1e-12))
	return s.Mean(s.Div(s.Reshape(s.MM(o.grads, s.Reshape(u, -1, 1)), -1), o.gradNorms))
}

// Close frees the device tensors.
func (o *Surrogate) Close() {
	o.gradNorms.Close()
	o.grads.Close()
	o.randomMean.Close()
}

// Collision is the feature-collision objective: the mean squared distance
// of each perturbed image's activation to a target activation (the random
// sets' mean to suppress, a relied-on concept's mean to promote).
type Collision struct {
	target *torch.Tensor // [d]
}

// NewCollision uploads the target activation.
func NewCollision(device string, target []float32) (*Collision, error) {
	s := torch.NewScope()
	t := s.Keep(s.FromFloat32(target, []int64{int64(len(target))}, device))
	if err := s.Err(); err != nil {
		return nil, err
	}
	return &Collision{target: t}, nil
}

// Loss implements Objective.
func (o *Collision) Loss(s *torch.Scope, acts *torch.Tensor) *torch.Tensor {
	diff := s.Sub(acts, o.target)
	return s.Mean(s.Mul(diff, diff))
}

// Close frees the device tensor.
func (o *Collision) Close() { o.target.Close() }
