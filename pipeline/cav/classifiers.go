package cav

import (
	"math"
	"math/rand/v2"

	"github.com/cavforge/cavforge/cgo/torch"
)

// MeanDiff is mean f(P) − mean f(N); the boundary sits halfway between the
// two means.
type MeanDiff struct{}

// Fit implements Classifier.
func (MeanDiff) Fit(s *torch.Scope, x *torch.Tensor, y []float64, _ uint64) (*torch.Tensor, float64) {
	np := 0
	for _, v := range y {
		if v > 0 {
			np++
		}
	}
	n := int64(len(y))
	mp := s.MeanDims(s.Narrow(x, 0, 0, int64(np)), false, 0)
	mn := s.MeanDims(s.Narrow(x, 0, int64(np), n-int64(np)), false, 0)
	w := s.Sub(mp, mn)
	// b = −w·(mp+mn)/2
	mid, err := s.Item(s.Sum(s.Mul(w, s.Add(mp, mn))))
	if err != nil {
		return nil, 0
	}
	return w, -float64(mid) / 2
}

// Loss of a linear classifier on margin p = w·x + b for label y = ±1.
type Loss int

const (
	Hinge    Loss = iota // max(0, 1 − y·p): a linear SVM
	Logistic             // log(1 + exp(−y·p))
)

func (l Loss) value(p, y float64) float64 {
	z := p * y
	if l == Hinge {
		return math.Max(0, 1-z)
	}
	if z > 18 {
		return math.Exp(-z)
	}
	if z < -18 {
		return -z
	}
	return math.Log1p(math.Exp(-z))
}

// dloss is ∂loss/∂p.
func (l Loss) dloss(p, y float64) float64 {
	z := p * y
	if l == Hinge {
		if z < 1 {
			return -y
		}
		return 0
	}
	if z > 18 {
		return -y * math.Exp(-z)
	}
	if z < -18 {
		return -y
	}
	return -y / (math.Exp(z) + 1)
}

// SGD is per-example stochastic gradient descent on Loss + α/2·‖w‖², with the
// "optimal" step size 1/(α(t0+t)) (or a constant LR) and the stopping rule (tolerance 1e-3 on
// the epoch loss, five epochs without improvement) of the reference TCAV's
// classifier, scikit-learn's SGDClassifier.
//
// Every iterate is w = Σ_j c_j x_j, so the loop runs on the coefficients c
// against the Gram matrix K = X·Xᵀ, computed once on the device: n×n work
// per epoch instead of n×d, the same iterates as the primal loop.
type SGD struct {
	Loss   Loss
	Alpha  float64
	Epochs int
	// LR > 0 takes every step at that rate (scikit-learn's "constant"
	// schedule, eta0 = LR); 0 is the "optimal" schedule.
	LR float64
}

const (
	sgdTol        = 1e-3
	sgdNoChange   = 5
	sgdMaxDefault = 1000
)

// Fit implements Classifier.
func (c SGD) Fit(s *torch.Scope, x *torch.Tensor, y []float64, seed uint64) (*torch.Tensor, float64) {
	n := len(y)
	gram, err := s.MM(x, s.Transpose(x, 0, 1)).Float32s()
	if s.Err() != nil || err != nil {
		s.Fail(err)
		return nil, 0
	}
	coef, b := c.fitDual(gram, y, seed)
	cf := make([]float32, n)
	for i, v := range coef {
		cf[i] = float32(v)
	}
	ct := s.FromFloat32(cf, []int64{1, int64(n)}, x.Device())
	w := s.Reshape(s.MM(ct, x), -1)
	return w, b
}

// fitDual runs SGD on the coefficients; gram is K row-major.
func (c SGD) fitDual(gram []float32, y []float64, seed uint64) ([]float64, float64) {
	n := len(y)
	alpha := c.Alpha
	if alpha <= 0 && c.LR <= 0 { // the optimal schedule divides by alpha
		alpha = 1e-4
	}
	epochs := c.Epochs
	if epochs <= 0 {
		epochs = sgdMaxDefault
	}
	// The optimal schedule's rate is 1/(alpha·(t0+t-1)), t0 from the
	// typical weight scaled by the loss's slope there.
	var t0 float64
	if c.LR <= 0 {
		typw := math.Sqrt(1 / math.Sqrt(alpha))
		eta0 := typw / math.Max(1, c.Loss.dloss(-typw, 1))
		t0 = 1 / (eta0 * alpha)
	}

	raw := make([]float64, n) // c = scale·raw; the L2 shrink is one multiply
	scale := 1.0
	b := 0.0
	rng := rand.New(rand.NewPCG(seed, 0x736764))
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	best := math.Inf(1)
	stale := 0
	t := 1.0
	for e := 0; e < epochs; e++ {
		rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		sum := 0.0
		for _, i := range order {
			row := gram[i*n : (i+1)*n]
			p := 0.0
			for j, v := range row {
				p += float64(v) * raw[j]
			}
			p = p*scale + b
			sum += c.Loss.value(p, y[i])
			eta := c.LR
			if eta <= 0 {
				eta = 1 / (alpha * (t0 + t - 1))
			}
			update := -eta * c.Loss.dloss(p, y[i])
			scale *= math.Max(0, 1-eta*alpha)
			if scale < 1e-9 {
				for j := range raw {
					raw[j] *= scale
				}
				scale = 1
			}
			if update != 0 {
				raw[i] += update / scale
				b += update
			}
			t++
		}
		if sum > best-sgdTol*float64(n) {
			stale++
		} else {
			stale = 0
		}
		best = math.Min(best, sum)
		if stale >= sgdNoChange {
			break
		}
	}
	for j := range raw {
		raw[j] *= scale
	}
	return raw, b
}
