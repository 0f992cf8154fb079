package facets

import (
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cache"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/model"
)

var demoDir = filepath.Join("..", "..", "testdata", "demo")

// Classes of the demo model, in output order (testdata/demo/labels.txt).
const (
	zebra     = 0
	dalmatian = 1
)

var demoInput = model.Input{Size: [2]int{64, 64}, Mean: [3]float64{0.5, 0.5, 0.5}, Std: [3]float64{0.25, 0.25, 0.25}}

func demoModel(t testing.TB) *model.Model {
	t.Helper()
	m, err := model.Load(filepath.Join(demoDir, "model.pt"), testDevice(), demoInput)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// demoDirection fits the facet direction of a demo concept set at layer
// against a few random sets, as the stage does.
func demoDirection(t testing.TB, m *model.Model, concept, layer string) Direction {
	t.Helper()
	log := logrus.New()
	ex := &activations.Extractor{Model: m, ModelKey: "demo", Cache: cache.Cache{Dir: t.TempDir(), Log: log},
		BatchSize: 32, Log: log}
	acts := func(set string) *activations.Activations {
		files, err := images.ListSet(filepath.Join(demoDir, "data"), set, false, log)
		if err != nil {
			t.Fatal(err)
		}
		a, err := ex.Extract(activations.Set{Name: set, Files: files, Hash: set}, []string{layer})
		if err != nil {
			t.Fatal(err)
		}
		return a[layer]
	}
	upload := func(a *activations.Activations) *cav.Examples {
		x, err := cav.Upload(m.Device(), a)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	c := acts(concept)
	ce := upload(c)
	defer ce.Close()
	var cavs []*cav.CAV
	for _, r := range []string{"random500_0", "random500_1", "random500_2"} {
		re := upload(acts(r))
		m, err := cav.Settings{Classifier: "sgd-hinge", Alpha: 0.01, Epochs: 50, TestFraction: 0.33}.Method()
		if err != nil {
			t.Fatal(err)
		}
		v, err := cav.Fit(ce, re, m, cav.Seed(0, concept, r, layer))
		re.Close()
		if err != nil {
			t.Fatal(err)
		}
		cavs = append(cavs, v)
	}
	d, err := MeanDirection(layer, c.Shape, cavs)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
