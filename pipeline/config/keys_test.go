package config

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestKeys(t *testing.T) {
	keys := Keys()
	if !slices.IsSorted(keys) {
		t.Error("Keys is not sorted")
	}
	if len(slices.Compact(slices.Clone(keys))) != len(keys) {
		t.Error("Keys has duplicates")
	}
	for _, want := range []string{"seed", "tcav.layers", "tcav.cav.alpha", "tcav.random.count", "tcav.random.*",
		"tcav.class_sets.*", "attack.*.eps", "attack.*.judge_random", "facets.*.target.channel", "model.input.pixel_range"} {
		if !slices.Contains(keys, want) {
			t.Errorf("Keys lacks %q", want)
		}
	}
	for _, bad := range []string{"tcav.random.sets", "facets.*.target.class", "attack.*.dir"} {
		if slices.Contains(keys, bad) {
			t.Errorf("Keys has %q, which is not a YAML key", bad)
		}
	}
	// Every listed key is accepted with an index or name for each *.
	for _, k := range keys {
		if err := CheckKey(strings.ReplaceAll(k, "*", "0")); err != nil {
			t.Errorf("CheckKey(%q): %v", k, err)
		}
	}
}

// Every yaml-tagged field of Config is reachable through Keys, so adding a
// field cannot silently make it unsettable.
func TestKeysCoverFields(t *testing.T) {
	keys := Keys()
	var walk func(rt reflect.Type, prefix string)
	walk = func(rt reflect.Type, prefix string) {
		for _, f := range fieldsOf(rt) {
			k := join(prefix, f.name)
			if !slices.Contains(keys, k) {
				t.Errorf("Keys lacks %q", k)
			}
			ft := rt.Field(f.index).Type
			for ft.Kind() == reflect.Slice {
				ft, k = ft.Elem(), k+".*"
			}
			if ft.Kind() == reflect.Struct {
				walk(ft, k)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
}

func TestCheckKey(t *testing.T) {
	tests := []struct {
		key  string
		want string // "" for valid
	}{
		{"seed", ""},
		{"attack.0.eps", ""},
		{"attack.12.eps.3", ""},
		{"tcav.class_sets.zebra", ""},
		{"tcav.random.4", ""},
		{"model.input.size.1", ""},
		{"tcav.cav.alfa", `unknown key "tcav.cav.alfa" (did you mean "tcav.cav.alpha"?)`},
		{"attack.eps", `attack is a list: want a numeric index, got "eps"`},
		{"attack.-1.eps", `attack is a list: want a numeric index, got "-1"`},
		{"model.input.size.2", "model.input.size has 2 elements"},
		{"seed.0", `seed is a single value`},
		{"", "empty segment"},
		{"tcav.", "empty segment"},
	}
	for _, tt := range tests {
		err := CheckKey(tt.key)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CheckKey(%q) = %v, want nil", tt.key, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CheckKey(%q) = %v, want an error containing %q", tt.key, err, tt.want)
		}
	}
}

func TestSet(t *testing.T) {
	path := write(t, "x.yaml", base)
	c := mustLoad(t, path)
	if err := c.Set("seed=4", "device=cpu", "model.path=other.pt", "attack.0.eps=[0.02]"); err != nil {
		t.Fatal(err)
	}
	if c.Seed != 4 || c.Device != "cpu" || !reflect.DeepEqual(c.Attack[0].Eps, []float64{0.02}) {
		t.Errorf("Set did not apply: seed %d device %s eps %v", c.Seed, c.Device, c.Attack[0].Eps)
	}
	if want := filepath.Join(filepath.Dir(path), "other.pt"); c.Model.Path != want {
		t.Errorf("model.path = %q, want %q (relative to the config file)", c.Model.Path, want)
	}
	// The same overrides through Load give the same config.
	viaLoad := mustLoad(t, path, "seed=4", "device=cpu", "model.path=other.pt", "attack.0.eps=[0.02]")
	if !reflect.DeepEqual(c, viaLoad) {
		t.Errorf("Set and Load differ:\n%+v\n%+v", c, viaLoad)
	}

	before := *c
	err := c.Set("attack.0.eps=3")
	wantErr(t, err, "--set attack.0.eps=3: attack.0.eps: 3 is out of range")
	if !reflect.DeepEqual(*c, before) {
		t.Error("a failed Set changed the config")
	}
	wantErr(t, c.Set("tcav.cav.alfa=1"), `unknown key "tcav.cav.alfa"`)
}
