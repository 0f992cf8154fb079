package facets

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
)

// ramp is a [1,1,h,w] image with pixel (i,j) = 100·i + j.
func ramp(s *torch.Scope, h, w int) *torch.Tensor {
	v := make([]float32, h*w)
	for i := range h {
		for j := range w {
			v[i*w+j] = float32(100*i + j)
		}
	}
	return s.FromFloat32(v, []int64{1, 1, int64(h), int64(w)}, "cpu")
}

func values(t *testing.T, s *torch.Scope, x *torch.Tensor) ([]float32, []int64) {
	t.Helper()
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v, x.Shape()
}

func TestPadSurroundsTheImageWithItsValue(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	x := s.AddScalar(s.MulScalar(ramp(s, 4, 4), 0), 0.2)
	v, shape := values(t, s, Pad(2, 0.5)(s, x, nil))
	if shape[2] != 8 || shape[3] != 8 {
		t.Fatalf("padded shape %v, want 8×8", shape)
	}
	for i := range 8 {
		for j := range 8 {
			want := float32(0.5)
			if i >= 2 && i < 6 && j >= 2 && j < 6 {
				want = 0.2
			}
			if math.Abs(float64(v[i*8+j]-want)) > 1e-7 {
				t.Fatalf("pixel (%d,%d) = %g, want %g", i, j, v[i*8+j], want)
			}
		}
	}
}

// Jitter(d) keeps the window d−1 pixels smaller at the offset it draws, on
// both axes, from the stream it is given.
func TestJitterCropsAtTheOffsetItDraws(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	const h, w, d = 10, 12, 4
	moved := 0
	for seed := range uint64(8) {
		v, shape := values(t, s, Jitter(d)(s, ramp(s, h, w), rand.New(rand.NewPCG(seed, 1))))
		r := rand.New(rand.NewPCG(seed, 1))
		dy, dx := r.IntN(d), r.IntN(d)
		oh, ow := h-(d-1), w-(d-1)
		if shape[2] != int64(oh) || shape[3] != int64(ow) {
			t.Fatalf("jittered shape %v, want %d×%d", shape, oh, ow)
		}
		for i := range oh {
			for j := range ow {
				if want := float32(100*(i+dy) + j + dx); v[i*ow+j] != want {
					t.Fatalf("seed %d: pixel (%d,%d) = %g, want %g (offset %d,%d)", seed, i, j, v[i*ow+j], want, dy, dx)
				}
			}
		}
		if dx != 0 && dy != 0 {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no seed moved the window on both axes")
	}
}

// A quarter turn maps pixel centres onto pixel centres, so the resampled
// image is exact: counterclockwise by 90° (as the matrix in Rotate says,
// output (x,y) reads input (−y,x) in normalized coordinates), out(i,j) =
// in(j, w−1−i).
func TestRotateAQuarterTurnIsExact(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	const n = 6
	v, shape := values(t, s, Rotate([]float64{90})(s, ramp(s, n, n), rand.New(rand.NewPCG(1, 1))))
	if shape[2] != n || shape[3] != n {
		t.Fatalf("rotated shape %v", shape)
	}
	for i := range n {
		for j := range n {
			want := float64(100*j + (n - 1 - i))
			if math.Abs(float64(v[i*n+j])-want) > 1e-3 {
				t.Fatalf("pixel (%d,%d) = %g, want %g", i, j, v[i*n+j], want)
			}
		}
	}
	// And a zero angle or a unit scale leaves the image alone.
	x := ramp(s, n, n)
	for name, tr := range map[string]Transform{"rotate 0": Rotate([]float64{0}), "scale 1": Scale([]float64{1})} {
		got, _ := values(t, s, tr(s, x, rand.New(rand.NewPCG(1, 1))))
		want, _ := values(t, s, x)
		for k := range want {
			if got[k] != want[k] {
				t.Fatalf("%s changed pixel %d: %g → %g", name, k, want[k], got[k])
			}
		}
	}
}
