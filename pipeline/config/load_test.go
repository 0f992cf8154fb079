package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestOverrides(t *testing.T) {
	tests := []struct {
		name      string
		overrides []string
		check     func(c *Config) (got, want any)
	}{
		{"scalar int", []string{"seed=3"},
			func(c *Config) (any, any) { return c.Seed, int64(3) }},
		{"scalar string with colon", []string{"device=cuda:1"},
			func(c *Config) (any, any) { return c.Device, "cuda:1" }},
		{"bool", []string{"data.skip_bad_images=true"},
			func(c *Config) (any, any) { return c.Data.SkipBadImages, true }},
		{"list", []string{"tcav.layers=[a,b]"},
			func(c *Config) (any, any) { return c.TCAV.Layers, []string{"a", "b"} }},
		{"scalar as list", []string{"tcav.layers=conv1"},
			func(c *Config) (any, any) { return c.TCAV.Layers, []string{"conv1"} }},
		{"list element", []string{"tcav.layers.0=conv9"},
			func(c *Config) (any, any) { return c.TCAV.Layers, []string{"conv9"} }},
		{"list index then key", []string{"attack.0.eps=[0.01,0.02]"},
			func(c *Config) (any, any) { return c.Attack[0].Eps, []float64{0.01, 0.02} }},
		{"eps scalar", []string{"attack.0.eps=0.05"},
			func(c *Config) (any, any) { return c.Attack[0].Eps, []float64{0.05} }},
		{"key missing in file", []string{"attack.0.goal=promote"},
			func(c *Config) (any, any) { return c.Attack[0].Goal, "promote" }},
		{"mapping missing in file", []string{"tcav.cav.alpha=0.1"},
			func(c *Config) (any, any) { return c.TCAV.CAV, CAV{"sgd-hinge", 0.1, 50, 0.33, 0, "logistic"} }},
		{"element of a default list", []string{"model.input.size.0=300", "model.input.resize=320", "model.input.crop=center"},
			func(c *Config) (any, any) { return c.Model.Input.Size, [2]int{300, 224} }},
		{"element of a default attack list", []string{"attack.0.eps.1=0.02"},
			func(c *Config) (any, any) { return c.Attack[0].Eps, []float64{0.0078, 0.02, 0.0314} }},
		{"random count", []string{"tcav.random.count=4"},
			func(c *Config) (any, any) {
				return c.TCAV.Random.Sets, []string{"random500_0", "random500_1", "random500_2", "random500_3"}
			}},
		{"random as list", []string{"tcav.random=[r1,r2,r3]"},
			func(c *Config) (any, any) { return c.TCAV.Random, RandomSets{Sets: []string{"r1", "r2", "r3"}} }},
		{"random from a pool", []string{"tcav.random.from=pool", "tcav.random.count=3"},
			func(c *Config) (any, any) { return c.TCAV.Random.Sets, []string{"pool[0]", "pool[1]", "pool[2]"} }},
		{"map entry", []string{"tcav.class_sets.zebra=zebras"},
			func(c *Config) (any, any) { return c.TCAV.ClassSets["zebra"], "zebras" }},
		{"numeric map key", []string{"tcav.targets=[340]", "tcav.class_sets.340=zebras"},
			func(c *Config) (any, any) {
				return c.TCAV.ClassSets, map[string]string{"340": "zebras", "zebra": "zebra"}
			}},
		{"later wins", []string{"seed=1", "seed=2"},
			func(c *Config) (any, any) { return c.Seed, int64(2) }},
		{"whole list then element", []string{"attack=[{concept: dotted, target: zebra, layer: l1}]", "attack.0.norm=l2"},
			func(c *Config) (any, any) {
				return [2]string{c.Attack[0].Concept, c.Attack[0].Norm}, [2]string{"dotted", "l2"}
			}},
		{"empty value is empty string", []string{"model.labels="},
			func(c *Config) (any, any) { return c.Model.Labels, "" }},
		{"facet target to channel", []string{"facets.0.target={layer: l3, channel: 7}"},
			func(c *Config) (any, any) { return c.Facets[0].Target, FacetTarget{Layer: "l3", Channel: 7} }},
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

func TestOverrideErrors(t *testing.T) {
	listRandom := strings.Replace(base, "  layers: [l1]\n", "  layers: [l1]\n  random: [r1, r2, r3]\n", 1)
	tests := []struct {
		name     string
		file     string
		override string
		want     []string
	}{
		{"unknown key with suggestion", base, "tcav.cav.alfa=1",
			[]string{`--set tcav.cav.alfa=1: unknown key "tcav.cav.alfa" (did you mean "tcav.cav.alpha"?)`}},
		{"unknown top-level key", base, "sede=1", []string{`unknown key "sede" (did you mean "seed"?)`}},
		{"unknown key far from any", base, "tcav.zzzzzz=1", []string{`unknown key "tcav.zzzzzz"`}},
		{"no equals sign", base, "seed", []string{`--set seed: want key.path=value`}},
		{"index out of range", base, "attack.5.eps=0.1",
			[]string{`--set attack.5.eps=0.1`, `attack.5: index 5 is out of range: attack has 1 elements`}},
		{"index into missing list", base, "tcav.layers.3=x", []string{`tcav.layers.3: index 3 is out of range`}},
		{"not an index", base, "attack.first.eps=0.1", []string{`attack is a list: want a numeric index, got "first"`}},
		{"fixed array out of range", base, "model.input.size.2=5", []string{`model.input.size has 2 elements`}},
		{"key inside a scalar", base, "seed.x=1", []string{`seed is a single value: it has no key "x"`}},
		{"empty segment", base, "tcav..layers=a", []string{`empty segment`}},
		{"type error names the override", base, "seed=abc", []string{`--set seed=abc: seed: want an integer, got "abc"`}},
		{"type error in list", base, "attack.0.eps=[0.1, big]", []string{`--set attack.0.eps=[0.1, big]: attack.0.eps.1: want a number, got "big"`}},
		{"value not YAML", base, "tcav.layers=[a,", []string{`--set tcav.layers=[a,: tcav.layers: value is not YAML`}},
		{"mapping key into list form", listRandom, "tcav.random.count=4", []string{`tcav.random.count: tcav.random is a list here`}},
		{"index into mapping form", base, "tcav.random.0=r", []string{`tcav.random.0: tcav.random is a mapping here`}},
		{"key inside a class target", base, "facets.0.target.channel=3", []string{`facets.0.target is "zebra" here, not a mapping or list`}},
		{"validation error names the override", base, "attack.0.eps=2", []string{`--set attack.0.eps=2: attack.0.eps: 2 is out of range`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(write(t, "x.yaml", tt.file), []string{tt.override})
			wantErr(t, err, tt.want...)
		})
	}
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string // after "<file>:"
	}{
		{"top level", `
model: {path: m.pt}
sed: 3
`, `2: unknown key "sed" (did you mean "seed"?)`},
		{"nested", `
model: {path: m.pt}
tcav:
  targets: [zebra]
  cav:
    classifier: logistic
    alfa: 0.1
`, `6: unknown key "tcav.cav.alfa" (did you mean "tcav.cav.alpha"?)`},
		{"in a list entry", `
model: {path: m.pt}
attack:
  - concept: striped
    target: zebra
  - concept: dotted
    stps: 10
`, `6: unknown key "attack.1.stps" (did you mean "attack.1.steps"?)`},
		{"in random form", `
tcav:
  random: {prefix: r, cnt: 3}
`, `2: unknown key "tcav.random.cnt" (did you mean "tcav.random.count"?)`},
		{"in facet target", `
facets:
  - target: {layer: l, chanel: 3}
`, `2: unknown key "facets.0.target.chanel" (did you mean "facets.0.target.channel"?)`},
		{"camel case", `
data:
  batchSize: 3
`, `2: unknown key "data.batchSize" (did you mean "data.batch_size"?)`},
		{"nothing close", `
model:
  weights_file: m.pt
`, `2: unknown key "model.weights_file"`},
		{"duplicate", `
seed: 1
name: a
seed: 2
`, `3: duplicate key "seed" (first at line 1)`},
		{"duplicate map key", `
tcav:
  class_sets:
    zebra: a
    zebra: b
`, `4: duplicate key "tcav.class_sets.zebra" (first at line 3)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, "x.yaml", tt.text)
			_, err := Load(path, nil)
			wantErr(t, err, path+":"+tt.want)
			if err != nil && !strings.Contains(tt.want, "did you mean") && strings.Contains(err.Error(), "did you mean") {
				t.Errorf("unexpected suggestion in %q", err)
			}
			var e *Error
			if !errors.As(err, &e) || e.Key == "" {
				t.Errorf("error %v is not an *Error with a key", err)
			}
		})
	}
}

func TestTypeErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string // after "<file>:"
	}{
		{"int", "seed: abc\n", `1: seed: want an integer, got "abc"`},
		{"fractional int", "attack:\n  - steps: 3.5\n", `2: attack.0.steps: want an integer, got "3.5"`},
		{"quoted number", "tcav:\n  cav: {alpha: \"0.1\"}\n", `2: tcav.cav.alpha: want a number, got "0.1"`},
		{"bool", "tcav:\n  significance:\n    bonferroni: maybe\n", `3: tcav.significance.bonferroni: want true or false, got "maybe"`},
		{"array length", "model:\n  input:\n    size: [224]\n", `3: model.input.size: want a list of 2 integers, got a list`},
		{"mapping for scalar", "name: {a: 1}\n", `1: name: want a string, got a mapping`},
		{"list for mapping", "model: [a]\n", `1: model: want a mapping, got a list`},
		{"mapping for list", "attack: {concept: x}\n", `1: attack: want a list of mappings, got a mapping`},
		{"random scalar", "tcav:\n  random: 5\n", `2: tcav.random: want {prefix: P, count: N} or a list of set names, got "5"`},
		{"facet target list", "facets:\n  - target: [a]\n", `2: facets.0.target: want a class name or index, or {layer: L, channel: C}, got a list`},
		{"list element", "attack:\n  - eps:\n    - 0.1\n    - x\n", `4: attack.0.eps.1: want a number, got "x"`},
		{"top level list", "- a\n", `1: want a mapping of config keys at the top level`},
		{"syntax", "seed: 1\nmodel: {path: [\n", `2: did not find expected node content`},
		{"two documents", "seed: 1\n---\nseed: 2\n", `2: a config is one YAML document`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, "x.yaml", tt.text)
			_, err := Load(path, nil)
			wantErr(t, err, path+":"+tt.want)
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"), nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want a not-exist error", err)
	}
}

func TestRelativePaths(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "configs", "exp")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(root, "elsewhere", "data")
	text := strings.Replace(base, "path: m.pt", "path: models/m.pt\n  labels: ../labels.txt", 1) +
		"data:\n  root: " + abs + "\n"
	if err := os.WriteFile(filepath.Join(sub, "x.yaml"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(root)
	c := mustLoad(t, filepath.Join("configs", "exp", "x.yaml"), "cache_dir=cache")
	tests := []struct{ key, got, want string }{
		{"model.path", c.Model.Path, filepath.Join(sub, "models", "m.pt")},
		{"model.labels", c.Model.Labels, filepath.Join(root, "configs", "labels.txt")},
		{"data.root", c.Data.Root, abs},
		{"cache_dir", c.CacheDir, filepath.Join(sub, "cache")},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.key, tt.got, tt.want)
		}
	}

	// Without labels in the file the default stays empty, not the directory.
	c = mustLoad(t, filepath.Join("configs", "exp", "x.yaml"), "model.labels=")
	if c.Model.Labels != "" {
		t.Errorf("empty model.labels resolved to %q", c.Model.Labels)
	}
}

func TestEpsForms(t *testing.T) {
	tests := []struct {
		name string
		eps  string // YAML after "eps:", or "" to leave it out
		want []float64
	}{
		{"scalar", " 0.01", []float64{0.01}},
		{"list of one", " [0.01]", []float64{0.01}},
		{"flow list", " [0.0078, 0.0314]", []float64{0.0078, 0.0314}},
		{"block list", "\n      - 0.1\n      - 0.2", []float64{0.1, 0.2}},
		{"integer fraction", " 1e-2", []float64{0.01}},
		{"left out", "", []float64{0.0078, 0.0157, 0.0314}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := base
			if tt.eps != "" {
				text = strings.Replace(base, "    layer: l1\n", "    layer: l1\n    eps:"+tt.eps+"\n", 1)
			}
			c := mustLoad(t, write(t, "x.yaml", text))
			if !reflect.DeepEqual(c.Attack[0].Eps, tt.want) {
				t.Errorf("eps = %v, want %v", c.Attack[0].Eps, tt.want)
			}
		})
	}
}

func TestRandomForms(t *testing.T) {
	tests := []struct {
		name   string
		random string // YAML after "random:", or "" to leave it out
		want   RandomSets
	}{
		{"default", "", Default().TCAV.Random},
		{"prefix and count", " {prefix: rnd_, count: 3}",
			RandomSets{Prefix: "rnd_", Count: 3, Sets: []string{"rnd_0", "rnd_1", "rnd_2"}}},
		{"count only keeps the default prefix", " {count: 3}",
			RandomSets{Prefix: "random500_", Count: 3, Sets: []string{"random500_0", "random500_1", "random500_2"}}},
		{"explicit list", " [noise_a, noise_b, noise_c]",
			RandomSets{Sets: []string{"noise_a", "noise_b", "noise_c"}}},
		{"block list", "\n    - a\n    - b\n    - c", RandomSets{Sets: []string{"a", "b", "c"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := base
			if tt.random != "" {
				text = strings.Replace(base, "  layers: [l1]\n", "  layers: [l1]\n  random:"+tt.random+"\n", 1)
			}
			c := mustLoad(t, write(t, "x.yaml", text))
			if !reflect.DeepEqual(c.TCAV.Random, tt.want) {
				t.Errorf("random = %#v, want %#v", c.TCAV.Random, tt.want)
			}
		})
	}
}

func TestFacetTargetForms(t *testing.T) {
	tests := []struct {
		name   string
		target string
		want   FacetTarget
	}{
		{"class name", "zebra", FacetTarget{Class: "zebra"}},
		{"class index", "340", FacetTarget{Class: "340"}},
		{"quoted class index", `"340"`, FacetTarget{Class: "340"}},
		{"channel", "{layer: inception4c, channel: 7}", FacetTarget{Layer: "inception4c", Channel: 7}},
		{"channel 0 by default", "{layer: inception4c}", FacetTarget{Layer: "inception4c"}},
		{"block mapping", "\n      layer: mixed3a\n      channel: 12", FacetTarget{Layer: "mixed3a", Channel: 12}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := strings.Replace(base, "  - target: zebra\n", "  - target: "+tt.target+"\n", 1)
			c := mustLoad(t, write(t, "x.yaml", text))
			if c.Facets[0].Target != tt.want {
				t.Errorf("target = %#v, want %#v", c.Facets[0].Target, tt.want)
			}
		})
	}
}

func TestTargetsAreStrings(t *testing.T) {
	text := strings.Replace(base, "targets: [zebra]", "targets: [340, zebra, 0x10]", 1)
	c := mustLoad(t, write(t, "x.yaml", text))
	if want := []string{"340", "zebra", "0x10"}; !reflect.DeepEqual(c.TCAV.Targets, want) {
		t.Errorf("targets = %q, want %q", c.TCAV.Targets, want)
	}
	if c.TCAV.ClassSets["340"] != "340" {
		t.Errorf("class set of 340 = %q, want the folder 340", c.TCAV.ClassSets["340"])
	}
}

func TestAnchorsAndMerge(t *testing.T) {
	text := strings.Replace(base, "attack:\n  - concept: striped\n    target: zebra\n    layer: l1\n", `attack:
  - &first
    concept: striped
    target: zebra
    layer: l1
    norm: l2
    eps: [0.01]
  - <<: *first
    concept: dotted
`, 1)
	c := mustLoad(t, write(t, "x.yaml", text), "attack.1.eps=0.02")
	if len(c.Attack) != 2 {
		t.Fatalf("got %d attacks, want 2", len(c.Attack))
	}
	a, b := c.Attack[0], c.Attack[1]
	if b.Concept != "dotted" || b.Target != "zebra" || b.Norm != "l2" {
		t.Errorf("merged attack = %+v, want dotted/zebra/l2", b)
	}
	if !reflect.DeepEqual(a.Eps, []float64{0.01}) || !reflect.DeepEqual(b.Eps, []float64{0.02}) {
		t.Errorf("eps = %v and %v, want [0.01] and [0.02]: the override must not write through the anchor", a.Eps, b.Eps)
	}
}

func TestEmptyFile(t *testing.T) {
	path := write(t, "empty.yaml", "")
	_, err := Load(path, nil)
	wantErr(t, err, path+": model.path: required")
	c := mustLoad(t, path, "model.path=m.pt", "tcav.targets=[zebra]", "tcav.concepts=[striped]", "tcav.layers=[l]")
	if c.Name != "empty" || c.Seed != 0 || c.Data.BatchSize != 64 {
		t.Errorf("empty file plus overrides: name %q seed %d batch %d", c.Name, c.Seed, c.Data.BatchSize)
	}
}

func TestOverrideThroughAlias(t *testing.T) {
	text := strings.Replace(base, "attack:\n  - concept: striped\n", "attack:\n  - &first\n    concept: striped\n", 1)
	text = strings.Replace(text, "    layer: l1\n", "    layer: l1\n  - *first\n", 1)
	c := mustLoad(t, write(t, "x.yaml", text), "attack.1.concept=dotted")
	if c.Attack[0].Concept != "striped" || c.Attack[1].Concept != "dotted" || c.Attack[1].Layer != "l1" {
		t.Errorf("attacks = %+v, %+v; want striped, then dotted with the anchored layer", c.Attack[0], c.Attack[1])
	}
}

// The activation pass may pick its own batch size only when the user did not
// give one: in the file, as an override, or through Set.
func TestBatchSizeSetOnlyWhenWritten(t *testing.T) {
	req := []string{"model.path=m.pt", "tcav.targets=[zebra]", "tcav.concepts=[striped]", "tcav.layers=[l]"}
	cases := []struct {
		body  string
		extra []string
		want  bool
	}{
		{"name: x\n", nil, false},
		{"name: x\ndata: {root: d}\n", nil, false},
		{"name: x\ndata: {batch_size: 64}\n", nil, true},
		{"name: x\n", []string{"data.batch_size=8"}, true},
	}
	for _, c := range cases {
		cfg := mustLoad(t, write(t, "c.yaml", c.body), append(append([]string(nil), req...), c.extra...)...)
		if cfg.BatchSizeSet() != c.want {
			t.Errorf("%q %v: BatchSizeSet %v, want %v", c.body, c.extra, cfg.BatchSizeSet(), c.want)
		}
	}
	cfg := mustLoad(t, write(t, "c.yaml", "name: x\n"), req...)
	if err := cfg.Set("seed=3"); err != nil || cfg.BatchSizeSet() {
		t.Errorf("Set of another key: BatchSizeSet %v (%v)", cfg.BatchSizeSet(), err)
	}
	if err := cfg.Set("data.batch_size=4"); err != nil || !cfg.BatchSizeSet() {
		t.Errorf("Set data.batch_size: BatchSizeSet %v (%v)", cfg.BatchSizeSet(), err)
	}
}

// The transfer classifier follows the file's classifier unless given: a
// mean-diff run is judged again with sgd-hinge, not with the default's
// logistic.
func TestTransferClassifierFollowsTheFilesClassifier(t *testing.T) {
	for _, tt := range []struct {
		overrides []string
		want      string
	}{
		{nil, "logistic"},
		{[]string{"tcav.cav.classifier=logistic"}, "sgd-hinge"},
		{[]string{"tcav.cav.classifier=mean-diff"}, "sgd-hinge"},
		{[]string{"tcav.cav.classifier=mean-diff", "tcav.cav.transfer_classifier=logistic"}, "logistic"},
	} {
		c := mustLoad(t, write(t, "c.yaml", base), tt.overrides...)
		if got := c.TCAV.CAV.TransferClassifier; got != tt.want {
			t.Errorf("%v: transfer_classifier %q, want %q", tt.overrides, got, tt.want)
		}
	}
}
