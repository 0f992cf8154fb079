package cav

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/activations"
)

// gaussian returns n rows of d features drawn around mean.
func gaussian(name string, n int, mean []float32, sd float64, seed uint64) *activations.Activations {
	return gaussianRows(name, n, mean, sd, seed)
}

func fit(t *testing.T, concept, random *activations.Activations, st Settings, seed uint64) (*CAV, error) {
	t.Helper()
	c, err := Upload("cpu", concept)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := Upload("cpu", random)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m, err := st.Method()
	if err != nil {
		return nil, err
	}
	return Fit(c, r, m, seed)
}

func gaussianRows(name string, n int, mean []float32, sd float64, seed uint64) *activations.Activations {
	r := rand.New(rand.NewPCG(seed, 7))
	d := len(mean)
	a := &activations.Activations{Set: name, Layer: "l", Shape: []int64{int64(d)}, N: n, Data: make([]float32, n*d)}
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			a.Data[i*d+j] = mean[j] + float32(sd*r.NormFloat64())
		}
	}
	return a
}

func shifted(d int, shift float32) []float32 {
	m := make([]float32, d)
	m[0] = shift
	return m
}

func TestSeparableSetsGiveAccurateCAVAlongTheShift(t *testing.T) {
	const d = 20
	for _, clf := range []string{"sgd-hinge", "logistic", "mean-diff"} {
		t.Run(clf, func(t *testing.T) {
			concept := gaussian("concept", 60, shifted(d, 6), 1, 1)
			random := gaussian("random", 80, shifted(d, 0), 1, 2)
			c, err := fit(t, concept, random, Settings{Classifier: clf, Alpha: 0.01, Epochs: 50, TestFraction: 0.33}, 9)
			if err != nil {
				t.Fatal(err)
			}
			if c.Accuracy < 0.95 {
				t.Errorf("held-out accuracy %.2f on sets 6 sd apart", c.Accuracy)
			}
			norm := 0.0
			for _, v := range c.Vector {
				norm += float64(v) * float64(v)
			}
			if math.Abs(norm-1) > 1e-4 {
				t.Errorf("CAV norm² = %g, want 1", norm)
			}
			// The shift is along feature 0, toward the concept.
			if c.Vector[0] < 0.6 {
				t.Errorf("CAV component along the shift = %.3f, want most of the unit vector and positive", c.Vector[0])
			}
		})
	}
}

func TestRandomVersusRandomIsNearChance(t *testing.T) {
	const d = 50
	var sum float64
	const trials = 8
	for i := uint64(0); i < trials; i++ {
		a := gaussian("a", 60, shifted(d, 0), 1, 10+i)
		b := gaussian("b", 60, shifted(d, 0), 1, 20+i)
		c, err := fit(t, a, b, Settings{Classifier: "sgd-hinge", Alpha: 0.01, Epochs: 50, TestFraction: 0.33}, i)
		if err != nil {
			t.Fatal(err)
		}
		sum += c.Accuracy
	}
	if mean := sum / trials; mean < 0.3 || mean > 0.7 {
		t.Fatalf("mean held-out accuracy of random vs random = %.2f, want near 0.5", mean)
	}
}

// The coefficient-space loop must follow the same iterates as plain primal
// SGD: w ← (1−ηα)w − η·dloss·x, b ← b − η·dloss, written here independently.
func TestDualSGDMatchesPrimalLoop(t *testing.T) {
	const n, d = 24, 7
	x := gaussian("x", n, make([]float32, d), 1, 3).Data
	y := make([]float64, n)
	for i := range y {
		y[i] = 1
		if i >= n/2 {
			y[i] = -1
			x[i*d] -= 1
		} else {
			x[i*d] += 1
		}
	}
	for _, sgd := range []SGD{
		{Loss: Hinge, Alpha: 0.01, Epochs: 7},
		{Loss: Logistic, Alpha: 0.01, Epochs: 7},
		{Loss: Hinge, Alpha: 0.01, Epochs: 7, LR: 0.05}, // tcav.cav.lr: the constant schedule
		{Loss: Logistic, Alpha: 0, Epochs: 7, LR: 0.05}, // no penalty: allowed with a constant rate
	} {
		loss := sgd.Loss
		gram := make([]float32, n*n)
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				var s float32
				for k := 0; k < d; k++ {
					s += x[i*d+k] * x[j*d+k]
				}
				gram[i*n+j] = s
			}
		}
		coef, b := sgd.fitDual(gram, y, 5)
		w := make([]float64, d)
		for i := 0; i < n; i++ {
			for k := 0; k < d; k++ {
				w[k] += coef[i] * float64(x[i*d+k])
			}
		}
		pw, pb := primalSGD(x, y, d, sgd, 5)
		for k := range w {
			if math.Abs(w[k]-pw[k]) > 1e-3*(1+math.Abs(pw[k])) {
				t.Fatalf("loss %d lr %g: w[%d] = %g dual, %g primal", loss, sgd.LR, k, w[k], pw[k])
			}
		}
		if math.Abs(b-pb) > 1e-6 {
			t.Fatalf("loss %d lr %g: b = %g dual, %g primal", loss, sgd.LR, b, pb)
		}
	}
}

func primalSGD(x []float32, y []float64, d int, c SGD, seed uint64) ([]float64, float64) {
	n := len(y)
	w := make([]float64, d)
	b := 0.0
	var t0 float64
	if c.LR == 0 {
		typw := math.Sqrt(1 / math.Sqrt(c.Alpha))
		t0 = 1 / (typw * c.Alpha)
	}
	rng := rand.New(rand.NewPCG(seed, 0x736764))
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	t := 1.0
	best, stale := math.Inf(1), 0
	for e := 0; e < c.Epochs; e++ {
		rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		sum := 0.0
		for _, i := range order {
			p := b
			for k := 0; k < d; k++ {
				p += w[k] * float64(x[i*d+k])
			}
			sum += c.Loss.value(p, y[i])
			eta := c.LR // constant, or else optimal: 1/(α(t0+t−1))
			if c.LR == 0 {
				eta = 1 / (c.Alpha * (t0 + t - 1))
			}
			g := c.Loss.dloss(p, y[i])
			for k := 0; k < d; k++ {
				w[k] *= 1 - eta*c.Alpha
			}
			for k := 0; k < d; k++ {
				w[k] -= eta * g * float64(x[i*d+k])
			}
			b -= eta * g
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
	return w, b
}

func TestMeanDiffIsTheDifferenceOfMeans(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	rows := []float32{1, 2, 3, 4, 0, 0, 2, 2} // concept (1,2),(3,4); random (0,0),(2,2)
	x := s.FromFloat32(rows, []int64{4, 2}, "cpu")
	w, b := MeanDiff{}.Fit(s, x, []float64{1, 1, -1, -1}, 0)
	got, err := w.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	// means (2,3) and (1,1): w = (1,2); midpoint (1.5,2): b = −(1.5+4) = −5.5
	if got[0] != 1 || got[1] != 2 || b != -5.5 {
		t.Fatalf("w = %v, b = %g; want [1 2], -5.5", got, b)
	}
}

func TestSeedDependsOnWhatTheCAVIsOf(t *testing.T) {
	a := Seed(0, "striped", "random500_0", "block3")
	if a != Seed(0, "striped", "random500_0", "block3") {
		t.Fatal("seed not deterministic")
	}
	for _, b := range []uint64{Seed(1, "striped", "random500_0", "block3"), Seed(0, "dotted", "random500_0", "block3"),
		Seed(0, "striped", "random500_1", "block3"), Seed(0, "striped", "random500_0", "block2")} {
		if a == b {
			t.Fatal("seed ignores one of its inputs")
		}
	}
}

func TestFitRejectsTooFewExamples(t *testing.T) {
	a := gaussian("a", 1, make([]float32, 3), 1, 1)
	b := gaussian("b", 5, make([]float32, 3), 1, 2)
	if _, err := fit(t, a, b, Settings{Classifier: "mean-diff", TestFraction: 0.33}, 0); err == nil {
		t.Fatal("want an error for one example per side")
	}
}

// The held-out rows that the CAV accuracy is measured on are never training
// rows, and together they are every row once.
func TestHeldOutRowsAreNotTrainedOn(t *testing.T) {
	for _, n := range []int{2, 3, 10, 31} {
		perm := rand.New(rand.NewPCG(uint64(n), 1)).Perm(n)
		nTest := max(1, n/3)
		train, test := heldOut(perm, nTest)
		if len(test) != nTest || len(train) != n-nTest {
			t.Fatalf("n %d: %d training and %d held-out rows, want %d and %d", n, len(train), len(test), n-nTest, nTest)
		}
		seen := map[int]bool{}
		for _, i := range append(append([]int(nil), train...), test...) {
			if seen[i] {
				t.Fatalf("n %d: row %d is both trained on and held out", n, i)
			}
			seen[i] = true
		}
	}
}
