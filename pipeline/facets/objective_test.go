package facets

import (
	"math"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
)

// A hand-made pass: 2 images, a layer "g" of shape [2,3] that is a leaf,
// and logits h = g·Vᵀ, so that ∇_g h_k = V[k] for every image.
func handPass(t *testing.T, s *torch.Scope) *Pass {
	t.Helper()
	g := s.FromFloat32([]float32{1, 2, 3, -1, 0.5, 4}, []int64{2, 3}, testDevice())
	if err := g.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	v := s.FromFloat32([]float32{1, -1, 2, 0, 3, -2}, []int64{2, 3}, testDevice())
	img := s.FromFloat32([]float32{0.5, 0.7, 0.1, 0.5, 0.5, 0.5, 0.9, 0, 0.4, 0.6, 0.5, 0.5, 1, 1, 0, 0.5, 0.5, 0.5, 0.2, 0.3, 0.5, 0.5, 0.8, 0.1},
		[]int64{2, 3, 2, 2}, testDevice())
	return &Pass{Image: img, Logits: s.MM(g, s.Transpose(v, 0, 1)), Acts: map[string]*torch.Tensor{"g": g}}
}

func valuesOf(t *testing.T, s *torch.Scope, o Objective, p *Pass) []float64 {
	t.Helper()
	v, err := floats(s, o.Value(s, p))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestObjectives(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	p := handPass(t, s)
	// h = g·Vᵀ: image 0 → [1−2+6, 0+6−6] = [5, 0]; image 1 → [−1−0.5+8, 1.5−8] = [6.5, −6.5].
	w := []float32{0.5, 1, -1} // the facet direction at "g"
	// Facet on class 0: ∇_g h_0 = V[0] = [1,−1,2], relu → [1,0,2];
	// wᵀ(g ⊙ mask): image 0: 0.5·1·1 + 0 + (−1)·3·2 = −5.5; image 1: 0.5·(−1) − 4·2 = −8.5.
	facet, err := NewFacet(testDevice(), Class(0), []Direction{{Layer: "g", Shape: []int64{3}, Weight: w}}, []float64{1, 3}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer facet.Close()
	defaultLambda, err := NewFacet(testDevice(), Class(0), []Direction{{Layer: "g", Shape: []int64{3}, Weight: w}}, []float64{1, 3}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer defaultLambda.Close()
	l2 := func(px []float64) float64 {
		sum := 0.0
		for _, x := range px {
			sum += (x - 0.5) * (x - 0.5)
		}
		return -sum / float64(len(px))
	}
	img0 := []float64{0.5, 0.7, 0.1, 0.5, 0.5, 0.5, 0.9, 0, 0.4, 0.6, 0.5, 0.5}
	img1 := []float64{1, 1, 0, 0.5, 0.5, 0.5, 0.2, 0.3, 0.5, 0.5, 0.8, 0.1}
	tests := []struct {
		name string
		obj  Objective
		want []float64
	}{
		{"class 0", Class(0), []float64{5, 6.5}},
		{"class 1", Class(1), []float64{0, -6.5}},
		{"channel 2 of g", Channel{Layer: "g", Channel: 2}, []float64{3, 4}},
		{"L2 penalty", L2{}, []float64{l2(img0), l2(img1)}},
		{"scaled", Scaled(-2, Class(1)), []float64{0, 13}},
		{"sum", Sum(Class(0), Class(1), Scaled(0.5, Class(0))), []float64{7.5, 3.25}},
		{"facet, λ 2, strengths 1 and 3", facet, []float64{2 * 1 * -5.5, 2 * 3 * -8.5}},
		{"facet, default λ 5/1 layers", defaultLambda, []float64{5 * 1 * -5.5, 5 * 3 * -8.5}},
		{"target plus facet", Sum(Class(0), facet), []float64{5 - 11, 6.5 - 51}},
	}
	for _, tt := range tests {
		got := valuesOf(t, s, tt.obj, p)
		for i := range tt.want {
			if math.Abs(got[i]-tt.want[i]) > 1e-5 {
				t.Errorf("%s: image %d = %g, want %g", tt.name, i, got[i], tt.want[i])
			}
		}
	}
	if got := Sum(Channel{Layer: "a"}, facet, Channel{Layer: "g"}).Layers(); len(got) != 2 || got[0] != "a" || got[1] != "g" {
		t.Errorf("layers of a sum = %v, want [a g]", got)
	}
}

// The facet term's gradient treats the mask as a constant: d/dg of
// λ·s·wᵀ(g ⊙ relu(∇_g f)) is λ·s·w ⊙ relu(∇_g f), whatever f's curvature.
func TestFacetGradientStopsAtTheMask(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	g := s.FromFloat32([]float32{1, -2, 3}, []int64{1, 3}, testDevice())
	if err := g.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	// f = Σ g², so ∇_g f = 2g = [2,−4,6] (mask [2,0,6]) and depends on g.
	p := &Pass{Logits: s.Reshape(s.Sum(s.Mul(g, g)), 1, 1), Acts: map[string]*torch.Tensor{"g": g}}
	w := []float32{1, 1, -0.5}
	facet, err := NewFacet(testDevice(), Class(0), []Direction{{Layer: "g", Shape: []int64{3}, Weight: w}}, []float64{2}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer facet.Close()
	grad, err := floats(s, s.Grad([]*torch.Tensor{s.Sum(facet.Value(s, p))}, nil, []*torch.Tensor{g}, false, false)[0])
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{2 * 1 * 2, 0, 2 * -0.5 * 6}
	for i := range want {
		if math.Abs(grad[i]-want[i]) > 1e-5 {
			t.Errorf("gradient %d = %g, want %g", i, grad[i], want[i])
		}
	}
}

func TestStrengths(t *testing.T) {
	tests := []struct {
		lo, hi float64
		n      int
		want   []float64
	}{
		{0.1, 5, 1, []float64{0.1}},
		{0, 5, 2, []float64{0, 5}},
		{0.1, 5.0, 9, []float64{0.1, 0.7125, 1.325, 1.9375, 2.55, 3.1625, 3.775, 4.3875, 5}},
		{-1, 1, 5, []float64{-1, -0.5, 0, 0.5, 1}},
	}
	for _, tt := range tests {
		got := Strengths(tt.lo, tt.hi, tt.n)
		for i := range tt.want {
			if math.Abs(got[i]-tt.want[i]) > 1e-12 {
				t.Errorf("Strengths(%g, %g, %d) = %v, want %v", tt.lo, tt.hi, tt.n, got, tt.want)
				break
			}
		}
	}
}
