package run

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cavforge/cavforge/internal/testdemo"
)

// The model file's contents are in every cache key: a model with one
// weight changed misses the cache everywhere, and a byte-identical copy at
// another path hits it (content, not the path).
func TestChangedModelFileMissesTheCacheAndACopyHitsIt(t *testing.T) {
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skip("no /usr/bin/python3 with torch to write a changed model")
	}
	dir := t.TempDir()
	orig := testdemo.Path("model.pt")
	changed, copied := filepath.Join(dir, "changed.pt"), filepath.Join(dir, "copy.pt")
	script := `import sys, torch
m = torch.jit.load(sys.argv[1])
with torch.no_grad():
    p = next(iter(m.parameters()))
    p.view(-1)[0] += 0.01
m.save(sys.argv[2])`
	if out, err := exec.Command(python, "-c", script, orig, changed).CombinedOutput(); err != nil {
		t.Fatalf("writing a changed model: %v\n%s", err, out)
	}
	b, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copied, b, 0o644); err != nil {
		t.Fatal(err)
	}
	shared := "cache_dir=" + filepath.Join(t.TempDir(), "cache")
	root := t.TempDir()
	if _, m := mustRun(t, demoConfig(t, "", shared), filepath.Join(root, "first")); m.CacheHits != 0 {
		t.Fatalf("first run on an empty cache: %d hits", m.CacheHits)
	}
	_, again := mustRun(t, demoConfig(t, "", shared), filepath.Join(root, "again"))
	if again.CacheHits == 0 {
		t.Fatal("the same run twice: no cache hits")
	}
	if _, m := mustRun(t, demoConfig(t, "", shared, "model.path="+changed), filepath.Join(root, "changed")); m.CacheHits != 0 {
		t.Errorf("a model with one weight changed: %d cache hits, want 0", m.CacheHits)
	}
	if _, m := mustRun(t, demoConfig(t, "", shared, "model.path="+copied), filepath.Join(root, "copy")); m.CacheHits != again.CacheHits {
		t.Errorf("a byte-identical copy of the model: %d cache hits, want %d", m.CacheHits, again.CacheHits)
	}
}
