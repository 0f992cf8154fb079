package model

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
)

// Intermediate activations, not only shapes and logits, equal PyTorch's:
// testdata/models/record_activations.py ran tiny_traced.pt's submodules in
// PyTorch on the reference input and kept every 5th value of five layers
// (nested Sequential paths, a conv before its ReLU, the block output).
func TestIntermediateActivationsMatchPyTorch(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(modelsDir, "activations.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Model  string
		Stride int
		Layers map[string]struct {
			Shape  []int64
			Values []float64
		}
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Layers) < 5 || rec.Stride < 1 {
		t.Fatalf("activations.json: %d layers, stride %d", len(rec.Layers), rec.Stride)
	}
	m := load(t, rec.Model)
	var paths []string
	for p := range rec.Layers {
		paths = append(paths, p)
	}
	s := torch.NewScope()
	defer s.Close()
	acts := m.Capture(s, s.FromFloat32(referenceInput(), refShape, m.Device()), paths, torch.Inference, torch.FP32)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		want := rec.Layers[p]
		if got := acts[i].Shape(); !equal(got[1:], want.Shape) {
			t.Errorf("%s: shape %v, PyTorch %v", p, got[1:], want.Shape)
			continue
		}
		v := read(t, s, acts[i])
		if n := (len(v) + rec.Stride - 1) / rec.Stride; n != len(want.Values) {
			t.Errorf("%s: %d values at stride %d, PyTorch recorded %d", p, n, rec.Stride, len(want.Values))
			continue
		}
		bad, nonzero := 0, 0
		for k, w := range want.Values {
			g := float64(v[k*rec.Stride])
			if w != 0 {
				nonzero++
			}
			if math.Abs(g-w) > 1e-5+1e-5*math.Abs(w) {
				if bad < 3 {
					t.Errorf("%s[%d] = %g, PyTorch %g", p, k*rec.Stride, g, w)
				}
				bad++
			}
		}
		if bad > 0 || nonzero == 0 {
			t.Errorf("%s: %d of %d values differ from PyTorch (%d non-zero)", p, bad, len(want.Values), nonzero)
		}
	}
}

// The gradient of a class logit at a layer of a frozen model, against finite
// differences through the model itself: along an input direction v, the
// logit changes by ∇_a h · (a(x+εv) − a(x−εv))/2ε, the layer gradient
// applied to the activations' own finite difference. (The layer is a cut of
// the network: the logit depends on x only through it.)
func TestFrozenModelLayerGradientMatchesFiniteDifferences(t *testing.T) {
	for _, tc := range []struct{ file, layer string }{{"frozen.pt", "features.relu2"}, {"tiny_traced.pt", "block1"}} {
		t.Run(tc.file, func(t *testing.T) {
			m := load(t, tc.file)
			x := referenceInput()
			const class = 2
			s := torch.NewScope()
			defer s.Close()
			gt, _ := m.ClassGradients(s, s.FromFloat32(x, refShape, m.Device()), tc.layer, class, torch.FP32)
			g := read(t, s, gt)
			per := len(g) / 2
			forward := func(x []float32) ([]float32, []float32) {
				s := torch.NewScope()
				defer s.Close()
				out, acts := m.Forward(s, s.FromFloat32(x, refShape, m.Device()), []string{tc.layer}, torch.NoGrad, torch.FP32)
				if err := s.Err(); err != nil {
					t.Fatal(err)
				}
				return read(t, s, out), read(t, s, acts[0])
			}
			r := rand.New(rand.NewPCG(9, 9))
			const eps = 1e-3
			for dir := 0; dir < 4; dir++ {
				xp, xm := append([]float32(nil), x...), append([]float32(nil), x...)
				for i := range x {
					v := float32(r.NormFloat64())
					xp[i] += eps * v
					xm[i] -= eps * v
				}
				lp, ap := forward(xp)
				lm, am := forward(xm)
				for n := 0; n < 2; n++ {
					fd := (float64(lp[n*3+class]) - float64(lm[n*3+class])) / (2 * eps)
					chain, scale := 0.0, 0.0
					for j := n * per; j < (n+1)*per; j++ {
						da := (float64(ap[j]) - float64(am[j])) / (2 * eps)
						chain += float64(g[j]) * da
						scale += math.Abs(float64(g[j]) * da)
					}
					if math.Abs(chain-fd) > 2e-3*(1+scale) {
						t.Errorf("direction %d image %d: ∇_a h · Δa = %g, finite difference of the logit %g", dir, n, chain, fd)
					}
				}
			}
		})
	}
}

// A model whose output is not [N, classes] (here a feature map) is refused
// with the file and the shape named, both where a run first learns the
// number of classes and where it takes class gradients.
func TestModelWhoseOutputIsNotNByClassesIsRefused(t *testing.T) {
	m := load(t, "map_output.pt")
	_, err := m.Prepare([]string{"feat"})
	if err == nil {
		t.Fatal("Prepare of a model with a [N,4,16,16] output: no error")
	}
	for _, want := range []string{"map_output.pt", "[N, classes]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Classes error %q does not say %q", err, want)
		}
	}
	s := torch.NewScope()
	defer s.Close()
	m.ClassGradients(s, s.FromFloat32(referenceInput(), refShape, m.Device()), "feat", 0, torch.FP32)
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "[N, classes]") {
		t.Errorf("ClassGradients of a feature-map model: err = %v", err)
	}
}
