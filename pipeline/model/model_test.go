package model

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
)

var modelsDir = filepath.Join("..", "..", "testdata", "models")

type expectation struct {
	File            string             `json:"file"`
	Modules         map[string][]int64 `json:"modules"`
	ReferenceLogits [][]float64        `json:"reference_logits"`
}

func expected(t *testing.T) map[string]json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(modelsDir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// referenceInput is x[b,c,h,w] = ((7b + 5c + 3h + w) mod 17)/8 − 1, the input
// testdata/models/make_models.py recorded its reference logits for.
func referenceInput() []float32 {
	x := make([]float32, 2*3*16*16)
	i := 0
	for b := 0; b < 2; b++ {
		for c := 0; c < 3; c++ {
			for h := 0; h < 16; h++ {
				for w := 0; w < 16; w++ {
					x[i] = float32((b*7+c*5+h*3+w)%17)/8 - 1
					i++
				}
			}
		}
	}
	return x
}

var refShape = []int64{2, 3, 16, 16}

func load(t *testing.T, file string) *Model {
	t.Helper()
	m, err := Load(filepath.Join(modelsDir, file), testDevice(), Input{Size: [2]int{16, 16}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func read(t *testing.T, s *torch.Scope, x *torch.Tensor) []float32 {
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

// Every model: `layers` lists exactly the paths and shapes PyTorch recorded
// (ModuleList containers, which have no forward, excepted), and the logits
// match PyTorch's for the reference input — traced, scripted with control
// flow and shared class types, and frozen.
func TestLayersAndLogitsMatchPyTorch(t *testing.T) {
	for name, raw := range expected(t) {
		if name == "reference_input" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			var want expectation
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			_, layers, err := Layers(filepath.Join(modelsDir, want.File), testDevice(), []int64{3, 16, 16})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]int64{}
			for _, l := range layers {
				got[l.Path] = l.Shape
			}
			for path, shape := range want.Modules {
				if shape == nil {
					if _, ok := got[path]; ok {
						t.Errorf("%s has no forward but is listed", path)
					}
					continue
				}
				if g, ok := got[path]; !ok || !equal(g, shape) {
					t.Errorf("%s: shape %v, want %v", path, g, shape)
				}
			}
			if len(got) != countNonNil(want.Modules) {
				t.Errorf("%d layers listed, want %d", len(got), countNonNil(want.Modules))
			}

			m := load(t, want.File)
			s := torch.NewScope()
			defer s.Close()
			out, _ := m.Forward(s, s.FromFloat32(referenceInput(), refShape, m.Device()), nil, torch.NoGrad, torch.FP32)
			logits := read(t, s, out)
			for b, row := range want.ReferenceLogits {
				for k, v := range row {
					if math.Abs(float64(logits[b*len(row)+k])-v) > 1e-5 {
						t.Fatalf("logit[%d][%d] = %g, PyTorch %g", b, k, logits[b*len(row)+k], v)
					}
				}
			}
		})
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func countNonNil(m map[string][]int64) int {
	n := 0
	for _, v := range m {
		if v != nil {
			n++
		}
	}
	return n
}

// planted.pt: feat = 1×1 conv copying the red channel to feature 0 and the
// blue one to feature 1; head = mean pool, then logit0 = 2·f0 + 0.5,
// logit1 = 3·f1 − 0.5. Everything follows by hand.
func TestPlantedCaptureAndGradientsByHand(t *testing.T) {
	m := load(t, "planted.pt")
	s := torch.NewScope()
	defer s.Close()
	x := referenceInput()
	out, acts := m.Forward(s, s.FromFloat32(x, refShape, m.Device()), []string{"feat"}, torch.Grad, torch.FP32)
	feat := read(t, s, acts[0])
	const hw = 16 * 16
	for b := 0; b < 2; b++ {
		red, blue := x[(b*3)*hw:(b*3+1)*hw], x[(b*3+2)*hw:(b*3+3)*hw]
		var mr, mb float64
		for i := 0; i < hw; i++ {
			if feat[(b*2)*hw+i] != red[i] || feat[(b*2+1)*hw+i] != blue[i] {
				t.Fatalf("feat of image %d at %d = (%g, %g), want red %g and blue %g", b, i, feat[(b*2)*hw+i], feat[(b*2+1)*hw+i], red[i], blue[i])
			}
			mr += float64(red[i]) / hw
			mb += float64(blue[i]) / hw
		}
		logits := read(t, s, out)
		if math.Abs(float64(logits[b*2])-(2*mr+0.5)) > 1e-5 || math.Abs(float64(logits[b*2+1])-(3*mb-0.5)) > 1e-5 {
			t.Fatalf("logits %v, want %g and %g", logits[b*2:b*2+2], 2*mr+0.5, 3*mb-0.5)
		}
	}
	// ∂logit0/∂feat = 2/256 on feature 0, 0 on feature 1; logit1 the other way with 3.
	for class, want := range [][2]float64{{2.0 / hw, 0}, {0, 3.0 / hw}} {
		g, _ := m.ClassGradients(s, s.FromFloat32(x, refShape, m.Device()), "feat", class, torch.FP32)
		grad := read(t, s, g)
		for i, v := range grad {
			f := (i / hw) % 2
			if math.Abs(float64(v)-want[f]) > 1e-7 {
				t.Fatalf("class %d: gradient %g at feature %d, want %g", class, v, f, want[f])
			}
		}
	}
}

// ∂logit/∂input by autograd against central differences of the forward
// pass, for a trainable and a frozen model.
func TestInputGradientsMatchFiniteDifferences(t *testing.T) {
	for _, file := range []string{"tiny_traced.pt", "frozen.pt", "tiny_scripted.pt"} {
		t.Run(file, func(t *testing.T) {
			m := load(t, file)
			x := referenceInput()[:3*16*16]
			shape := []int64{1, 3, 16, 16}
			logit := func(x []float32) float64 {
				s := torch.NewScope()
				defer s.Close()
				out, _ := m.Forward(s, s.FromFloat32(x, shape, m.Device()), nil, torch.NoGrad, torch.FP32)
				return float64(read(t, s, out)[1])
			}
			s := torch.NewScope()
			defer s.Close()
			in := s.FromFloat32(x, shape, m.Device())
			if err := in.SetRequiresGrad(true); err != nil {
				t.Fatal(err)
			}
			out, _ := m.Forward(s, in, nil, torch.Grad, torch.FP32)
			g := read(t, s, s.Grad([]*torch.Tensor{s.Select(out, 1, 1)}, nil, []*torch.Tensor{in}, false, false)[0])
			const h = 1e-2
			for _, i := range []int{0, 37, 300, 511, 700} {
				xp := append([]float32(nil), x...)
				xm := append([]float32(nil), x...)
				xp[i] += h
				xm[i] -= h
				fd := (logit(xp) - logit(xm)) / (2 * h)
				if math.Abs(fd-float64(g[i])) > 2e-3*(1+math.Abs(fd)) {
					t.Errorf("pixel %d: autograd %g, finite difference %g", i, g[i], fd)
				}
			}
		})
	}
}

// Frozen parameters: without a gradient-requiring input the captured
// activation would have no autograd history; cavforge makes one.
func TestFrozenModelHasLayerGradients(t *testing.T) {
	m := load(t, "frozen.pt")
	s := torch.NewScope()
	defer s.Close()
	g, _ := m.ClassGradients(s, s.FromFloat32(referenceInput(), refShape, m.Device()), "features.relu2", 2, torch.FP32)
	v := read(t, s, g)
	nonzero := 0
	for _, x := range v {
		if x != 0 {
			nonzero++
		}
	}
	if nonzero == 0 {
		t.Fatal("all gradients zero at a layer of a frozen model")
	}
}

// Nested paths, shared TorchScript types and capture sets that grow after
// the first pass (which reloads the module): the same layer gives the same
// values whatever else is captured with it.
func TestCaptureIsIndependentOfWhatElseIsCaptured(t *testing.T) {
	cases := map[string][][]string{
		"tiny_traced.pt":   {{"block2.inner.1"}, {"block2", "block2.inner.1", "features.0"}},
		"tiny_scripted.pt": {{"gate"}, {"blocks.1", "gate", "blocks.0.relu"}},
	}
	for file, sets := range cases {
		t.Run(file, func(t *testing.T) {
			m := load(t, file)
			var first []float32
			for _, paths := range sets {
				s := torch.NewScope()
				_, acts := m.Forward(s, s.FromFloat32(referenceInput(), refShape, m.Device()), paths, torch.Grad, torch.FP32)
				idx := map[string]int{}
				for i, p := range paths {
					idx[p] = i
				}
				v := read(t, s, acts[idx[sets[0][0]]])
				if first == nil {
					first = v
				} else {
					for i := range v {
						if v[i] != first[i] {
							t.Fatalf("%s differs when captured with %v", sets[0][0], paths)
						}
					}
				}
				if len(paths) > 1 && file == "tiny_traced.pt" {
					// block2 = Sequential(conv, inner): its output is inner's, which is inner.1's.
					a, b := read(t, s, acts[0]), read(t, s, acts[1])
					for i := range a {
						if a[i] != b[i] {
							t.Fatal("block2 and block2.inner.1 outputs differ")
						}
					}
				}
				if len(paths) > 1 && file == "tiny_scripted.pt" {
					// Three instances of one class type: each keeps its own output.
					a, b := read(t, s, acts[0]), read(t, s, acts[1])
					same := true
					for i := range a {
						same = same && a[i] == b[i]
					}
					if same {
						t.Fatal("blocks.1 and gate captured the same tensor")
					}
				}
				s.Close()
			}
		})
	}
}

func TestErrorsNameTheProblem(t *testing.T) {
	m := load(t, "tiny_traced.pt")
	err := m.CheckLayers([]string{"block2.inner.2"})
	if err == nil || !strings.Contains(err.Error(), "block2.inner.1") || !strings.Contains(err.Error(), `"block2.inner.2"`) {
		t.Errorf("bad path: %v; want the path and its nearest valid neighbours", err)
	}
	notModel := filepath.Join(t.TempDir(), "x.pt")
	os.WriteFile(notModel, []byte("not a zip"), 0o644)
	if _, err := Load(notModel, "cpu", Input{}); err == nil || !strings.Contains(err.Error(), "not a TorchScript model") {
		t.Errorf("bad file: %v", err)
	}
	if _, err := Load(filepath.Join(modelsDir, "nope.pt"), "cpu", Input{}); err == nil || !strings.Contains(err.Error(), "nope.pt") {
		t.Errorf("missing file: %v", err)
	}
	if _, _, err := Layers(filepath.Join(modelsDir, "tiny_traced.pt"), "cpu", []int64{1, 16, 16}); err == nil ||
		!strings.Contains(err.Error(), "rejects input 1,16,16") || strings.Contains(err.Error(), "\n") {
		t.Errorf("wrong input shape: %v", err)
	}
}

// Capture stops the pass after the last wanted layer and still returns
// exactly what a full forward pass captures, for nested and shared-type
// layers, in any order of request; a layer that runs later (the head) is
// never reached, so a head that would fail does not matter.
func TestCaptureStopsEarlyWithTheSameValues(t *testing.T) {
	cases := map[string][][]string{
		"tiny_traced.pt":   {{"block1.conv"}, {"block2.inner.0", "features.1"}, {"block2", "block2.inner.1"}},
		"tiny_scripted.pt": {{"blocks.0"}, {"gate", "blocks.1"}, {"stem.1", "blocks.0.relu"}},
	}
	for file, sets := range cases {
		t.Run(file, func(t *testing.T) {
			m := load(t, file)
			for _, paths := range sets {
				s := torch.NewScope()
				x := s.FromFloat32(referenceInput(), refShape, m.Device())
				_, full := m.Forward(s, x, paths, torch.NoGrad, torch.FP32)
				pruned := m.Capture(s, x, paths, torch.Inference, torch.FP32)
				for i := range paths {
					a, b := read(t, s, full[i]), read(t, s, pruned[i])
					for j := range a {
						if a[j] != b[j] {
							t.Fatalf("%s captured with %v: pruned pass differs at %d", paths[i], paths, j)
						}
					}
				}
				s.Close()
			}
		})
	}
}

// tiny_traced's head is a Linear over 8·4·4 features, so an 8×8 input fails
// there; capturing block2 from such an input works only because the pass
// stops before the head.
func TestCaptureNeverRunsTheHead(t *testing.T) {
	m := load(t, "tiny_traced.pt")
	s := torch.NewScope()
	defer s.Close()
	x := s.FromFloat32(make([]float32, 3*8*8), []int64{1, 3, 8, 8}, m.Device())
	acts := m.Capture(s, x, []string{"block2"}, torch.Inference, torch.FP32)
	if err := s.Err(); err != nil {
		t.Fatalf("capture ran past block2: %v", err)
	}
	if shape := acts[0].Shape(); len(shape) != 4 || shape[1] != 8 || shape[2] != 2 {
		t.Fatalf("block2 shape %v, want [1 8 2 2]", shape)
	}
	s2 := torch.NewScope()
	defer s2.Close()
	m.Forward(s2, s2.FromFloat32(make([]float32, 3*8*8), []int64{1, 3, 8, 8}, m.Device()), []string{"block2"}, torch.NoGrad, torch.FP32)
	if s2.Err() == nil {
		t.Fatal("the full pass accepted an input the head rejects")
	}
}
