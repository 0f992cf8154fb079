package config

import (
	"path/filepath"
	"reflect"
	"testing"
)

func TestDefault(t *testing.T) {
	c := Default()
	a := DefaultAttack()
	f := DefaultFacet()
	tests := []struct {
		name      string
		got, want any
	}{
		{"seed", c.Seed, int64(0)},
		{"device", c.Device, "auto"},
		{"precision", c.Precision, "fp32"},
		{"cache_dir", c.CacheDir, ".cavforge-cache"},
		{"model.path", c.Model.Path, ""},
		{"model.labels", c.Model.Labels, ""},
		{"model.input.size", c.Model.Input.Size, [2]int{224, 224}},
		{"model.input.resize", c.Model.Input.Resize, 0},
		{"model.input.crop", c.Model.Input.Crop, "none"},
		{"model.input.mean", c.Model.Input.Mean, [3]float64{0.485, 0.456, 0.406}},
		{"model.input.std", c.Model.Input.Std, [3]float64{0.229, 0.224, 0.225}},
		{"model.input.pixel_range", c.Model.Input.PixelRange, [2]float64{0, 1}},
		{"data.root", c.Data.Root, "data"},
		{"data.max_images", c.Data.MaxImages, 100},
		{"data.batch_size", c.Data.BatchSize, 64},
		{"data.skip_bad_images", c.Data.SkipBadImages, false},
		{"tcav.targets", c.TCAV.Targets, []string(nil)},
		{"tcav.class_sets", c.TCAV.ClassSets, map[string]string{}},
		{"tcav.random.prefix", c.TCAV.Random.Prefix, "random500_"},
		{"tcav.random.count", c.TCAV.Random.Count, 10},
		{"tcav.random sets", c.TCAV.Random.Sets, []string{
			"random500_0", "random500_1", "random500_2", "random500_3", "random500_4",
			"random500_5", "random500_6", "random500_7", "random500_8", "random500_9"}},
		{"tcav.cav.classifier", c.TCAV.CAV.Classifier, "sgd-hinge"},
		{"tcav.cav.alpha", c.TCAV.CAV.Alpha, 0.01},
		{"tcav.cav.epochs", c.TCAV.CAV.Epochs, 50},
		{"tcav.cav.test_fraction", c.TCAV.CAV.TestFraction, 0.33},
		{"tcav.cav.lr", c.TCAV.CAV.LR, 0.0},
		{"tcav.significance.alpha", c.TCAV.Significance.Alpha, 0.05},
		{"tcav.significance.test", c.TCAV.Significance.Test, "calibrated"},
		{"tcav.significance.negatives", c.TCAV.Significance.Negatives, 20},
		{"tcav.significance.bonferroni", c.TCAV.Significance.Bonferroni, true},
		{"attack", c.Attack, []Attack(nil)},
		{"facets", c.Facets, []Facet(nil)},
		{"attack.goal", a.Goal, "suppress"},
		{"attack.objective", a.Objective, "tcav-surrogate"},
		{"attack.toward", a.Toward, "random"},
		{"attack.norm", a.Norm, "linf"},
		{"attack.eps", a.Eps, []float64{0.0078, 0.0157, 0.0314}},
		{"attack.step", a.Step, 0.002},
		{"attack.steps", a.Steps, 200},
		{"attack.random_start", a.RandomStart, true},
		{"attack.momentum", a.Momentum, 0.0},
		{"attack.tau", a.Tau, 10.0},
		{"facet.strength", f.Strength, [2]float64{0.1, 5.0}},
		{"facet.batch", f.Batch, 4},
		{"facet.size", f.Size, 224},
		{"facet.steps", f.Steps, 512},
		{"facet.lr", f.LR, 0.05},
		{"facet.compare_attack", f.CompareAttack, false},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("default %s = %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}
}

// A config that names only what is required gets every other field from
// Default, with paths resolved and derived defaults filled.
func TestLoadFillsDefaults(t *testing.T) {
	path := write(t, "zebra-stripes.yaml", base)
	dir := filepath.Dir(path)
	c := mustLoad(t, path)

	want := Default()
	want.Name = "zebra-stripes"
	want.CacheDir = filepath.Join(dir, ".cavforge-cache")
	want.Model.Path = filepath.Join(dir, "m.pt")
	want.Data.Root = filepath.Join(dir, "data")
	want.TCAV.Targets = []string{"zebra"}
	want.TCAV.ClassSets = map[string]string{"zebra": "zebra"}
	want.TCAV.Concepts = []string{"striped", "dotted"}
	want.TCAV.Layers = []string{"l1"}
	a := DefaultAttack()
	a.Concept, a.Target, a.Layer = "striped", "zebra", "l1"
	a.JudgeRandom = 5 // half of 10 random sets
	want.Attack = []Attack{a}
	f := DefaultFacet()
	f.Target = FacetTarget{Class: "zebra"}
	f.Facet = "striped"
	f.FacetLayers = []string{"l0"}
	want.Facets = []Facet{f}
	want.dir = dir

	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load filled\n%+v\nwant\n%+v", c, want)
	}
}

func TestDerivedDefaults(t *testing.T) {
	tests := []struct {
		name      string
		overrides []string
		check     func(c *Config) (got, want any)
	}{
		{"judge_random is half of 10", nil,
			func(c *Config) (any, any) { return c.Attack[0].JudgeRandom, 5 }},
		{"judge_random rounds up", []string{"tcav.random.count=7"},
			func(c *Config) (any, any) { return c.Attack[0].JudgeRandom, 4 }},
		{"judge_random at least 2", []string{"tcav.random.count=3"},
			func(c *Config) (any, any) { return c.Attack[0].JudgeRandom, 2 }},
		{"explicit judge_random kept", []string{"attack.0.judge_random=3"},
			func(c *Config) (any, any) { return c.Attack[0].JudgeRandom, 3 }},
		{"class set of an attack target", []string{"attack.0.target=tiger"},
			func(c *Config) (any, any) {
				return c.TCAV.ClassSets, map[string]string{"zebra": "zebra", "tiger": "tiger"}
			}},
		{"explicit class set kept", []string{"tcav.class_sets={zebra: zebras}"},
			func(c *Config) (any, any) { return c.TCAV.ClassSets, map[string]string{"zebra": "zebras"} }},
		{"name from override", []string{"name=other"},
			func(c *Config) (any, any) { return c.Name, "other" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, write(t, "x.yaml", base), tt.overrides...)
			if got, want := tt.check(c); !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v, want %#v", got, want)
			}
		})
	}
}
