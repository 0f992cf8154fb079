package attack

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/model"
)

func demoModel(t *testing.T) *model.Model {
	t.Helper()
	m, err := model.Load(filepath.Join("..", "..", "testdata", "demo", "model.pt"), "cpu",
		model.Input{Size: [2]int{32, 32}, Mean: [3]float64{0.5, 0.5, 0.5}, Std: [3]float64{0.25, 0.25, 0.25}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// gridImages are n random images on the 8-bit grid.
func gridImages(n int, seed uint64) ([]float32, []int64) {
	r := rand.New(rand.NewPCG(seed, 3))
	px := make([]float32, n*3*32*32)
	for i := range px {
		px[i] = float32(r.IntN(256)) / 255
	}
	return px, []int64{int64(n), 3, 32, 32}
}

func collisionTo(t *testing.T, v float32) *Collision {
	t.Helper()
	target := make([]float32, 64*4*4)
	for i := range target {
		target[i] = v
	}
	c, err := NewCollision("cpu", target)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestZeroBudgetChangesNothing(t *testing.T) {
	m := demoModel(t)
	defer m.Close()
	x0, shape := gridImages(3, 1)
	obj := collisionTo(t, 1)
	defer obj.Close()
	res, err := Perturb(m, x0, shape, "block3", obj, Budget{Norm: "linf", Eps: 0, Step: 0.01, Steps: 5, RandomStart: true}, 8, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range x0 {
		if res.Pixels[i] != x0[i] {
			t.Fatalf("pixel %d changed from %g to %g with eps 0", i, x0[i], res.Pixels[i])
		}
	}
}

// Every result is on the 8-bit grid and inside its budget, for both norms,
// and the attack lowers its objective.
func TestPerturbStaysOnGridWithinBudgetAndLowersTheLoss(t *testing.T) {
	m := demoModel(t)
	defer m.Close()
	x0, shape := gridImages(4, 2)
	per := len(x0) / 4
	for _, b := range []Budget{
		{Norm: "linf", Eps: 0.02, Step: 0.005, Steps: 8, RandomStart: true},
		{Norm: "linf", Eps: 0.0157, Step: 0.004, Steps: 8, Momentum: 0.9},
		{Norm: "l2", Eps: 0.5, Step: 0.2, Steps: 8, RandomStart: true},
	} {
		obj := collisionTo(t, 0)
		res, err := Perturb(m, x0, shape, "block3", obj, b, 8, 7)
		obj.Close()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			linf, l2 := 0.0, 0.0
			for j := i * per; j < (i+1)*per; j++ {
				v := float64(res.Pixels[j])
				if k := v * 255; math.Abs(k-math.Round(k)) > 1e-3 || v < 0 || v > 1 {
					t.Fatalf("%s: pixel %g is not an 8-bit value in [0,1]", b.Norm, v)
				}
				d := math.Abs(v - float64(x0[j]))
				linf = math.Max(linf, d)
				l2 += d * d
			}
			if b.Norm == "linf" && linf > b.Eps+1e-6 {
				t.Fatalf("linf %g > eps %g", linf, b.Eps)
			}
			if b.Norm == "l2" && math.Sqrt(l2) > b.Eps+1e-4 {
				t.Fatalf("l2 %g > eps %g", math.Sqrt(l2), b.Eps)
			}
		}
		first, last := res.Losses[0], res.Losses[len(res.Losses)-1]
		if !(last < first) {
			t.Errorf("%s: loss %g → %g, want lower", b.Norm, first, last)
		}
	}
}

// Batched gradients (activations gathered first, ∂loss/∂activation pushed
// back batch by batch) must equal the one-batch gradient: the surrogate
// couples the images through the CAV.
func TestBatchedGradientEqualsOneBatch(t *testing.T) {
	m := demoModel(t)
	defer m.Close()
	x0, shape := gridImages(5, 3)
	r := rand.New(rand.NewPCG(4, 4))
	const d = 64 * 4 * 4
	grads := make([]float32, 6*d)
	for i := range grads {
		grads[i] = float32(r.NormFloat64())
	}
	randomMean := make([]float32, d)
	for i := range randomMean {
		randomMean[i] = float32(r.Float64())
	}
	obj, err := NewSurrogate("cpu", grads, 6, randomMean, 10, false)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	value := func(batch int) (float64, []float32) {
		s := torch.NewScope()
		defer s.Close()
		loss, g := lossAndGrad(s, m, "block3", obj, s.FromFloat32(x0, shape, "cpu"), batch)
		v, err := g.Float32s()
		if err != nil || s.Err() != nil {
			t.Fatal(err, s.Err())
		}
		return loss, v
	}
	l1, g1 := value(0)
	l2, g2 := value(2)
	if math.Abs(l1-l2) > 1e-6 {
		t.Fatalf("loss %g in one batch, %g in batches of 2", l1, l2)
	}
	scale := 0.0
	for _, v := range g1 {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	if scale == 0 {
		t.Fatal("zero gradient")
	}
	for i := range g1 {
		if math.Abs(float64(g1[i]-g2[i])) > 1e-4*scale {
			t.Fatalf("grad[%d] %g in one batch, %g in batches", i, g1[i], g2[i])
		}
	}
}

func TestMeasure(t *testing.T) {
	orig := []float32{0, 0, 0, 0, 1, 1, 1, 1}
	adv := []float32{0.1, 0, 0, 0, 1, 1, 1, 1}
	s := Measure(orig, adv, 2)
	// image 0: mse 0.0025 → 26.02 dB; image 1 unchanged → MaxPSNR.
	if math.Abs(s.Linf-0.1) > 1e-6 || math.Abs(s.L2Mean-0.05) > 1e-6 ||
		math.Abs(s.PSNRMean-(10*math.Log10(1/0.0025)+MaxPSNR)/2) > 1e-3 {
		t.Fatalf("%+v", s)
	}
}
