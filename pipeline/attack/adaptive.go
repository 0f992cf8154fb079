package attack

import (
	"fmt"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/audit"
	"github.com/cavforge/cavforge/pipeline/images"
)

// Adaptive is an attacker who knows the audit: it optimizes the objective
// through the audit's purifications (expectation over transforms), so that
// the poisoned set keeps its effect after each re-encoding, and can
// penalize the audit's scored signal, the shift of the score under a
// purification.
//
// The objective over n purifications p_1..p_n of the set X is
//
//	L = (1/(n+1)) Σ_{v=0..n} obj(f(p_v(X))) + ShiftWeight · (1/n) Σ_p (obj(f(p(X))) − obj(f(X)))²
//	    + AlignmentWeight · (1/n) Σ_p (A(f(p(X))) − A(f(X)))²
//
// with p_0 the identity and A the objective's gradient alignment (Aligner;
// the tcav-surrogate objective has one), the stand-in for the audit's
// alignment-shift signal. Each view's forward value is exactly what the
// audit computes (the audit's own code, on the host, 8-bit in and out);
// its gradient is that of a differentiable stand-in: the blur and the
// resize round trip are differentiated exactly (the same kernel and the same
// bilinear resampling on the device), JPEG and bit-depth reduction by the
// straight-through estimator (BPDA with the identity as the backward pass).
type Adaptive struct {
	Purifications   []audit.Purification
	ShiftWeight     float64
	AlignmentWeight float64
}

// Aligner is an objective that can say how well the set's concept direction
// points along the class gradients.
type Aligner interface {
	Alignment(s *torch.Scope, acts *torch.Tensor) *torch.Tensor
}

func (a *Adaptive) on() bool { return a != nil && len(a.Purifications) > 0 }

func (a *Adaptive) count() int {
	if a == nil {
		return 0
	}
	return len(a.Purifications)
}

// views are the purified copies of the current images, on the host: per
// purification, per image.
func (a *Adaptive) views(imgs []images.Image) ([][]images.Image, error) {
	out := make([][]images.Image, a.count())
	for p := range out {
		pur := a.Purifications[p]
		for _, im := range imgs {
			v, err := pur.Image(im)
			if err != nil {
				return nil, err
			}
			out[p] = append(out[p], v)
		}
	}
	return out, nil
}

// loss is L over the views' activations (view 0 the set itself), as a
// tensor in s, with each view's objective.
func (a *Adaptive) loss(s *torch.Scope, obj Objective, acts []*torch.Tensor) (*torch.Tensor, []*torch.Tensor) {
	objs := make([]*torch.Tensor, len(acts))
	for v, x := range acts {
		objs[v] = obj.Loss(s, x)
	}
	total := a.objLoss(s, objs)
	if al, ok := obj.(Aligner); ok && a != nil && a.AlignmentWeight > 0 && len(acts) > 1 {
		aligns := make([]*torch.Tensor, len(acts))
		for v, x := range acts {
			aligns[v] = al.Alignment(s, x)
		}
		total = s.Add(total, s.MulScalar(meanSquaredShift(s, aligns), a.AlignmentWeight))
	}
	return total, objs
}

// meanSquaredShift is (1/n) Σ_{v≥1} (x_v − x_0)².
func meanSquaredShift(s *torch.Scope, xs []*torch.Tensor) *torch.Tensor {
	var sum *torch.Tensor
	for _, x := range xs[1:] {
		d := s.Sub(x, xs[0])
		if sq := s.Mul(d, d); sum == nil {
			sum = sq
		} else {
			sum = s.Add(sum, sq)
		}
	}
	return s.MulScalar(sum, 1/float64(len(xs)-1))
}

func (a *Adaptive) objLoss(s *torch.Scope, objs []*torch.Tensor) *torch.Tensor {
	total := objs[0]
	for _, o := range objs[1:] {
		total = s.Add(total, o)
	}
	total = s.MulScalar(total, 1/float64(len(objs)))
	if a != nil && a.ShiftWeight > 0 && len(objs) > 1 {
		total = s.Add(total, s.MulScalar(meanSquaredShift(s, objs), a.ShiftWeight))
	}
	return total
}

// smooth is the differentiable stand-in of purification p on one image
// [1,3,H,W]: the exact operation for blur and resize, the identity (straight
// through) otherwise.
func smooth(s *torch.Scope, p audit.Purification, x *torch.Tensor, h, w int) *torch.Tensor {
	switch p.Name {
	case "blur":
		k := audit.BlurKernel
		blur1 := func(x *torch.Tensor, dim int64, n int) *torch.Tensor {
			if n < 2 {
				return x
			}
			// Neighbours with the edge sample repeated, as audit.Blur clamps.
			prev := s.Cat([]*torch.Tensor{s.Narrow(x, dim, 0, 1), s.Narrow(x, dim, 0, int64(n-1))}, dim)
			next := s.Cat([]*torch.Tensor{s.Narrow(x, dim, 1, int64(n-1)), s.Narrow(x, dim, int64(n-1), 1)}, dim)
			return s.Add(s.Add(s.MulScalar(prev, float64(k[0])), s.MulScalar(x, float64(k[1]))), s.MulScalar(next, float64(k[2])))
		}
		return blur1(blur1(x, 3, w), 2, h)
	case "resize":
		h2, w2 := audit.ResizeSize(h, w)
		return s.Resize(s.Resize(x, int64(h2), int64(w2), false), int64(h), int64(w), false)
	}
	return x
}

// viewInput is view v (0: the image itself) of image i as the model's
// input: forward value the host's purified copy, gradient through smooth.
func (st *state) viewInput(s *torch.Scope, m Network, a *Adaptive, host [][]images.Image, v, i int, x *torch.Tensor) *torch.Tensor {
	if v == 0 {
		return x
	}
	p := a.Purifications[v-1]
	t := smooth(s, p, x, st.orig[i].H, st.orig[i].W)
	hp := s.FromFloat32(host[v-1][i].Pix, st.shape(i), m.Device())
	return s.Add(t, s.Sub(hp, s.Detach(t)))
}

// current are the images as they stand, orig + delta.
func (st *state) current() []images.Image {
	out := make([]images.Image, len(st.orig))
	for i, o := range st.orig {
		px := make([]float32, len(o.Pix))
		for j, v := range o.Pix {
			px[j] = v + st.delta[i][j]
		}
		out[i] = images.Image{Path: o.Path, C: 3, H: o.H, W: o.W, Pix: px}
	}
	return out
}

// viewActivations are the activations [n, d] of every view of the whole
// set, without a graph, owned by s.
func (st *state) viewActivations(s *torch.Scope, m Network, layer string, a *Adaptive, host [][]images.Image, batch int) ([]*torch.Tensor, error) {
	var out []*torch.Tensor
	for v := 0; v <= a.count(); v++ {
		var parts []*torch.Tensor
		for _, g := range batches(len(st.orig), batch) {
			inner := torch.NewScope()
			var xs []*torch.Tensor
			for _, i := range g {
				orig, delta := st.upload(inner, m.Device(), i)
				xs = append(xs, m.Fit(inner, st.viewInput(inner, m, a, host, v, i, inner.Add(orig, delta))))
			}
			acts := m.Capture(inner, m.Normalize(inner, inner.Cat(xs, 0)), []string{layer}, torch.NoGrad, torch.FP32)
			if acts == nil {
				err := firstErr(inner.Err(), fmt.Errorf("no activations"))
				inner.Close()
				return nil, err
			}
			flat := inner.Reshape(acts[0], int64(len(g)), -1)
			if err := inner.Err(); err != nil {
				inner.Close()
				return nil, err
			}
			parts = append(parts, s.Take(inner.Keep(flat)))
			inner.Close()
		}
		out = append(out, s.Cat(parts, 0))
	}
	return out, s.Err()
}

// stepAdaptive is one projected gradient step on L.
func (st *state) stepAdaptive(m Network, layer string, obj Objective, b Budget, batch int) (float64, error) {
	return st.adaptiveGrads(m, layer, obj, b.Adaptive, b.Stealth, batch, func(s *torch.Scope, i int, grad *torch.Tensor) error {
		return st.descend(s, m.Device(), i, grad, b)
	})
}

// adaptiveGrads computes L (plus the stealth term) and hands each image's
// gradient to visit. As in step, the loss couples the images, so
// ∂L/∂activations is taken on every view of the whole set first and pushed
// back batch by batch and view by view.
func (st *state) adaptiveGrads(m Network, layer string, obj Objective, a *Adaptive, stealth *Stealth, batch int,
	visit func(s *torch.Scope, i int, grad *torch.Tensor) error) (float64, error) {
	host, err := a.views(st.current())
	if err != nil {
		return 0, err
	}
	outer := torch.NewScope()
	defer outer.Close()
	all, err := st.viewActivations(outer, m, layer, a, host, batch)
	if err != nil {
		return 0, err
	}
	for _, acts := range all {
		outer.Fail(acts.SetRequiresGrad(true))
	}
	l, _ := a.loss(outer, obj, all)
	dActs := outer.Grad([]*torch.Tensor{l}, nil, all, false, false)
	v, err := outer.Item(l)
	if err != nil || dActs == nil {
		return 0, firstErr(err, outer.Err(), fmt.Errorf("no gradient"))
	}
	loss := float64(v)
	n := float64(len(st.orig))
	start := int64(0)
	for _, g := range batches(len(st.orig), batch) {
		s := torch.NewScope()
		leaves, _ := st.inputs(s, m, g, true)
		grads := make([]*torch.Tensor, len(g))
		for view := range all {
			var xs []*torch.Tensor
			for k, i := range g {
				xs = append(xs, m.Fit(s, st.viewInput(s, m, a, host, view, i, leaves[k])))
			}
			x := m.Normalize(s, s.Cat(xs, 0))
			var logits *torch.Tensor
			var acts []*torch.Tensor
			hide := view == 0 && stealth.on()
			if hide {
				logits, acts = m.Forward(s, x, []string{layer}, torch.Grad, torch.FP32)
			} else {
				acts = m.Capture(s, x, []string{layer}, torch.Grad, torch.FP32)
			}
			if acts == nil {
				s.Close()
				return 0, firstErr(s.Err(), fmt.Errorf("no activations"))
			}
			up := s.Reshape(s.Narrow(dActs[view], 0, start, int64(len(g))), acts[0].Shape()...)
			total := s.Sum(s.Mul(acts[0], up))
			if hide {
				pen := s.MulScalar(stealth.sum(s, logits, g, m.Device()), stealth.Weight/n)
				pv, err := s.Item(pen)
				s.Fail(err)
				loss += float64(pv)
				total = s.Add(total, pen)
			}
			gs := s.Grad([]*torch.Tensor{total}, nil, leaves, false, false)
			if err := s.Err(); err != nil || gs == nil {
				s.Close()
				return 0, firstErr(err, fmt.Errorf("no gradient"))
			}
			for k := range g {
				if grads[k] == nil {
					grads[k] = gs[k]
				} else {
					grads[k] = s.Add(grads[k], gs[k])
				}
			}
		}
		for k, i := range g {
			if err := visit(s, i, grads[k]); err != nil {
				s.Close()
				return 0, err
			}
		}
		s.Close()
		start += int64(len(g))
	}
	return loss, nil
}

// AdaptiveLoss is L on images (each at its own size) without a graph, and
// the objective of each view (0: the images themselves, then one per
// purification).
func AdaptiveLoss(m Network, layer string, obj Objective, a *Adaptive, imgs []images.Image, batch int) (float64, []float64, error) {
	if !a.on() {
		return 0, nil, fmt.Errorf("adaptive loss: no purifications")
	}
	st := newState(imgs)
	host, err := a.views(st.current())
	if err != nil {
		return 0, nil, err
	}
	s := torch.NewScope()
	defer s.Close()
	all, err := st.viewActivations(s, m, layer, a, host, batch)
	if err != nil {
		return 0, nil, err
	}
	total, objs := a.loss(s, obj, all)
	per := make([]float64, len(all))
	for v := range objs {
		x, err := s.Item(objs[v])
		if err != nil {
			return 0, nil, err
		}
		per[v] = float64(x)
	}
	l, err := s.Item(total)
	return float64(l), per, firstErr(err, s.Err())
}
