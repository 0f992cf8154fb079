package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sameConfig compares everything but the directory the config was read from.
func sameConfig(a, b *Config) bool {
	x, y := *a, *b
	x.dir, y.dir = "", ""
	return reflect.DeepEqual(&x, &y)
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name      string
		text      string
		overrides []string
	}{
		{"minimal", base, nil},
		{"example", "", nil}, // configs/example.yaml
		{"list random and scalar eps", strings.Replace(base, "  layers: [l1]\n", "  layers: [l1]\n  random: [r_a, r_b, r_c]\n", 1),
			[]string{"attack.0.eps=0.01"}},
		{"class index and channel targets", base,
			[]string{"tcav.targets=[340, '7']", "attack.0.target=340",
				"facets=[{target: {layer: mixed4a, channel: 3}, facet: striped, facet_layers: [a, b]}, {target: 12, facet: dotted, facet_layers: [a]}]"}},
		{"every field changed", base, []string{
			"seed=123456789", "device=cuda:1", "precision=bf16", "model.labels=labels.txt",
			"model.input={size: [299, 300], resize: 342, crop: center, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], pixel_range: [0, 255]}",
			"data={root: imgs, max_images: 50, batch_size: 8, skip_bad_images: true}",
			"tcav.cav={classifier: logistic, alpha: 0.001, epochs: 7, test_fraction: 0.2, lr: 0.01}",
			"tcav.significance={alpha: 0.01, test: one-sample, bonferroni: false}",
			"tcav.random={prefix: noise-, count: 4}",
			"attack.0={concept: striped, target: zebra, layer: l1, goal: promote, objective: feature-collision, toward: dotted, norm: l2, eps: [0.1, 0.5], step: 0.01, steps: 10, random_start: false, momentum: 0.9, tau: 3, judge_random: 2}",
			"facets.0={target: zebra, facet: striped, facet_layers: [l0], strength: [-1, 1e-3], batch: 9, size: 128, steps: 64, lr: 0.02, compare_attack: true}",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join("..", "..", "configs", "example.yaml")
			if tt.text != "" {
				path = write(t, "x.yaml", tt.text)
			}
			c := mustLoad(t, path, tt.overrides...)
			out, err := c.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			// Read back from another directory: paths must not move.
			again := mustLoad(t, write(t, "resolved.yaml", string(out)))
			if !sameConfig(c, again) {
				t.Errorf("round trip changed the config:\nfirst  %+v\nsecond %+v\nyaml:\n%s", c, again, out)
			}
			out2, err := again.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, out2) {
				t.Errorf("Marshal is not stable:\n%s\n---\n%s", out, out2)
			}
			h1, _ := c.Hash()
			h2, _ := again.Hash()
			if h1 != h2 || len(h1) != 64 {
				t.Errorf("hashes %q and %q, want equal hex sha256", h1, h2)
			}
		})
	}
}

func TestMarshalForms(t *testing.T) {
	c := mustLoad(t, write(t, "x.yaml", base), "tcav.targets=[340]", "attack.0.target=340",
		"facets=[{target: 12, facet: striped, facet_layers: [l0]}, {target: {layer: l3, channel: 5}, facet: striped, facet_layers: [l0]}]")
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"name: x\n",
		"targets: [\"340\"]\n",
		"random:\n    prefix: random500_\n    count: 10\n",
		"eps: [0.0078, 0.0157, 0.0314]\n",
		"judge_random: 5\n",
		"  - target: \"12\"\n",
		"  - target:\n      layer: l3\n      channel: 5\n",
		"class_sets:\n    \"340\": \"340\"\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Marshal output lacks %q:\n%s", want, out)
		}
	}
	c.TCAV.Random = RandomSets{Sets: []string{"a", "b"}}
	out, _ = c.Marshal()
	if !strings.Contains(string(out), "random: [a, b]\n") {
		t.Errorf("list form of random not kept:\n%s", out)
	}
}

func TestHash(t *testing.T) {
	path := write(t, "x.yaml", base)
	h := func(overrides ...string) string {
		s, err := mustLoad(t, path, overrides...).Hash()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	h0 := h()
	if h0 != h() {
		t.Error("hash differs between two loads of one file")
	}
	if h0 != h("seed=0") {
		t.Error("setting a default explicitly changed the hash")
	}
	for _, o := range []string{"seed=1", "attack.0.eps=0.01", "tcav.layers=[l1, l2]", "tcav.random.count=9"} {
		if h(o) == h0 {
			t.Errorf("--set %s did not change the hash", o)
		}
	}
	// The same config written differently hashes the same.
	other := write(t, "x.yaml", "model: {path: "+filepath.Join(filepath.Dir(path), "m.pt")+"}\n"+
		"tcav: {targets: zebra, concepts: [striped, dotted], layers: l1, random: {count: 10}}\n"+
		"attack: [{concept: striped, target: zebra, layer: l1, eps: [0.0078, 0.0157, 0.0314]}]\n"+
		"facets: [{target: zebra, facet: striped, facet_layers: l0}]\n"+
		"cache_dir: "+filepath.Join(filepath.Dir(path), ".cavforge-cache")+"\n"+
		"data: {root: "+filepath.Join(filepath.Dir(path), "data")+"}\n")
	c, err := Load(other, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Name = "x"
	if got, _ := c.Hash(); got != h0 {
		t.Errorf("equivalent config hashes %s, want %s", got, h0)
	}
}

func TestExampleConfig(t *testing.T) {
	path := filepath.Join("..", "..", "configs", "example.yaml")
	if _, err := os.Stat(path); err != nil {
		t.Skip("no configs/example.yaml")
	}
	c := mustLoad(t, path)
	if c.Name != "zebra-stripes" || len(c.Attack) != 1 || len(c.Facets) != 1 || !c.Facets[0].CompareAttack {
		t.Errorf("example loaded as %+v", c)
	}
}
