package attack

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/cavforge/cavforge/pipeline/images"
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

// gridImages are n random 32×32 images on the 8-bit grid.
func gridImages(n int, seed uint64) []images.Image {
	return sizedImages(n, seed, 32, 32)
}

func sizedImages(n int, seed uint64, h, w int) []images.Image {
	r := rand.New(rand.NewPCG(seed, 3))
	var out []images.Image
	for i := range n {
		px := make([]float32, 3*h*w)
		for j := range px {
			px[j] = float32(r.IntN(256)) / 255
		}
		out = append(out, images.Image{Path: fmt.Sprintf("img%d.png", i), C: 3, H: h, W: w, Pix: px})
	}
	return out
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
	x0 := append(gridImages(2, 1), sizedImages(1, 9, 40, 24)...)
	obj := collisionTo(t, 1)
	defer obj.Close()
	res, err := Perturb(m, x0, "block3", obj, Budget{Norm: "linf", Eps: 0, Step: 0.01, Steps: 5, RandomStart: true}, 8, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range x0 {
		if res.Images[i].H != x0[i].H || res.Images[i].W != x0[i].W {
			t.Fatalf("image %d came out %dx%d, want its own %dx%d", i, res.Images[i].W, res.Images[i].H, x0[i].W, x0[i].H)
		}
		for j, v := range x0[i].Pix {
			if res.Images[i].Pix[j] != v {
				t.Fatalf("image %d pixel %d changed from %g to %g with eps 0", i, j, v, res.Images[i].Pix[j])
			}
		}
	}
}

// Every result is on the 8-bit grid and inside its budget, for both norms,
// and the attack lowers its objective.
func TestPerturbStaysOnGridWithinBudgetAndLowersTheLoss(t *testing.T) {
	m := demoModel(t)
	defer m.Close()
	// Three sizes: the budget holds per image at its own resolution.
	x0 := append(append(gridImages(2, 2), sizedImages(1, 5, 48, 40)...), sizedImages(1, 6, 20, 28)...)
	for _, b := range []Budget{
		{Norm: "linf", Eps: 0.02, Step: 0.005, Steps: 8, RandomStart: true},
		{Norm: "linf", Eps: 0.0157, Step: 0.004, Steps: 8, Momentum: 0.9},
		{Norm: "l2", Eps: 0.5, Step: 0.2, Steps: 8, RandomStart: true},
	} {
		obj := collisionTo(t, 0)
		res, err := Perturb(m, x0, "block3", obj, b, 3, 7)
		obj.Close()
		if err != nil {
			t.Fatal(err)
		}
		for i := range x0 {
			linf, l2 := 0.0, 0.0
			for j, o := range x0[i].Pix {
				v := float64(res.Images[i].Pix[j])
				if k := v * 255; math.Abs(k-math.Round(k)) > 1e-3 || v < 0 || v > 1 {
					t.Fatalf("%s: pixel %g is not an 8-bit value in [0,1]", b.Norm, v)
				}
				d := math.Abs(v - float64(o))
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
	x0 := append(gridImages(4, 3), sizedImages(1, 8, 36, 30)...)
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
	surrogate, err := NewSurrogate("cpu", grads, 6, randomMean, 10, false)
	if err != nil {
		t.Fatal(err)
	}
	defer surrogate.Close()
	// The surrogate sends every image the same ∂loss/∂activation (it sees
	// the set through its mean); collision sends each its own, so a batch
	// given another batch's share shows.
	collision := collisionTo(t, 0.3)
	defer collision.Close()
	for name, obj := range map[string]Objective{"surrogate": surrogate, "collision": collision} {
		value := func(batch int) (float64, [][]float32) {
			st := newState(x0)
			// An L2 step with no binding budget is −g/‖g‖ per image (then
			// clipped to [0,1]): it compares the gradients' directions.
			loss, err := st.step(m, "block3", obj, Budget{Norm: "l2", Eps: 1e9, Step: 1}, batch)
			if err != nil {
				t.Fatal(err)
			}
			return loss, st.delta
		}
		l1, g1 := value(0)
		l2, g2 := value(2)
		if math.Abs(l1-l2) > 1e-6 {
			t.Fatalf("%s: loss %g in one batch, %g in batches of 2", name, l1, l2)
		}
		for i := range g1 {
			nonzero := false
			for j := range g1[i] {
				nonzero = nonzero || g1[i][j] != 0
				if math.Abs(float64(g1[i][j]-g2[i][j])) > 1e-4 {
					t.Fatalf("%s: image %d: step[%d] %g in one batch, %g in batches", name, i, j, g1[i][j], g2[i][j])
				}
			}
			if !nonzero {
				t.Fatalf("%s: image %d: zero step", name, i)
			}
		}
	}
}

// Every iterate stays in the budget, not only the quantized result: a step
// far larger than eps is projected back into the ball and into [0,1].
func TestEveryStepStaysInTheBudget(t *testing.T) {
	m := demoModel(t)
	defer m.Close()
	x0 := append(gridImages(2, 11), sizedImages(1, 12, 40, 24)...)
	obj := collisionTo(t, 2)
	defer obj.Close()
	for _, b := range []Budget{{Norm: "linf", Eps: 0.01, Step: 0.5}, {Norm: "l2", Eps: 0.3, Step: 5}} {
		st := newState(x0)
		for step := range 3 {
			if _, err := st.step(m, "block3", obj, b, 2); err != nil {
				t.Fatal(err)
			}
			for i, d := range st.delta {
				sq, mx := 0.0, 0.0
				for j, v := range d {
					mx = math.Max(mx, math.Abs(float64(v)))
					sq += float64(v) * float64(v)
					if x := st.orig[i].Pix[j] + v; x < -1e-6 || x > 1+1e-6 {
						t.Fatalf("%s step %d image %d: pixel at %g, outside [0,1]", b.Norm, step, i, x)
					}
				}
				if (b.Norm == "linf" && mx > b.Eps+1e-6) || (b.Norm == "l2" && math.Sqrt(sq) > b.Eps+1e-4) {
					t.Fatalf("%s step %d image %d: δ of L∞ %g, L2 %g outside eps %g", b.Norm, step, i, mx, math.Sqrt(sq), b.Eps)
				}
			}
		}
	}
}

func TestMeasure(t *testing.T) {
	img := func(v ...float32) images.Image { return images.Image{C: 3, H: 1, W: len(v) / 3, Pix: v} }
	orig := []images.Image{img(0, 0, 0, 0, 0, 0), img(1, 1, 1)}
	adv := []images.Image{img(0.1, 0, 0, 0, 0, 0), img(1, 1, 1)}
	s := Measure(orig, adv)
	// image 0 (2 pixels): mse 0.01/6 → 27.78 dB; image 1 unchanged → MaxPSNR.
	if math.Abs(s.Linf-0.1) > 1e-6 || math.Abs(s.L2Mean-0.05) > 1e-6 ||
		math.Abs(s.PSNRMean-(10*math.Log10(6/0.01)+MaxPSNR)/2) > 1e-3 {
		t.Fatalf("%+v", s)
	}
}

// A budget whose 8-bit rounding rounds up (4.7 levels) must still end at
// ⌊4.7⌋ = 4 levels: the last quantization caps, not only the steps.
func TestFinalRoundingDoesNotStepPastTheBudget(t *testing.T) {
	m := demoModel(t)
	defer m.Close()
	x0 := gridImages(2, 21)
	for i := range x0 {
		for j := range x0[i].Pix {
			x0[i].Pix[j] = float32(64+math.Round(float64(x0[i].Pix[j])*127)) / 255 // far from 0 and 1
		}
	}
	obj := collisionTo(t, 3)
	defer obj.Close()
	eps := 4.7 / 255
	res, err := Perturb(m, x0, "block3", obj, Budget{Norm: "linf", Eps: eps, Step: eps, Steps: 3}, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	most := 0.0
	for i := range x0 {
		for j, o := range x0[i].Pix {
			most = math.Max(most, math.Abs(float64(res.Images[i].Pix[j])-float64(o)))
		}
	}
	if levels := math.Round(most * 255); levels != 4 {
		t.Errorf("largest change %v levels, want 4 (eps %.2f levels; sign steps of eps saturate it)", levels, eps*255)
	}
}

// One L2 step from δ = 0 with a step shorter than eps lands at exactly the
// step length: projection shrinks what is outside the ball and leaves what
// is inside alone.
func TestL2StepInsideTheBallIsNotRescaled(t *testing.T) {
	m := demoModel(t)
	defer m.Close()
	x0 := gridImages(2, 22)
	for i := range x0 {
		for j := range x0[i].Pix {
			x0[i].Pix[j] = 0.5 // no pixel clipped at 0 or 1
		}
	}
	obj := collisionTo(t, 3)
	defer obj.Close()
	st := newState(x0)
	b := Budget{Norm: "l2", Eps: 1, Step: 0.1}
	if _, err := st.step(m, "block3", obj, b, 2); err != nil {
		t.Fatal(err)
	}
	for i, d := range st.delta {
		sq := 0.0
		for _, v := range d {
			sq += float64(v) * float64(v)
		}
		if n := math.Sqrt(sq); math.Abs(n-b.Step) > 1e-4 {
			t.Errorf("image %d: ‖δ‖ = %g after one step of %g inside eps %g", i, n, b.Step, b.Eps)
		}
	}
}
