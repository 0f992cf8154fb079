package audit

import (
	"math"
	"slices"
	"testing"

	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/images"
)

// The threshold is the ⌈(1−rate)(n+1)⌉-th smallest random score, and the
// false-alarm rate counts a held-out random set above the others' threshold.
func TestCalibrateThresholdAndHeldOutFalseAlarms(t *testing.T) {
	// One signal; ten random sets at 0..9 and one far outlier.
	var random []Signals
	for i := range 10 {
		random = append(random, Signals{TCAVShift: float64(i)})
	}
	random = append(random, Signals{TCAVShift: 100})
	c := Calibrate(random, 0.05, 0)
	// n = 11: ⌈0.95·12⌉ = 12 > 11, so the largest score.
	if c.Threshold != c.RandomScores[10] {
		t.Errorf("threshold %g, want the largest random score %g", c.Threshold, c.RandomScores[10])
	}
	// Held out, the outlier is above every other set's scores; nothing else is.
	if want := 1.0 / 11; math.Abs(c.FalseAlarmRate-want) > 1e-12 {
		t.Errorf("false-alarm rate %g, want %g (the outlier only)", c.FalseAlarmRate, want)
	}
	if c := Calibrate(random, 0.05, 1e6); c.Threshold != 1e6 || c.FalseAlarmRate != 0 {
		t.Errorf("floor 1e6: threshold %g, false alarms %g", c.Threshold, c.FalseAlarmRate)
	}
}

// Only the scored signals count: a huge unscored value changes nothing.
func TestScoreReadsOnlyScoredSignals(t *testing.T) {
	ref := []Signals{{TCAVShift: 0.1, ActivationShift: 0.1}, {TCAVShift: 0.3, ActivationShift: 0.1}, {TCAVShift: 0.2, ActivationShift: 0.1}}
	got := Score(Signals{TCAVShift: 0.4, ActivationShift: 1e9}, ref)
	if want := (0.4 - 0.2) / 0.1; math.Abs(got-want) > 1e-9 {
		t.Errorf("score %g, want z of tcav_shift %g", got, want)
	}
}

func TestAUROC(t *testing.T) {
	if got := AUROC([]float64{3, 4}, []float64{1, 2}); got != 1 {
		t.Errorf("separated: %g", got)
	}
	if got := AUROC([]float64{1, 3}, []float64{2, 2}); got != 0.5 {
		t.Errorf("half: %g", got)
	}
	if got := AUROC([]float64{2}, []float64{2}); got != 0.5 {
		t.Errorf("tie: %g", got)
	}
}

func TestMedianIsOneOfTheValues(t *testing.T) {
	v, i := Median([]float64{0.9, 0.1, 0.5, 0.7})
	if v != 0.5 || i != 2 {
		t.Errorf("median %g at %d, want 0.5 at 2 (the lower middle)", v, i)
	}
}

// A flat image is a fixed point of every purification but JPEG; a
// checkerboard of single pixels is what the blur and the resize remove.
func TestPurificationsKeepFlatImagesAndSmoothPixelNoise(t *testing.T) {
	const h, w = 8, 10
	flat := images.Image{C: 3, H: h, W: w, Pix: make([]float32, 3*h*w)}
	checker := images.Image{C: 3, H: h, W: w, Pix: make([]float32, 3*h*w)}
	for i := range flat.Pix {
		flat.Pix[i] = 0.4
		x, y := (i%(h*w))%w, (i%(h*w))/w
		checker.Pix[i] = 0.5 + 0.1*float32(1-2*((x+y)%2))
	}
	for _, p := range Purifications() {
		if p.Apply == nil {
			continue
		}
		out := p.Apply(flat)
		if out.H != h || out.W != w {
			t.Fatalf("%s: %dx%d, want %dx%d", p.Name, out.W, out.H, w, h)
		}
		tol := 1e-6
		if p.Name == "bits5" {
			tol = 0.5 / 31
		}
		for i, v := range out.Pix {
			if math.Abs(float64(v)-0.4) > tol {
				t.Fatalf("%s moved a flat image: sample %d = %g", p.Name, i, v)
			}
		}
	}
	amp := func(im images.Image) float64 { return math.Abs(float64(im.Pix[w+1] - im.Pix[w+2])) }
	if b := Blur(checker); amp(b) > 0.7*amp(checker) {
		t.Errorf("blur kept the pixel checkerboard: %g of %g", amp(b), amp(checker))
	}
	if r := ResizeRoundTrip(checker, 0.75); amp(r) > 0.7*amp(checker) {
		t.Errorf("resize round trip kept the pixel checkerboard: %g of %g", amp(r), amp(checker))
	}
}

// The config accepts exactly the purifications the audit has.
func TestConfigNamesThePurifications(t *testing.T) {
	if got := Names(); !slices.Equal(got, config.AuditPurifications) {
		t.Errorf("audit purifications %v, config.AuditPurifications %v", got, config.AuditPurifications)
	}
}

// Known answers: the alignment is the mean cosine of the rows with v; the
// coherence is 1 for equal residuals and 0 for opposite ones.
func TestAlignmentAndCoherence(t *testing.T) {
	grads := []float32{1, 0, 0, 2, 3, 4} // rows (1,0), (0,2), (3,4)
	if got, want := Alignment(grads, 3, []float32{1, 1}), (1/math.Sqrt2+1/math.Sqrt2+7/(5*math.Sqrt2))/3; math.Abs(got-want) > 1e-9 {
		t.Errorf("alignment %g, want %g", got, want)
	}
	a := []float32{1, 1, 3, 1}
	if got := Coherence(a, []float32{0, 1, 2, 1}, 2); math.Abs(got-1) > 1e-9 {
		t.Errorf("equal residuals: coherence %g, want 1", got)
	}
	if got := Coherence(a, []float32{0, 1, 4, 1}, 2); math.Abs(got) > 1e-9 {
		t.Errorf("opposite residuals: coherence %g, want 0", got)
	}
}

// The alignment shift is scored: a set whose TCAV does not move but whose
// alignment does is suspicious.
func TestScoreReadsTheAlignmentShift(t *testing.T) {
	ref := []Signals{{TCAVShift: 0.1, AlignmentShift: 0.01}, {TCAVShift: 0.3, AlignmentShift: 0.02}, {TCAVShift: 0.2, AlignmentShift: 0.03}}
	if got := Score(Signals{TCAVShift: 0.2, AlignmentShift: 0.07}, ref); math.Abs(got-5) > 1e-9 {
		t.Errorf("score %g, want the alignment shift's z of 5", got)
	}
}
