package attack

import (
	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/model"
)

// lossAndGrad evaluates the objective on pixels x ([n,3,H,W]) and returns
// its value and gradient with respect to x. When the set fits one batch it
// is one forward and one backward pass; otherwise the activations of all
// batches are gathered first (the objective couples the images, e.g. through
// the CAV), ∂loss/∂activations taken there, and pushed back batch by batch.
func lossAndGrad(s *torch.Scope, m *model.Model, layer string, obj Objective, x *torch.Tensor, batch int) (float64, *torch.Tensor) {
	shape := x.Shape()
	if shape == nil {
		s.Fail(s.Err())
		return 0, nil
	}
	n := shape[0]
	if batch <= 0 || int64(batch) >= n {
		leaf := s.Detach(x)
		if leaf == nil {
			return 0, nil
		}
		s.Fail(leaf.SetRequiresGrad(true))
		_, acts := m.Forward(s, m.Normalize(s, leaf), []string{layer}, torch.Grad, torch.FP32)
		if acts == nil {
			return 0, nil
		}
		loss := obj.Loss(s, s.Reshape(acts[0], n, -1))
		g := s.Grad([]*torch.Tensor{loss}, nil, []*torch.Tensor{leaf}, false, false)
		v, err := s.Item(loss)
		if err != nil || g == nil {
			return 0, nil
		}
		return float64(v), g[0]
	}
	// Pass 1: activations of every batch, without a graph.
	var parts []*torch.Tensor
	for start := int64(0); start < n; start += int64(batch) {
		xb := s.Narrow(x, 0, start, min(int64(batch), n-start))
		_, acts := m.Forward(s, m.Normalize(s, xb), []string{layer}, torch.NoGrad, torch.FP32)
		if acts == nil {
			return 0, nil
		}
		parts = append(parts, s.Reshape(acts[0], -1, flatDim(acts[0])))
	}
	all := s.Cat(parts, 0)
	if all == nil {
		return 0, nil
	}
	s.Fail(all.SetRequiresGrad(true))
	loss := obj.Loss(s, all)
	dActs := s.Grad([]*torch.Tensor{loss}, nil, []*torch.Tensor{all}, false, false)
	v, err := s.Item(loss)
	if err != nil || dActs == nil {
		return 0, nil
	}
	// Pass 2: each batch's share of ∂loss/∂x.
	var grads []*torch.Tensor
	for start := int64(0); start < n; start += int64(batch) {
		size := min(int64(batch), n-start)
		leaf := s.Detach(s.Narrow(x, 0, start, size))
		if leaf == nil {
			return 0, nil
		}
		s.Fail(leaf.SetRequiresGrad(true))
		_, acts := m.Forward(s, m.Normalize(s, leaf), []string{layer}, torch.Grad, torch.FP32)
		if acts == nil {
			return 0, nil
		}
		up := s.Reshape(s.Narrow(dActs[0], 0, start, size), acts[0].Shape()...)
		g := s.Grad([]*torch.Tensor{acts[0]}, []*torch.Tensor{up}, []*torch.Tensor{leaf}, false, false)
		if g == nil {
			return 0, nil
		}
		grads = append(grads, g[0])
	}
	return float64(v), s.Cat(grads, 0)
}

func flatDim(t *torch.Tensor) int64 {
	d := int64(1)
	for _, v := range t.Shape()[1:] {
		d *= v
	}
	return d
}
