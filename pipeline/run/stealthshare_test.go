package run

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/internal/testdemo"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/model"
)

// The share of changed predictions that the report plots against each
// budget is recounted from the files: every poisoned PNG and its original,
// decoded and classified afresh, and the share of argmax changes must be
// the one in results.json, without stealth (where many change) and with it
// (where none may). Both attacks run in one run and differ only in
// stealth: each must write its own folder (a shared one once held the
// stealth attack's files under both entries).
func TestChangedPredictionShareIsRecountedFromTheWrittenFiles(t *testing.T) {
	// The preprocessing demoConfig writes, spelled out here.
	m, err := model.Load(testdemo.Path("model.pt"), "cpu",
		model.Input{Size: [2]int{64, 64}, Mean: [3]float64{0.5, 0.5, 0.5}, Std: [3]float64{0.25, 0.25, 0.25}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	predict := func(path string) int {
		t.Helper()
		im, err := images.Decode(path)
		if err != nil {
			t.Fatal(err)
		}
		s := torch.NewScope()
		defer s.Close()
		out, _ := m.Forward(s, m.Normalize(s, m.Pixels(s, []images.Image{im})), nil, torch.NoGrad, torch.FP32)
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		v, err := out.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		best := 0
		for k := range v {
			if v[k] > v[best] {
				best = k
			}
		}
		return best
	}
	cases := []struct{ name, stealth string }{{"without stealth", ""}, {"with stealth", ", stealth: {weight: 10}"}}
	attack := `{concept: striped, target: zebra, layer: block3, goal: suppress, eps: [0.0314], step: 0.004, steps: 30`
	cfg := demoConfig(t, "", attackConfig(t, "["+attack+cases[0].stealth+"}, "+attack+cases[1].stealth+"}]")...)
	out := filepath.Join(t.TempDir(), "run")
	res, _ := mustRun(t, cfg, out)
	if len(res.Attack) != 2 {
		t.Fatalf("%d attack entries, want 2", len(res.Attack))
	}
	if res.Attack[0].Images == res.Attack[1].Images {
		t.Fatalf("both attacks wrote their images to %s", res.Attack[0].Images)
	}
	for i, tc := range cases {
		a := res.Attack[i]
		b, err := os.ReadFile(filepath.Join(out, a.Images, "poisoned.json"))
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Files []struct{ Original, File string }
		}
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Files) < 10 {
			t.Fatalf("%s: %d poisoned files", tc.name, len(p.Files))
		}
		changed := 0
		for _, f := range p.Files {
			if predict(testdemo.Path("data", "striped", filepath.Base(f.Original))) != predict(filepath.Join(out, a.Images, f.File)) {
				changed++
			}
		}
		share := float64(changed) / float64(len(p.Files))
		t.Logf("%s: %d of %d predictions changed; results.json says %.3f", tc.name, changed, len(p.Files), a.ChangedPrediction)
		if math.Abs(share-a.ChangedPrediction) > 1e-9 {
			t.Errorf("%s: results.json says %.3f of the predictions changed, the files say %d of %d = %.3f",
				tc.name, a.ChangedPrediction, changed, len(p.Files), share)
		}
		if tc.stealth == "" && changed == 0 {
			t.Errorf("%s: no prediction changed, so the recount cannot tell a wrong share from a right one", tc.name)
		}
		if tc.stealth != "" && changed > len(p.Files)/10 {
			t.Errorf("%s: %d of %d predictions changed", tc.name, changed, len(p.Files))
		}
	}
}
