package torch

import (
	"math"
	"testing"
)

// The binary elementwise ops across the cgo boundary, against Go loops on
// operands that differ (so that an operand order swapped in a wrapper or in
// the shim shows), and the scalar ops with a value that is not their
// identity.
func TestBinaryOpsKeepTheirOperandOrder(t *testing.T) {
	s := NewScope()
	defer s.Close()
	const n = 12
	a, b := randData(n, 3), randData(n, 4)
	for i := range b {
		b[i] = 1.5 + float32(math.Abs(float64(b[i]))) // no division by ~0
	}
	ta, tb := s.FromFloat32(a, []int64{3, 4}, "cpu"), s.FromFloat32(b, []int64{3, 4}, "cpu")
	for _, tc := range []struct {
		name string
		got  *Tensor
		want func(x, y float64) float64
	}{
		{"add", s.Add(ta, tb), func(x, y float64) float64 { return x + y }},
		{"sub", s.Sub(ta, tb), func(x, y float64) float64 { return x - y }},
		{"mul", s.Mul(ta, tb), func(x, y float64) float64 { return x * y }},
		{"div", s.Div(ta, tb), func(x, y float64) float64 { return x / y }},
		{"maximum", s.Maximum(ta, tb), math.Max},
		{"minimum", s.Minimum(ta, tb), math.Min},
		{"add_scalar", s.AddScalar(ta, 0.75), func(x, _ float64) float64 { return x + 0.75 }},
		{"mul_scalar", s.MulScalar(ta, -2.5), func(x, _ float64) float64 { return -2.5 * x }},
		{"pow_scalar", s.PowScalar(tb, 3), func(_, y float64) float64 { return y * y * y }},
		{"clamp", s.Clamp(ta, -0.3, 0.6), func(x, _ float64) float64 { return math.Max(-0.3, math.Min(0.6, x)) }},
	} {
		if err := s.Err(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		v, err := tc.got.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		for i := range v {
			w := tc.want(float64(a[i]), float64(b[i]))
			if math.Abs(float64(v[i])-w) > 1e-5*(1+math.Abs(w)) {
				t.Errorf("%s[%d] = %g, want %g (a %g, b %g)", tc.name, i, v[i], w, a[i], b[i])
				break
			}
		}
	}
}
