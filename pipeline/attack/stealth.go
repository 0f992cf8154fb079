package attack

import (
	"fmt"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/images"
)

// Stealth penalizes poisoned images whose own prediction moves: the attack
// trades its objective against being noticed by an analyst who looks at
// what the model says about the concept images.
type Stealth struct {
	Weight float64 // 0: off
	Form   string  // margin | kl
	Margin float64 // logits, for margin
	// Clean are the clean images' logits, one row per image: the top-1
	// class to keep (margin) or the distribution to stay near (kl).
	Clean [][]float32
}

func (st *Stealth) on() bool { return st != nil && st.Weight > 0 }

// sum is Σ over the batch's images of the per-image penalty, given their
// logits [n, K] and indices into Clean.
func (st *Stealth) sum(s *torch.Scope, logits *torch.Tensor, idx []int, device string) *torch.Tensor {
	k := len(st.Clean[0])
	rows := make([]float32, 0, len(idx)*k)
	for _, i := range idx {
		rows = append(rows, st.Clean[i]...)
	}
	clean := s.FromFloat32(rows, []int64{int64(len(idx)), int64(k)}, device)
	switch st.Form {
	case "kl":
		// KL(p_clean ‖ p) = Σ_j p_clean,j (log p_clean,j − log p_j)
		lp := s.LogSoftmax(clean, 1)
		return s.Sum(s.Mul(s.Exp(lp), s.Sub(lp, s.LogSoftmax(logits, 1))))
	case "margin", "":
		// relu(max_{j≠c} z_j − z_c + margin), c the clean top-1 class.
		onehot := make([]float32, len(idx)*k)
		for r, i := range idx {
			onehot[r*k+argmax(st.Clean[i])] = 1
		}
		oh := s.FromFloat32(onehot, []int64{int64(len(idx)), int64(k)}, device)
		zc := s.SumDims(s.Mul(logits, oh), false, 1)
		others := s.AmaxDims(s.Sub(logits, s.MulScalar(oh, 1e9)), false, 1)
		return s.Sum(s.Relu(s.AddScalar(s.Sub(others, zc), st.Margin)))
	}
	s.Fail(fmt.Errorf("stealth form %q: want margin or kl", st.Form))
	return nil
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// Penalty is the mean per-image penalty of images, without a graph.
func (st *Stealth) Penalty(m Network, imgs []images.Image, batch int) (float64, error) {
	logits, err := Logits(m, imgs, batch)
	if err != nil {
		return 0, err
	}
	s := torch.NewScope()
	defer s.Close()
	k := len(logits[0])
	flat := make([]float32, 0, len(logits)*k)
	idx := make([]int, len(logits))
	for i, row := range logits {
		flat = append(flat, row...)
		idx[i] = i
	}
	z := s.FromFloat32(flat, []int64{int64(len(logits)), int64(k)}, m.Device())
	v, err := s.Item(st.sum(s, z, idx, m.Device()))
	return float64(v) / float64(len(imgs)), firstErr(err, s.Err())
}
