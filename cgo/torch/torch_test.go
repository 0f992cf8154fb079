package torch

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	gotorch "github.com/wangkuiyi/gotorch"
)

func randData(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func values(t *testing.T, s *Scope, x *Tensor) []float32 {
	t.Helper()
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func near(t *testing.T, name string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > tol*(1+math.Abs(float64(want[i]))) || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s[%d] = %g, want %g", name, i, got[i], want[i])
		}
	}
}

// Each operation checked against the same computation as a plain Go loop.
func TestOpsAgainstGoLoops(t *testing.T) {
	s := NewScope()
	defer s.Close()
	const n, k, m = 5, 4, 3
	a := randData(n*k, 1)
	b := randData(k*m, 2)
	ta := s.FromFloat32(a, []int64{n, k}, "cpu")
	tb := s.FromFloat32(b, []int64{k, m}, "cpu")

	mm := make([]float32, n*m)
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			for l := 0; l < k; l++ {
				mm[i*m+j] += a[i*k+l] * b[l*m+j]
			}
		}
	}
	sig := make([]float32, len(a))
	rowSum := make([]float32, n)
	clamp := make([]float32, len(a))
	for i, v := range a {
		sig[i] = float32(1 / (1 + math.Exp(-float64(v))))
		rowSum[i/k] += v
		clamp[i] = float32(math.Max(-0.5, math.Min(0.5, float64(v))))
	}
	col2 := make([]float32, n)
	for i := 0; i < n; i++ {
		col2[i] = a[i*k+2]
	}
	tests := []struct {
		name string
		got  *Tensor
		want []float32
	}{
		{"mm (gotorch)", s.MM(ta, tb), mm},
		{"matmul", s.Matmul(ta, tb), mm},
		{"sigmoid (gotorch)", s.Sigmoid(ta), sig},
		{"sum over dim 1", s.SumDims(ta, false, 1), rowSum},
		{"clamp", s.Clamp(ta, -0.5, 0.5), clamp},
		{"select column", s.Select(ta, 1, 2), col2},
		{"narrow+reshape", s.Reshape(s.Narrow(ta, 1, 2, 1), n), col2},
		{"transpose twice", s.Transpose(s.Transpose(ta, 0, 1), 0, 1), a},
	}
	for _, tc := range tests {
		near(t, tc.name, values(t, s, tc.got), tc.want, 1e-5)
	}
}

func TestFFTRoundTripAndIdentityResample(t *testing.T) {
	s := NewScope()
	defer s.Close()
	img := randData(2*3*8*10, 3)
	x := s.FromFloat32(img, []int64{2, 3, 8, 10}, "cpu")
	back := s.IRFFT2(s.RFFT2(x), 8, 10)
	near(t, "irfft2(rfft2(x))", values(t, s, back), img, 1e-4)

	identity := []float32{1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0}
	theta := s.FromFloat32(identity, []int64{2, 2, 3}, "cpu")
	near(t, "affine identity", values(t, s, s.AffineSample(x, theta)), img, 1e-4)
	near(t, "resize to same size", values(t, s, s.Resize(x, 8, 10, false)), img, 1e-5)
}

// d/dx Σ sigmoid(W x) checked against central finite differences.
func TestGradMatchesFiniteDifferences(t *testing.T) {
	s := NewScope()
	defer s.Close()
	w := randData(3*4, 4)
	x0 := randData(4, 5)
	f := func(x []float32) float64 {
		sc := NewScope()
		defer sc.Close()
		y := sc.Sum(sc.Sigmoid(sc.MM(sc.FromFloat32(w, []int64{3, 4}, "cpu"), sc.FromFloat32(x, []int64{4, 1}, "cpu"))))
		v, err := sc.Item(y)
		if err != nil {
			t.Fatal(err)
		}
		return float64(v)
	}
	x := s.FromFloat32(x0, []int64{4, 1}, "cpu")
	if err := x.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	y := s.Sum(s.Sigmoid(s.MM(s.FromFloat32(w, []int64{3, 4}, "cpu"), x)))
	g := values(t, s, s.Grad([]*Tensor{y}, nil, []*Tensor{x}, false, false)[0])
	const h = 1e-2
	for i := range x0 {
		xp := append([]float32(nil), x0...)
		xm := append([]float32(nil), x0...)
		xp[i] += h
		xm[i] -= h
		fd := (f(xp) - f(xm)) / (2 * h)
		if math.Abs(fd-float64(g[i])) > 1e-3 {
			t.Errorf("grad[%d] = %g, finite difference %g", i, g[i], fd)
		}
	}
}

func TestScopeFreesEverythingAndKeepsOwnership(t *testing.T) {
	base := LiveTensors()
	var kept *Tensor
	func() {
		s := NewScope()
		defer s.Close()
		x := s.FromFloat32(randData(16, 6), []int64{4, 4}, "cpu")
		for i := 0; i < 50; i++ {
			x = s.Sigmoid(s.Add(x, x))
		}
		if got := LiveTensors() - base; got != 101 {
			t.Errorf("live tensors inside scope = %d, want 101", got)
		}
		kept = s.Keep(s.Clone(x))
	}()
	if got := LiveTensors() - base; got != 1 {
		t.Fatalf("after Close: %d live tensors, want only the kept one", got)
	}
	if _, err := kept.Float32s(); err != nil {
		t.Fatalf("kept tensor unusable after its scope closed: %v", err)
	}
	kept.Close()
	kept.Close() // twice is harmless
	if got := LiveTensors() - base; got != 0 {
		t.Fatalf("%d tensors leaked", got)
	}
}

func TestScopeKeepsFirstError(t *testing.T) {
	s := NewScope()
	defer s.Close()
	a := s.FromFloat32(make([]float32, 6), []int64{2, 3}, "cpu")
	b := s.FromFloat32(make([]float32, 8), []int64{2, 4}, "cpu")
	bad := s.MM(a, b)
	after := s.Add(a, a)
	if bad != nil || after != nil {
		t.Fatal("operations after a failure must return nil")
	}
	err := s.Err()
	if err == nil || !strings.Contains(err.Error(), "mm") {
		t.Fatalf("error = %v, want the mm failure", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error spans lines: %q", err)
	}
	if s.FromFloat32(make([]float32, 3), []int64{2, 2}, "cpu") != nil {
		t.Fatal("FromFloat32 ran after an error")
	}
}

func TestFromFloat32RejectsWrongLength(t *testing.T) {
	s := NewScope()
	defer s.Close()
	s.FromFloat32(make([]float32, 3), []int64{2, 2}, "cpu")
	if s.Err() == nil {
		t.Fatal("want an error for 3 values into a 2x2 tensor")
	}
}

func TestAdoptTakesGotorchTensors(t *testing.T) {
	base := LiveTensors()
	s := NewScope()
	x := s.Adopt(gotorch.Ones([]int64{2, 3}, false))
	near(t, "ones", values(t, s, s.Sum(x)), []float32{6}, 0)
	s.Close()
	if LiveTensors() != base {
		t.Fatal("adopted tensor not freed by its scope")
	}
}

func TestSeededNoiseIsReproducible(t *testing.T) {
	s := NewScope()
	defer s.Close()
	x := s.FromFloat32(make([]float32, 64), []int64{64}, "cpu")
	a := values(t, s, s.RandnLike(x, 42))
	b := values(t, s, s.RandnLike(x, 42))
	c := values(t, s, s.RandnLike(x, 43))
	near(t, "same seed", a, b, 0)
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	if same > 2 {
		t.Fatalf("different seeds gave %d equal values", same)
	}
}

func TestResolveDevice(t *testing.T) {
	dev, fell, err := ResolveDevice("auto")
	if err != nil {
		t.Fatal(err)
	}
	if CUDAAvailable() != (dev != "cpu") || fell == CUDAAvailable() {
		t.Fatalf("auto -> %s (fell back %v) with CUDA %v", dev, fell, CUDAAvailable())
	}
	if _, _, err := ResolveDevice("tpu"); err == nil {
		t.Fatal("tpu accepted")
	}
	if !CUDAAvailable() {
		_, _, err := ResolveDevice("cuda:0")
		if err == nil || !strings.Contains(err.Error(), "CUDA is not available") {
			t.Fatalf("cuda without a GPU: %v", err)
		}
	}
}
