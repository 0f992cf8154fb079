package run

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/cavforge/cavforge/pipeline/images"
)

// The facets stage renders the clean and the attacked facet side by side:
// one PNG per strength for each, a contact sheet with a row for each, and a
// results.json entry that names them and the poisoned set.
func TestFacetsCleanAndAttacked(t *testing.T) {
	cfg := demoConfig(t, "",
		`attack=[{concept: striped, target: zebra, layer: block2, goal: suppress, eps: [0.0157, 0.0314], step: 0.004, steps: 10}]`,
		`facets=[{target: zebra, facet: striped, facet_layers: [block2], strength: [0, 5], batch: 3, size: 32, steps: 20, compare_attack: true},
		         {target: {layer: block3, channel: 5}, facet: dotted, facet_layers: [block1, block2], strength: [1, 1], batch: 1, size: 40, steps: 5}]`)
	out := filepath.Join(t.TempDir(), "run")
	res, _ := mustRun(t, cfg, out)
	if len(res.Facets) != 2 {
		t.Fatalf("%d facet entries, want 2", len(res.Facets))
	}
	// results.json is sorted by target: the channel target comes first.
	ch, f := res.Facets[0], res.Facets[1]
	if f.Target != "zebra" || f.Facet != "striped" || len(f.Clean) != 3 || len(f.Attacked) != 3 {
		t.Fatalf("zebra entry: %+v", f)
	}
	if f.AttackImages != "attack/striped-zebra-block2-eps0.0314/" {
		t.Errorf("attacked facet fitted on %q, want the largest budget's images", f.AttackImages)
	}
	if len(f.DirectionCosine) != 1 || !(f.DirectionCosine[0] < 0.999) {
		t.Errorf("direction cosine %v: the poisoned set should move the facet direction", f.DirectionCosine)
	}
	if want := []float64{0, 2.5, 5}; len(f.Strengths) != 3 || f.Strengths[1] != want[1] || f.Strengths[2] != want[2] {
		t.Errorf("strengths %v, want %v", f.Strengths, want)
	}
	if len(f.CleanProjection) != 3 || len(f.AttackedProjection) != 3 || len(f.CleanTarget) != 3 || len(f.AttackedTarget) != 3 {
		t.Errorf("measurements missing: %+v", f)
	}
	for i, p := range append(append([]string(nil), f.Clean...), f.Attacked...) {
		img, err := images.Decode(filepath.Join(out, p))
		if err != nil {
			t.Fatal(err)
		}
		if img.H != 32 || img.W != 32 {
			t.Errorf("image %d %s is %dx%d, want 32x32", i, p, img.W, img.H)
		}
	}
	// At strength 0 the facet has no say: the clean and the attacked render
	// start alike, see the same transforms and end alike.
	a, _ := os.ReadFile(filepath.Join(out, f.Clean[0]))
	b, _ := os.ReadFile(filepath.Join(out, f.Attacked[0]))
	if !bytes.Equal(a, b) {
		t.Error("strength 0: the clean and the attacked render differ")
	}
	sheet, err := images.Decode(filepath.Join(out, f.Sheet))
	if err != nil {
		t.Fatal(err)
	}
	if sheet.H != 2*32+2 || sheet.W != 3*32+2*2 {
		t.Errorf("sheet is %dx%d, want 2 rows and 3 columns of 32 px with 2 px gaps", sheet.W, sheet.H)
	}

	if ch.Target != "block3-ch5" || len(ch.Clean) != 1 || len(ch.Attacked) != 0 || ch.AttackImages != "" {
		t.Errorf("channel entry: %+v", ch)
	}
	if st, err := os.Stat(filepath.Join(out, "facets", "block3-ch5-dotted-sheet.png")); err != nil || st.Size() == 0 {
		t.Errorf("channel facet sheet missing: %v", err)
	}
	html, _ := os.ReadFile(filepath.Join(out, "report.html"))
	for _, want := range []string{"facet fitted on the attacked concept set", "attack/striped-zebra-block2-eps0.0314/", "facet strength"} {
		if !bytes.Contains(html, []byte(want)) {
			t.Errorf("report.html lacks %q", want)
		}
	}
}
