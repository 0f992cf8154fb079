package tcav

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/stats"
)

func TestSensitivitiesMatchAPlainLoop(t *testing.T) {
	const n, d, k = 9, 13, 4
	r := rand.New(rand.NewPCG(1, 2))
	g := &activations.Activations{Set: "zebra", Layer: "l", N: n, Shape: []int64{d}, Data: make([]float32, n*d)}
	for i := range g.Data {
		g.Data[i] = float32(r.NormFloat64())
	}
	var cavs []*cav.CAV
	for c := 0; c < k; c++ {
		v := make([]float32, d)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		cavs = append(cavs, &cav.CAV{Vector: v})
	}
	got, err := Sensitivities("cpu", g, cavs)
	if err != nil {
		t.Fatal(err)
	}
	for c := 0; c < k; c++ {
		for i := 0; i < n; i++ {
			want := 0.0
			for j := 0; j < d; j++ {
				want += float64(g.Data[i*d+j]) * float64(cavs[c].Vector[j])
			}
			if math.Abs(got[c][i]-want) > 1e-4 {
				t.Fatalf("S[%d][%d] = %g, want %g", c, i, got[c][i], want)
			}
		}
	}
}

func TestScoreCountsPositiveDerivatives(t *testing.T) {
	score, mag := Score([]float64{0.5, -1, 2, 0, -0.5})
	if score != 0.4 || math.Abs(mag-0.2) > 1e-12 {
		t.Fatalf("score %g magnitude %g; want 0.4 and 0.2 (zero is not positive)", score, mag)
	}
}

// A gradient field that points along the concept direction gives score 1
// and significance above; the opposite field gives 0 and below.
func TestEntriesDirectionAndSignificance(t *testing.T) {
	const d = 4
	grads := &activations.Activations{Set: "c", Layer: "l", N: 6, Shape: []int64{d}, Data: make([]float32, 6*d)}
	for i := 0; i < 6; i++ {
		grads.Data[i*d] = 1
		grads.Data[i*d+1] = float32(i%3) - 1 // random-ish second feature
	}
	unit := func(x, y float32) *cav.CAV {
		n := float32(math.Sqrt(float64(x*x + y*y)))
		return &cav.CAV{Vector: []float32{x / n, y / n, 0, 0}, Accuracy: 1}
	}
	randoms := []string{"r0", "r1", "r2", "r3"}
	l := Layer{Target: "t", Layer: "l", Grads: grads, Randoms: randoms, Concepts: []string{"up", "down"},
		CAVs: map[string][]*cav.CAV{
			"up":   {unit(1, 0.1), unit(1, -0.1), unit(1, 0.2), unit(1, 0)},
			"down": {unit(-1, 0.1), unit(-1, -0.1), unit(-1, 0.2), unit(-1, 0)},
		},
		Baseline: []*cav.CAV{unit(0.1, 1), unit(-0.1, 1), unit(0.05, -1), unit(-0.2, 1)}}
	entries, err := Entries("cpu", l, Significance{Method: stats.TwoSample, Alpha: 0.05, Bonferroni: true})
	if err != nil {
		t.Fatal(err)
	}
	up, down := entries[0], entries[1]
	if up.Mean != 1 || !up.Significant || up.Direction != stats.Above {
		t.Errorf("up: %+v", up)
	}
	if down.Mean != 0 || !down.Significant || down.Direction != stats.Below {
		t.Errorf("down: %+v", down)
	}
}
