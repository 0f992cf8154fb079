package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
)

// planCases are the models whose passes must run as pruned graphs: the demo
// (conv/batch-norm blocks, which freezing folds), a scripted model with
// control flow and one class type for three instances (gate is called
// inside an if), and a model whose parameters are frozen.
var planCases = []struct {
	file   string
	shape  []int64
	layers [][]string
}{
	{filepath.Join("..", "..", "testdata", "demo", "model.pt"), []int64{3, 3, 64, 64},
		[][]string{{"block2"}, {"block3", "block1.conv"}, {"block2.bn"}}},
	{filepath.Join(modelsDir, "tiny_scripted.pt"), []int64{2, 3, 16, 16},
		[][]string{{"gate"}, {"blocks.1", "gate", "blocks.0.relu"}, {"stem.1"}}},
	{filepath.Join(modelsDir, "frozen.pt"), []int64{2, 3, 16, 16},
		[][]string{{"features.relu2"}, {"features.conv1", "pool"}}},
	{filepath.Join(modelsDir, "tiny_traced.pt"), []int64{2, 3, 16, 16},
		[][]string{{"block2.inner.1"}, {"block2", "features.0"}}},
}

func loadFile(t *testing.T, file string) *Model {
	t.Helper()
	m, err := Load(file, testDevice(), Input{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func randomInput(shape []int64, seed uint64) []float32 {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	r := rand.New(rand.NewPCG(seed, 7))
	x := make([]float32, n)
	for i := range x {
		x[i] = r.Float32()*2 - 1
	}
	return x
}

// closeTo fails unless got and want agree within a tolerance relative to
// want's largest magnitude (freezing folds batch norm into the convolution,
// which reorders float arithmetic).
func closeTo(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	scale := 0.0
	for _, v := range want {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	tol := 1e-4*scale + 1e-6
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > tol || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s: value %d is %g, the full pass gives %g (tolerance %g)", what, i, got[i], want[i], tol)
		}
	}
}

// The activation pass runs its own pruned, frozen graph and gives the full
// pass's values, for every layer set; channels_last input changes nothing.
func TestActivationGraphMatchesTheFullPass(t *testing.T) {
	for _, c := range planCases {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			m := loadFile(t, c.file)
			for i, paths := range c.layers {
				plan, err := m.Plan(torch.ActivationPass, paths)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(plan, "pruned graph") {
					t.Fatalf("%v: %s; want a pruned graph", paths, plan)
				}
				for _, cl := range []bool{false, true} {
					m.SetChannelsLast(cl)
					s := torch.NewScope()
					x := s.FromFloat32(randomInput(c.shape, uint64(i)), c.shape, m.Device())
					_, full := m.Forward(s, x, paths, torch.NoGrad, torch.FP32)
					pruned := m.Capture(s, x, paths, torch.Inference, torch.FP32)
					for k, p := range paths {
						closeTo(t, fmt.Sprintf("%s with %v, channels_last %v", p, paths, cl), read(t, s, pruned[k]), read(t, s, full[k]))
					}
					s.Close()
				}
				m.SetChannelsLast(false)
			}
		})
	}
}

// Class gradients come from a forward pass whose activation is a leaf; they
// equal the gradient of the full pass with the input requiring grad.
func TestLeafGradientsMatchTheFullPass(t *testing.T) {
	for _, c := range planCases {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			m := loadFile(t, c.file)
			layer := c.layers[0][0]
			plan, err := m.Plan(torch.LeafPass, []string{layer})
			if err != nil {
				t.Fatal(err)
			}
			underIf := strings.HasSuffix(c.file, "tiny_scripted.pt") // gate runs inside an if
			if !underIf && !strings.HasPrefix(plan, "pruned graph") {
				t.Fatalf("%s: %s; want a graph of its own", layer, plan)
			}
			s := torch.NewScope()
			defer s.Close()
			x := s.FromFloat32(randomInput(c.shape, 3), c.shape, m.Device())
			g, logits := m.ClassGradients(s, x, layer, 1, torch.FP32)
			out, acts := m.Forward(s, x, []string{layer}, torch.Grad, torch.FP32)
			want := s.Grad([]*torch.Tensor{s.Sum(s.Select(out, 1, 1))}, nil, acts, false, false)
			closeTo(t, layer+" gradient", read(t, s, g), read(t, s, want[0]))
			closeTo(t, "logits", read(t, s, logits), read(t, s, s.Detach(out)))
		})
	}
}

// A capture in grad mode is differentiable with respect to the input and
// gives the full pass's input gradient (what an attack step needs).
func TestInputGradCaptureMatchesTheFullPass(t *testing.T) {
	for _, c := range planCases {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			m := loadFile(t, c.file)
			layer := c.layers[0][0]
			plan, err := m.Plan(torch.InputGradPass, []string{layer})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(plan, "pruned graph") {
				t.Fatalf("%s: %s; want a pruned graph", layer, plan)
			}
			grad := func(capture bool) []float32 {
				s := torch.NewScope()
				defer s.Close()
				x := s.FromFloat32(randomInput(c.shape, 5), c.shape, m.Device())
				s.Fail(x.SetRequiresGrad(true))
				var act *torch.Tensor
				if capture {
					act = m.Capture(s, x, []string{layer}, torch.Grad, torch.FP32)[0]
				} else {
					_, acts := m.Forward(s, x, []string{layer}, torch.Grad, torch.FP32)
					act = acts[0]
				}
				loss := s.Sum(s.Mul(act, act))
				g := s.Grad([]*torch.Tensor{loss}, nil, []*torch.Tensor{x}, false, false)
				return read(t, s, g[0])
			}
			closeTo(t, layer+" input gradient", grad(true), grad(false))
		})
	}
}
