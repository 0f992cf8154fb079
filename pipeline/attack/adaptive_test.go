package attack

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/audit"
	"github.com/cavforge/cavforge/pipeline/images"
)

func demoImages(t *testing.T, set string, n int) []images.Image {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "demo", "data", set, "*.png"))
	if err != nil || len(files) < n {
		t.Fatalf("demo set %s: %d files (%v)", set, len(files), err)
	}
	imgs, err := images.LoadSet(files[:n], false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

func everyPurification() *Adaptive {
	return &Adaptive{Purifications: audit.Purifications()}
}

// The adaptive objective is the mean of the objective over the set and its
// copies purified as the audit purifies them (files written by audit.Write,
// decoded as the audit decodes them), plus the weighted mean squared shift.
// A view that was not what the audit sees (the in-memory JPEG decoding
// differently from the file, a missing 8-bit rounding) fails it.
func TestAdaptiveLossIsTheMeanOverTheAuditsPurifiedFiles(t *testing.T) {
	m := demoModel(t)
	defer m.Close()
	imgs := append(demoImages(t, "striped", 5), sizedImages(2, 4, 40, 28)...)
	obj := collisionTo(t, 0.5)
	defer obj.Close()
	dir := t.TempDir()
	var files []string
	if err := os.MkdirAll(filepath.Join(dir, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, im := range imgs {
		f := filepath.Join(dir, "in", filepath.Base(im.Path))
		if err := images.WritePNG8(f, im); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	plain, err := Loss(m, "block3", obj, imgs, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{plain}
	for _, p := range audit.Purifications() {
		out, err := audit.Write(files, filepath.Join(dir, p.Name), p)
		if err != nil {
			t.Fatal(err)
		}
		purified, err := images.LoadSet(out, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		l, err := Loss(m, "block3", obj, purified, 3)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, l)
	}
	a := everyPurification()
	a.ShiftWeight = 2
	got, per, err := AdaptiveLoss(m, "block3", obj, a, imgs, 3)
	if err != nil {
		t.Fatal(err)
	}
	var mean, shift float64
	for v, w := range want {
		if math.Abs(per[v]-w) > 1e-6*math.Max(1, math.Abs(w)) {
			t.Errorf("view %d: objective %.8g, the audit's files give %.8g", v, per[v], w)
		}
		mean += w / float64(len(want))
		if v > 0 {
			shift += (w - want[0]) * (w - want[0]) / float64(len(want)-1)
		}
	}
	if exp := mean + 2*shift; math.Abs(got-exp) > 1e-6*math.Max(1, math.Abs(exp)) {
		t.Errorf("adaptive loss %.8g, want mean %.8g + 2 × shift %.8g = %.8g", got, mean, shift, exp)
	}
	if shift == 0 {
		t.Errorf("no purification moved the objective: the check above proves nothing")
	}
}

// The differentiable stand-ins compute what the audit's purifications
// compute, so their gradient is the gradient of the function the forward
// pass evaluates.
func TestSmoothStandInsEqualTheAuditsPurifications(t *testing.T) {
	for _, im := range append(sizedImages(1, 7, 32, 32), sizedImages(1, 8, 17, 30)...) {
		for _, p := range audit.Purifications() {
			if p.Name != "blur" && p.Name != "resize" {
				continue
			}
			s := torch.NewScope()
			x := s.FromFloat32(im.Pix, []int64{1, 3, int64(im.H), int64(im.W)}, "cpu")
			got, err := smooth(s, p, x, im.H, im.W).Float32s()
			if err != nil {
				t.Fatal(err)
			}
			want := p.Apply(im).Pix
			for j := range want {
				if math.Abs(float64(got[j]-want[j])) > 1e-5 {
					t.Fatalf("%s on %dx%d: value %d is %g on the device, %g in the audit", p.Name, im.W, im.H, j, got[j], want[j])
				}
			}
			s.Close()
		}
	}
}

// The gradient goes through the transform: with the blur as the only
// purification, the adaptive gradient is half the plain gradient at x plus
// half of Blurᵀ applied to the plain gradient at the blurred set (the chain
// rule; the kernel is symmetric, so away from the clamped edges Blurᵀ is the
// blur itself). A straight-through blur (identity backward) fails it.
func TestAdaptiveGradientGoesThroughTheBlur(t *testing.T) {
	m := demoModel(t)
	defer m.Close()
	imgs := demoImages(t, "striped", 4)
	obj := collisionTo(t, 0.5)
	defer obj.Close()
	blur, _ := audit.ByName("blur")
	grads := func(a *Adaptive, imgs []images.Image) [][]float32 {
		st := newState(imgs)
		out := make([][]float32, len(imgs))
		_, err := st.adaptiveGrads(m, "block3", obj, a, nil, 3, func(_ *torch.Scope, i int, g *torch.Tensor) error {
			v, err := g.Float32s()
			out[i] = v
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	adaptive := grads(&Adaptive{Purifications: []audit.Purification{blur}}, imgs)
	atX := grads(nil, imgs)
	var blurred []images.Image
	for _, im := range imgs {
		b, err := blur.Image(im)
		if err != nil {
			t.Fatal(err)
		}
		blurred = append(blurred, b)
	}
	atY := grads(nil, blurred)
	var diff, norm, stFar float64
	for i, im := range imgs {
		back := audit.Blur(images.Image{C: 3, H: im.H, W: im.W, Pix: atY[i]}).Pix
		for c := range 3 {
			for y := 1; y < im.H-1; y++ {
				for x := 1; x < im.W-1; x++ {
					j := (c*im.H+y)*im.W + x
					want := 0.5*float64(atX[i][j]) + 0.5*float64(back[j])
					straight := 0.5*float64(atX[i][j]) + 0.5*float64(atY[i][j])
					diff += (float64(adaptive[i][j]) - want) * (float64(adaptive[i][j]) - want)
					stFar += (straight - want) * (straight - want)
					norm += want * want
				}
			}
		}
	}
	if rel := math.Sqrt(diff / norm); rel > 1e-4 {
		t.Errorf("adaptive gradient is %.2g (relative) from ½∇(x) + ½ Blurᵀ∇(blur x)", rel)
	}
	if rel := math.Sqrt(stFar / norm); rel < 1e-3 {
		t.Errorf("a straight-through blur would be only %.2g away: the check cannot tell them apart", rel)
	}
}

// Attacking through the purifications leaves a lower objective on the
// purified copies than attacking the images alone, at the same budget.
func TestAdaptiveAttackSurvivesPurificationBetterThanPlain(t *testing.T) {
	m := demoModel(t)
	defer m.Close()
	imgs := demoImages(t, "striped", 6)
	obj := collisionTo(t, 0.5)
	defer obj.Close()
	b := Budget{Norm: "linf", Eps: 4.0 / 255, Step: 1.0 / 255, Steps: 10}
	plain, err := Perturb(m, imgs, "block3", obj, b, 8, 1)
	if err != nil {
		t.Fatal(err)
	}
	b.Adaptive = everyPurification()
	adaptive, err := Perturb(m, imgs, "block3", obj, b, 8, 1)
	if err != nil {
		t.Fatal(err)
	}
	purifiedMean := func(res *Result) float64 {
		_, per, err := AdaptiveLoss(m, "block3", obj, everyPurification(), res.Images, 8)
		if err != nil {
			t.Fatal(err)
		}
		var s float64
		for _, v := range per[1:] {
			s += v / float64(len(per)-1)
		}
		return s
	}
	clean := purifiedMean(&Result{Images: imgs})
	p, a := purifiedMean(plain), purifiedMean(adaptive)
	t.Logf("objective over the purified copies: clean %.4f, plain attack %.4f, adaptive %.4f", clean, p, a)
	if !(a < p) {
		t.Errorf("adaptive attack leaves %.4f on the purified copies, plain %.4f: want lower", a, p)
	}
}

// The alignment penalty is AlignmentWeight times the mean squared change,
// under the purifications, of the mean cosine between the class gradients
// and the set's mean-difference direction, computed here on the host from
// each purified copy's activations.
func TestAdaptiveAlignmentPenaltyIsTheMeanSquaredAlignmentShift(t *testing.T) {
	m := demoModel(t)
	defer m.Close()
	imgs := demoImages(t, "striped", 5)
	const d = 64 * 4 * 4
	grads := make([]float32, 3*d)
	mean := make([]float32, d)
	for i := range grads {
		grads[i] = float32(math.Sin(float64(i) * 0.37))
	}
	for i := range mean {
		mean[i] = float32(0.1 * math.Cos(float64(i)*0.11))
	}
	obj, err := NewSurrogate("cpu", grads, 3, mean, 10, true)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	alignment := func(imgs []images.Image) float64 {
		s := torch.NewScope()
		defer s.Close()
		acts, err := newState(imgs).activations(s, m, "block3", []int{0, 1, 2, 3, 4}, torch.NoGrad)
		if err != nil {
			t.Fatal(err)
		}
		a, err := acts.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		v := make([]float32, d)
		for i, x := range a {
			v[i%d] += x / float32(len(imgs))
		}
		for j := range v {
			v[j] -= mean[j]
		}
		return audit.Alignment(grads, 3, v)
	}
	a0 := alignment(imgs)
	var want float64
	purs := audit.Purifications()
	for _, p := range purs {
		var out []images.Image
		for _, im := range imgs {
			x, err := p.Image(im)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, x)
		}
		ap := alignment(out)
		want += (ap - a0) * (ap - a0) / float64(len(purs))
	}
	without, _, err := AdaptiveLoss(m, "block3", obj, &Adaptive{Purifications: purs}, imgs, 2)
	if err != nil {
		t.Fatal(err)
	}
	with, _, err := AdaptiveLoss(m, "block3", obj, &Adaptive{Purifications: purs, AlignmentWeight: 1000}, imgs, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := (with - without) / 1000; want == 0 || math.Abs(got-want) > 1e-3*want+1e-9 {
		t.Errorf("alignment penalty %.6g per unit weight, want the mean squared alignment shift %.6g", got, want)
	}
}
