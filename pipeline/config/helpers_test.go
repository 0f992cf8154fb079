package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// base is a small valid config; tests change it with overrides.
const base = `model:
  path: m.pt
tcav:
  targets: [zebra]
  concepts: [striped, dotted]
  layers: [l1]
attack:
  - concept: striped
    target: zebra
    layer: l1
facets:
  - target: zebra
    facet: striped
    facet_layers: [l0]
`

// write puts a config file in a fresh directory and returns its path. A
// leading newline in text is dropped so that tests can write line 1 on the
// line after the backquote.
func write(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(strings.TrimPrefix(text, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustLoad(t *testing.T, path string, overrides ...string) *Config {
	t.Helper()
	c, err := Load(path, overrides)
	if err != nil {
		t.Fatalf("Load(%s, %q): %v", path, overrides, err)
	}
	return c
}

// wantErr fails unless err is non-nil, one line, and contains every part.
func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", parts)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error is more than one line: %q", msg)
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("error %q does not contain %q", msg, p)
		}
	}
}
