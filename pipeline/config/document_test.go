package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// A file other than a config gets the config's errors (file:line: key:
// text, did-you-mean) and keeps a yaml.Node field as written.
func TestDecodeFileKeepsNodesAndLocatesErrors(t *testing.T) {
	type doc struct {
		Name  string    `yaml:"name"`
		Count int       `yaml:"count"`
		Rest  yaml.Node `yaml:"rest"`
	}
	write := func(text string) string {
		p := filepath.Join(t.TempDir(), "f.yaml")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var d doc
	p := write("name: a\nrest: &r {b: 2, a: 1}\ncount: 3\n")
	f, err := DecodeFile(p, "test file", &d)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "a" || d.Count != 3 || d.Rest.Kind != yaml.MappingNode || d.Rest.Content[0].Value != "b" {
		t.Fatalf("decoded %+v", d)
	}
	if !f.Has("count") || f.Has("nope") {
		t.Error("Has")
	}
	if err := f.Errorf("count", "too many"); err.Error() != p+":3: count: too many" {
		t.Errorf("Errorf: %v", err)
	}
	for text, want := range map[string]string{
		"name: a\ncuont: 3\n": `:2: unknown key "cuont" (did you mean "count"?)`,
		"count: [3]\n":        ":1: count: want an integer, got a list",
		"- a\n":               ":1: want a mapping of test file keys at the top level",
	} {
		_, err := DecodeFile(write(text), "test file", &doc{})
		if err == nil || !strings.HasSuffix(err.Error(), want) || !strings.HasPrefix(err.Error(), "/") {
			t.Errorf("%q: %v, want ...%s", text, err, want)
		}
	}
}
