package activations

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/internal/testdemo"
	"github.com/cavforge/cavforge/pipeline/cache"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/model"
)

func demoSet(t *testing.T, name string) Set {
	t.Helper()
	files, err := images.ListSet(testdemo.Path("data"), name, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	files = files[:min(len(files), 20)]
	h, err := images.ListHash(testdemo.Path("data"), files)
	if err != nil {
		t.Fatal(err)
	}
	return Set{Name: name, Files: files, Hash: h}
}

func demoExtractor(t *testing.T, auto bool, batch int) *Extractor {
	t.Helper()
	in := model.Input{Size: [2]int{64, 64}, Resize: 64, Crop: "center", Mean: [3]float64{0.5, 0.5, 0.5}, Std: [3]float64{0.25, 0.25, 0.25}}
	m, err := model.Load(testdemo.Path("model.pt"), "cpu", in)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return &Extractor{Model: m, ModelKey: "demo", Cache: cache.Cache{Dir: t.TempDir()}, BatchSize: batch, AutoBatch: auto, Cast: torch.FP32}
}

// Without a configured batch size the activation pass measures its own,
// records the choice, and gives the values of a fixed-batch pass; with one
// it keeps it.
func TestProbedBatchKeepsTheValuesAndIsRecorded(t *testing.T) {
	set := demoSet(t, "striped")
	layers := []string{"block2", "block3"}
	auto := demoExtractor(t, true, 64)
	got, err := auto.Extract(set, layers)
	if err != nil {
		t.Fatal(err)
	}
	c := auto.Choice
	if c == nil || c.Source != "probe" || !slices.Contains(model.ProbeCandidates("cpu"), c.BatchSize) || len(c.Timings) < 3 {
		t.Fatalf("choice %+v: want a probed batch size among the candidates, with its timings", c)
	}
	if !strings.HasPrefix(c.Plan, "pruned graph") {
		t.Errorf("plan %q: want the pruned graph", c.Plan)
	}
	fixed := demoExtractor(t, false, 7)
	want, err := fixed.Extract(set, layers)
	if err != nil {
		t.Fatal(err)
	}
	if fixed.Choice == nil || fixed.Choice.BatchSize != 7 || fixed.Choice.Source != "config" {
		t.Fatalf("configured batch 7: choice %+v", fixed.Choice)
	}
	for _, l := range layers {
		a, b := got[l], want[l]
		if a.N != len(set.Files) || b.N != a.N || len(a.Data) != len(b.Data) {
			t.Fatalf("%s: %d and %d examples, want %d", l, a.N, b.N, len(set.Files))
		}
		for i := range a.Data {
			if d := math.Abs(float64(a.Data[i] - b.Data[i])); d > 1e-4*(1+math.Abs(float64(b.Data[i]))) {
				t.Fatalf("%s value %d: %g with batch %d, %g with batch 7", l, i, a.Data[i], c.BatchSize, b.Data[i])
			}
		}
	}
}

// A model whose activations are NaN fails with the set, the layer and the
// first image named, and caches nothing.
func TestNaNActivationsFailNamingSetLayerAndImage(t *testing.T) {
	m, err := model.Load(filepath.Join("..", "..", "testdata", "models", "nan_activation.pt"), "cpu",
		model.Input{Size: [2]int{16, 16}, Mean: [3]float64{0.5, 0.5, 0.5}, Std: [3]float64{0.25, 0.25, 0.25}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dir := t.TempDir()
	e := &Extractor{Model: m, ModelKey: "nan", Cache: cache.Cache{Dir: dir}, BatchSize: 4, Cast: torch.FP32}
	set := demoSet(t, "striped")
	_, err = e.Extract(set, []string{"root"})
	if err == nil {
		t.Fatal("NaN activations: no error")
	}
	for _, want := range []string{"NaN or Inf", "striped", "root", filepath.Base(set.Files[0])} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if e.Cache.Has(e.key("activations", set, "root", "")) {
		t.Error("NaN activations were cached")
	}
}

// Class gradients are cached per class: the gradient of another logit from
// the same cache is that logit's, not the first one's.
func TestClassGradientsOfTwoClassesAreCachedApart(t *testing.T) {
	set := demoSet(t, "striped")
	e := demoExtractor(t, false, 8)
	g0, err := e.ClassGradients(set, "block3", 0)
	if err != nil {
		t.Fatal(err)
	}
	g1, err := e.ClassGradients(set, "block3", 1)
	if err != nil {
		t.Fatal(err)
	}
	fresh := demoExtractor(t, false, 8) // its own empty cache
	want, err := fresh.ClassGradients(set, "block3", 1)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(g0.Data, g1.Data) {
		t.Fatal("the gradients of logits 0 and 1 are identical: one came from the other's cache entry")
	}
	for i := range want.Data {
		if d := math.Abs(float64(g1.Data[i] - want.Data[i])); d > 1e-5*(1+math.Abs(float64(want.Data[i]))) {
			t.Fatalf("logit 1 gradient %d: %g after logit 0's was cached, %g computed alone", i, g1.Data[i], want.Data[i])
		}
	}
	// And a second extractor on the same cache reads both back as they were.
	again := &Extractor{Model: e.Model, ModelKey: e.ModelKey, Cache: e.Cache, BatchSize: 8, Cast: torch.FP32}
	for class, g := range []*Activations{g0, g1} {
		got, err := again.ClassGradients(set, "block3", class)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Data, g.Data) {
			t.Errorf("logit %d: the cached gradient differs from the computed one", class)
		}
	}
}
