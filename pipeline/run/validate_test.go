package run

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validate's "ok" means run will not fail on the inputs: each case fails
// validate with the error run gives, naming the set or file, before any
// compute.
func TestValidateFailsWhereRunWould(t *testing.T) {
	tiny := copyData(t, allSets...)
	entries, _ := os.ReadDir(filepath.Join(tiny, "striped"))
	for _, e := range entries[1:] {
		os.Remove(filepath.Join(tiny, "striped", e.Name()))
	}
	dangling := copyData(t, allSets...)
	link := filepath.Join(dangling, "striped", "zz.png")
	if err := os.Symlink(filepath.Join(dangling, "gone.png"), link); err != nil {
		t.Fatal(err)
	}
	corrupt := copyData(t, allSets...)
	if err := os.WriteFile(filepath.Join(corrupt, "striped", "000.png"), []byte("\x89PNG\r\n\x1a\nnot really"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, root, want string }{
		{"one-image set", tiny, "data.root/striped: 1 images are too few for a held-out CAV split"},
		{"dangling symlink", dangling, link + ": dangling symlink"},
		{"corrupt header", corrupt, "000.png"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			verr := Validate(demoConfig(t, tc.root), quietLog(), &out)
			if verr == nil || !strings.Contains(verr.Error(), tc.want) {
				t.Fatalf("validate: %v, want an error containing %q", verr, tc.want)
			}
			_, rerr := Run(demoConfig(t, tc.root), Options{Out: filepath.Join(t.TempDir(), "run"), Log: quietLog()})
			if rerr == nil || rerr.Error() != verr.Error() {
				t.Fatalf("run: %v, want validate's error %v", rerr, verr)
			}
		})
	}
}

// validate says what preprocessing does to each set.
func TestValidatePrintsTheEffectivePreprocessing(t *testing.T) {
	var out bytes.Buffer
	if err := Validate(demoConfig(t, ""), quietLog(), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"images are resized straight to 64x64", "striped", "20 images, 64x64 (20) → used as they are"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("validate output lacks %q:\n%s", want, out.String())
		}
	}
}

// The cache key covers everything that determines a value: a run that
// changes the preprocessing reuses nothing; one that changes only the CAV
// classifier's settings reuses the activations and class gradients (2
// concepts + 6 random sets + 1 class set) and refits every CAV.
func TestEveryInputOfAValueIsInItsCacheKey(t *testing.T) {
	shared := "cache_dir=" + filepath.Join(t.TempDir(), "cache")
	root := t.TempDir()
	if _, m := mustRun(t, demoConfig(t, "", shared), filepath.Join(root, "first")); m.CacheHits != 0 {
		t.Fatalf("first run on an empty cache: %d hits", m.CacheHits)
	}
	for i, tc := range []struct {
		name string
		set  []string
		hits int
	}{
		{"one channel's mean", []string{"model.input.mean=[0.5,0.45,0.5]"}, 0},
		{"one channel's std", []string{"model.input.std=[0.25,0.25,0.3]"}, 0},
		{"a center crop", []string{"model.input.resize=72", "model.input.crop=center"}, 0},
		{"the pixel range", []string{"model.input.pixel_range=[0,2]"}, 0},
		{"the classifier's penalty", []string{"tcav.cav.alpha=0.02"}, 9},
		{"the held-out split", []string{"tcav.cav.test_fraction=0.4"}, 9},
	} {
		_, m := mustRun(t, demoConfig(t, "", append([]string{shared}, tc.set...)...), filepath.Join(root, fmt.Sprint(i)))
		if m.CacheHits != tc.hits {
			t.Errorf("changing %s: %d cache hits, want %d", tc.name, m.CacheHits, tc.hits)
		}
	}
}
