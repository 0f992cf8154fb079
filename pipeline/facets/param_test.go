package facets

import (
	"math"
	"os"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
)

// testDevice is cpu unless CAVFORGE_DEVICE names another (the GPU check
// script sets cuda).
func testDevice() string {
	if d := os.Getenv("CAVFORGE_DEVICE"); d != "" {
		return d
	}
	return "cpu"
}

func imageOf(t *testing.T, p Param) []float32 {
	t.Helper()
	s := torch.NewScope()
	defer s.Close()
	img := p.Image(s)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	v, err := img.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The normalized colour matrix: lucid's square root of the colour
// correlation divided by its largest column norm, 0.4620 (the first column).
func TestColorMatrix(t *testing.T) {
	norm := func(m [3][3]float64, c int) float64 {
		return math.Sqrt(m[0][c]*m[0][c] + m[1][c]*m[1][c] + m[2][c]*m[2][c])
	}
	if got := norm(ColorCorrelation, 0); math.Abs(got-0.4620) > 5e-5 {
		t.Errorf("largest column norm before normalization = %.5f, want 0.4620", got)
	}
	m := ColorMatrix()
	for c, want := range []float64{1, math.Sqrt(0.0162) / math.Sqrt(0.2134), math.Sqrt(0.0038) / math.Sqrt(0.2134)} {
		if got := norm(m, c); math.Abs(got-want) > 1e-9 {
			t.Errorf("column %d norm = %.6f, want %.6f", c, got, want)
		}
	}
	want := [3][3]float64{{0.5628, 0.1948, 0.0433}, {0.5845, 0, -0.1082}, {0.5845, -0.1948, 0.0649}}
	for r := range 3 {
		for c := range 3 {
			if math.Abs(m[r][c]-want[r][c]) > 1e-4 {
				t.Errorf("m[%d][%d] = %.4f, want %.4f", r, c, m[r][c], want[r][c])
			}
		}
	}
}

// Frequencies of the rfft2 grid, in cycles per pixel, and the 1/frequency
// scale floored at 1/max(h,w).
func TestSpectrumScale(t *testing.T) {
	const h, w = 8, 6 // columns 0..3 of rfftfreq(6); rows fftfreq(8)
	sc := spectrumScale(h, w)
	at := func(y, x int) float64 { return float64(sc[y*(w/2+1)+x]) }
	tests := []struct {
		name string
		y, x int
		want float64
	}{
		{"DC floored at max(h,w)", 0, 0, 8},
		{"one cycle across the width", 0, 1, 6},
		{"one cycle down the height", 1, 0, 8},
		{"negative row frequency", 7, 0, 8},
		{"Nyquist column", 0, 3, 2},
		{"diagonal", 2, 3, 1 / math.Hypot(0.25, 0.5)},
	}
	for _, tt := range tests {
		if got := at(tt.y, tt.x); math.Abs(got-tt.want) > 1e-5 {
			t.Errorf("%s: scale = %g, want %g", tt.name, got, tt.want)
		}
	}
}

// Coefficients set from an image give that image back through the whole
// parameterization (1/f scale, inverse FFT, colour mixing, sigmoid), for
// even and odd sizes.
func TestFourierReproducesImage(t *testing.T) {
	for _, sz := range [][2]int{{16, 16}, {12, 15}} {
		h, w := sz[0], sz[1]
		p, err := NewFourier(testDevice(), h, w, 0.01, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, 2*3*h*w)
		for i := range want {
			n, c, y, x := i/(3*h*w), i/(h*w)%3, i/w%h, i%w
			want[i] = float32(0.5 + 0.4*math.Sin(0.7*float64(x)+0.3*float64(y*(c+1)))*math.Cos(0.2*float64(n+c)+0.5*float64(y)))
		}
		if err := p.SetImage(want); err != nil {
			t.Fatal(err)
		}
		got := imageOf(t, p)
		for i := range want {
			if d := math.Abs(float64(got[i] - want[i])); d > 2e-5 {
				t.Fatalf("%dx%d: value %d = %g, want %g", h, w, i, got[i], want[i])
			}
		}
		p.Close()
	}
}

// A fresh random spectrum is a faint image around grey, the start lucid
// renders from; the pixel parameterization starts the same way.
func TestRandomStartIsNearGrey(t *testing.T) {
	f, err := NewFourier(testDevice(), 32, 32, 0.01, 7, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	px, err := NewPixels(testDevice(), 32, 32, 0.01, 7, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	for name, p := range map[string]Param{"fourier": f, "pixels": px} {
		v := imageOf(t, p)
		lo, hi := 1.0, 0.0
		for _, x := range v {
			lo, hi = math.Min(lo, float64(x)), math.Max(hi, float64(x))
		}
		if lo < 0.3 || hi > 0.7 || hi-lo < 1e-3 {
			t.Errorf("%s: start image spans [%.3f, %.3f], want a faint image around 0.5", name, lo, hi)
		}
	}
}
