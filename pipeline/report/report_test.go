package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cavforge/cavforge/pipeline/present"
	"github.com/cavforge/cavforge/pipeline/stats"
)

func ptr(x float64) *float64 { return &x }

var randomSets = []string{"random500_0", "random500_1", "random500_2", "random500_3", "random500_4"}

// synthetic is a run with every verdict: striped important, dotted
// significantly below the baseline, zigzagged not significant.
func synthetic(t *testing.T) *Results {
	t.Helper()
	random := []float64{0.52, 0.41, 0.60, 0.47, 0.55}
	concepts := []struct {
		concept string
		scores  []float64
	}{
		{"striped", []float64{0.96, 0.94, 0.91, 0.97, 0.95}},
		{"dotted", []float64{0.12, 0.2, 0.08, 0.15, 0.1}},
		{"zigzagged", []float64{0.5, 0.58, 0.44, 0.56, 0.49}},
	}
	r := &Results{}
	for _, layer := range []string{"inception4e", "inception4c"} {
		for _, c := range concepts {
			e := TCAVEntry{
				Target: "zebra", Concept: c.concept, Layer: layer,
				RandomSets:   randomSets,
				Scores:       c.scores,
				Magnitudes:   []float64{0.31, 0.28, 0.3, 0.29, 0.33},
				RandomScores: random,
				CAVAccuracy:  []float64{0.97, 0.99, 0.95, 0.98, 0.96},
			}
			if err := e.Summarize(stats.TwoSample, stats.BonferroniAlpha(0.05, len(concepts))); err != nil {
				t.Fatal(err)
			}
			r.TCAV = append(r.TCAV, e)
		}
	}
	for i, eps := range []float64{0.0314, 0.0078, 0.0157} {
		r.Attack = append(r.Attack, AttackEntry{
			Concept: "striped", Target: "zebra", Layer: "inception4c", Goal: "suppress", Objective: "tcav-surrogate",
			Eps: eps, Norm: "linf",
			Before: AttackScore{Mean: 0.95, Std: 0.02, PValue: 1e-6, Significant: true, Direction: stats.Above, RandomMean: ptr(0.51)},
			After: AttackScore{Mean: []float64{0.21, 0.7, 0.45}[i], Std: 0.05, PValue: []float64{3e-4, 1e-3, 0.4}[i],
				Significant: i != 2, Direction: []stats.Direction{stats.Below, stats.Above, stats.Below}[i], RandomMean: ptr(0.49)},
			Linf: eps, L2Mean: 1.9 * eps / 0.0157, PSNRMean: 41.2, ChangedPrediction: 0.1 * float64(i),
			Images: "attack/striped-zebra-inception4c-eps" + formatFloat(eps) + "/",
		})
	}
	r.Facets = []FacetEntry{{
		Target: "zebra", Facet: "striped",
		Clean:    []string{"facets/zebra-striped-clean-0.png", "facets/zebra-striped-clean-1.png"},
		Attacked: []string{"facets/zebra-striped-attacked-0.png"},
	}}
	return r
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func sorted(ks ...string) []string { slices.Sort(ks); return ks }

func TestJSONShape(t *testing.T) {
	var buf bytes.Buffer
	if err := EncodeJSON(&buf, synthetic(t)); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	check := func(what string, m map[string]any, want ...string) {
		t.Helper()
		if got := keys(m); !slices.Equal(got, sorted(want...)) {
			t.Errorf("%s keys = %v, want %v", what, got, sorted(want...))
		}
	}
	check("top level", doc, "convention", "tcav", "attack", "facets")
	if c, _ := doc["convention"].(string); !strings.Contains(c, "logit") || !strings.Contains(c, "S(x) > 0") {
		t.Errorf("convention = %q", c)
	}
	tcav := doc["tcav"].([]any)
	if len(tcav) != 6 {
		t.Fatalf("%d tcav entries, want 6", len(tcav))
	}
	check("tcav entry", tcav[0].(map[string]any), "target", "concept", "layer", "random_sets", "scores", "magnitudes",
		"random_scores", "cav_accuracy", "mean", "std", "p_value", "significant", "direction",
		"test", "random_set_count", "threshold")
	attack := doc["attack"].([]any)
	a := attack[0].(map[string]any)
	check("attack entry", a, "concept", "target", "layer", "goal", "objective", "eps", "norm", "before", "after",
		"linf", "l2_mean", "psnr_mean", "changed_prediction", "class_logit_change", "stealth_weight", "images")
	check("attack before", a["before"].(map[string]any), "mean", "std", "p_value", "significant", "direction", "random_mean")
	check("facet entry", doc["facets"].([]any)[0].(map[string]any), "target", "facet", "clean", "attacked")

	// Canonical order: by target, layer, concept; attacks by eps.
	var order []string
	for _, e := range tcav {
		m := e.(map[string]any)
		order = append(order, m["layer"].(string)+"/"+m["concept"].(string))
	}
	want := []string{"inception4c/dotted", "inception4c/striped", "inception4c/zigzagged", "inception4e/dotted", "inception4e/striped", "inception4e/zigzagged"}
	if !slices.Equal(order, want) {
		t.Errorf("tcav order = %v, want %v", order, want)
	}
	for i, e := range attack {
		if eps := e.(map[string]any)["eps"].(float64); eps != []float64{0.0078, 0.0157, 0.0314}[i] {
			t.Errorf("attack %d has eps %v: not sorted", i, eps)
		}
	}
	// Verdicts from Summarize (Bonferroni over 3 concepts).
	for _, e := range tcav {
		m := e.(map[string]any)
		wantSig, wantDir := map[string]bool{"striped": true, "dotted": true, "zigzagged": false}[m["concept"].(string)],
			map[string]string{"striped": "above", "dotted": "below", "zigzagged": "above"}[m["concept"].(string)]
		if m["significant"] != wantSig || m["direction"] != wantDir {
			t.Errorf("%s: significant %v direction %v, want %v %v", m["concept"], m["significant"], m["direction"], wantSig, wantDir)
		}
	}
}

func TestJSONDeterministic(t *testing.T) {
	r := synthetic(t)
	var a, b bytes.Buffer
	if err := EncodeJSON(&a, r); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(r.TCAV)
	slices.Reverse(r.Attack)
	if err := EncodeJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("results.json depends on the order entries were added")
	}
}

func TestJSONEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := EncodeJSON(&buf, &Results{}); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tcav", "attack", "facets"} {
		if _, ok := doc[k].([]any); !ok {
			t.Errorf("%s = %v, want an empty array", k, doc[k])
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *Results)
		want   string
	}{
		{"NaN score", func(r *Results) { r.TCAV[0].Scores[1] = math.NaN() }, "scores[1]"},
		{"Inf PSNR", func(r *Results) { r.Attack[0].PSNRMean = math.Inf(1) }, "psnr_mean"},
		{"short magnitudes", func(r *Results) { r.TCAV[0].Magnitudes = r.TCAV[0].Magnitudes[:2] }, "2 magnitudes"},
		{"bad direction", func(r *Results) { r.TCAV[0].Direction = "up" }, `direction "up"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := synthetic(t)
			r.TCAV[0].Scores = slices.Clone(r.TCAV[0].Scores)
			tt.change(r)
			err := WriteJSON(filepath.Join(t.TempDir(), ResultsFile), r)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestReadJSONRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), ResultsFile)
	r := synthetic(t)
	if err := WriteJSON(path, r); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	EncodeJSON(&a, r)
	EncodeJSON(&b, got)
	if a.String() != b.String() {
		t.Error("results.json does not survive a round trip")
	}
}

func TestTCAVCSV(t *testing.T) {
	path := filepath.Join(t.TempDir(), TCAVCSVFile)
	r := synthetic(t)
	if err := WriteTCAVCSV(path, r.TCAV); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rows[0], tcavCSVHeader) {
		t.Errorf("header = %v", rows[0])
	}
	// 2 layers × 3 concepts × 5 random sets.
	if got := len(rows) - 1; got != 30 {
		t.Errorf("%d data rows, want 30", got)
	}
	first := rows[1]
	want := []string{"zebra", "dotted", "inception4c", "random500_0", "0.12", "0.31", "0.97", "0.52"}
	if !slices.Equal(first[:len(want)], want) {
		t.Errorf("first row = %v, want it to start with %v", first, want)
	}
	if first[9] != "true" || first[10] != "below" {
		t.Errorf("first row significance = %v %v, want true below", first[9], first[10])
	}
}

func decodePNG(t *testing.T, data []byte) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	b := img.Bounds()
	if b.Dx() < 600 || b.Dy() < 300 || b.Dx() > 5000 || b.Dy() > 3000 {
		t.Errorf("chart is %dx%d", b.Dx(), b.Dy())
	}
	return img
}

func TestCharts(t *testing.T) {
	r := synthetic(t).normalized()
	data, err := TCAVChart("zebra", "inception4c", r.TCAV[:3])
	if err != nil {
		t.Fatal(err)
	}
	img := decodePNG(t, data)
	// The important bar is drawn in solid blue; the others must not be.
	var blue int
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA); c == present.ImportantColor {
				blue++
			}
		}
	}
	if blue < 1000 {
		t.Errorf("only %d pixels of the important colour", blue)
	}

	data, err = AttackChart(r.Attack, nil)
	if err != nil {
		t.Fatal(err)
	}
	decodePNG(t, data)

	// One budget only: the axis must still have a range.
	data, err = AttackChart(r.Attack[:1], ptr(0.5))
	if err != nil {
		t.Fatal(err)
	}
	decodePNG(t, data)

	if _, err := TCAVChart("zebra", "x", nil); err == nil {
		t.Error("TCAVChart without entries: no error")
	}
}

func writeTestPNG(t *testing.T, path string, c color.Color) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	img := image.NewNRGBA(image.Rect(0, 0, 32, 32))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for y := 0; y < 32; y++ {
		for x := 0; x < 32; x++ {
			if (x/4+y/4)%2 == 0 {
				img.Set(x, y, c)
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// syntheticRun writes a run directory with results.json, a manifest and the
// images the results refer to.
func syntheticRun(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	r := synthetic(t)
	for _, a := range r.Attack {
		for i := 0; i < 6; i++ {
			writeTestPNG(t, filepath.Join(dir, a.Images, "img"+string(rune('0'+i))+".png"), color.NRGBA{R: 200, A: 255})
		}
	}
	writeTestPNG(t, filepath.Join(dir, r.Facets[0].Clean[0]), color.NRGBA{G: 160, A: 255})
	writeTestPNG(t, filepath.Join(dir, r.Facets[0].Attacked[0]), color.NRGBA{B: 160, A: 255})
	// Clean[1] is left missing; an escaping path must not be embedded.
	r.Facets[0].Attacked = append(r.Facets[0].Attacked, "../outside.png")
	writeTestPNG(t, filepath.Join(filepath.Dir(dir), "outside.png"), color.Black)

	manifest := `{"name": "zebra-stripes", "seed": 0, "device": "cpu", "stage_timings": {"tcav": 1.5}}`
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBuild(t *testing.T) {
	dir := syntheticRun(t)
	if err := Build(dir); err != nil {
		t.Fatal(err)
	}

	plots, _ := filepath.Glob(filepath.Join(dir, PlotsDir, "*.png"))
	var names []string
	for _, p := range plots {
		names = append(names, filepath.Base(p))
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		decodePNG(t, data)
	}
	wantPlots := []string{
		"attack-striped-zebra-inception4c-suppress-tcav-surrogate-linf.png",
		"tcav-zebra-inception4c.png",
		"tcav-zebra-inception4e.png",
	}
	if !slices.Equal(names, wantPlots) {
		t.Errorf("plots = %v, want %v", names, wantPlots)
	}
	if _, err := os.Stat(filepath.Join(dir, TCAVCSVFile)); err != nil {
		t.Error(err)
	}

	html, err := os.ReadFile(filepath.Join(dir, HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	page := string(html)
	for _, banned := range []string{"http://", "https://", "<script", "<link", "outside.png\" src"} {
		if strings.Contains(strings.ToLower(page), banned) {
			t.Errorf("report.html contains %q", banned)
		}
	}
	for _, want := range []string{
		"data:image/png;base64,",
		"cavforge report: zebra-stripes",
		"significant, below baseline: not important",
		"not significant",
		"zebra-striped-clean-1.png: missing",
		"../outside.png: not inside the run directory",
		"first 4 of 6 images",
		"stage_timings",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	// 3 charts + 3×4 attack images + 2 facet images.
	if n := strings.Count(page, "data:image/png;base64,"); n != 17 {
		t.Errorf("%d embedded PNGs, want 17", n)
	}

	// Rebuilding gives the same bytes: no timestamps, stable order.
	if err := Build(dir); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(filepath.Join(dir, HTMLFile))
	if !bytes.Equal(html, again) {
		t.Error("report.html differs between two builds")
	}
	// Nothing half-written left behind.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temp file %s left in the run directory", e.Name())
		}
	}
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	if err := Build(dir); err == nil {
		t.Error("Build without results.json: no error")
	}
	if err := os.WriteFile(filepath.Join(dir, ResultsFile), []byte(`{"tcav": [`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Build(dir); err == nil || !strings.Contains(err.Error(), ResultsFile) {
		t.Errorf("Build with a truncated results.json: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, HTMLFile)); err == nil {
		t.Error("report.html written despite the error")
	}
}

// TestHTMLInChromium loads report.html in headless Chromium, offline, and
// checks what a reader sees: the verdict cell of an important row is drawn
// in the important blue, a row significant below the baseline on its tan
// background, and a not-significant row in grey on the hatched background
// with no important blue anywhere in its cell. The cells are located by a
// copy of the page with a script that reports their boxes (--dump-dom); the
// screenshot is of the report as written. Set CAVFORGE_KEEP_SCREENSHOT=path
// to keep the screenshot for a look.
func TestHTMLInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (scripts/setup.sh installs it as root)")
	}
	if testing.Short() {
		t.Skip("short mode")
	}
	dir := syntheticRun(t)
	page := filepath.Join(dir, HTMLFile)
	chrome := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--force-device-scale-factor=1",
			"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
			"--user-data-dir=" + t.TempDir(), "--window-size=1280,2400"}
		out, err := exec.CommandContext(ctx, chromium, append(base, args...)...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return out
	}

	// Where the first table's verdict cells are, per concept.
	probe := filepath.Join(dir, "probe.html")
	script := `<script>
var out = {};
document.querySelectorAll("tr").forEach(function (tr) {
  var td = tr.querySelector("td"), v = tr.querySelector("td.verdict");
  if (!td || !v || out[td.textContent]) return;
  var r = v.getBoundingClientRect();
  out[td.textContent] = {x: r.left, y: r.top, w: r.width, h: r.height, text: v.textContent};
});
document.documentElement.setAttribute("data-cells", JSON.stringify(out));
</script></body>`
	html := string(mustRead(t, page))
	if !strings.Contains(html, "</body>") {
		t.Fatal("report.html has no </body>")
	}
	if err := os.WriteFile(probe, []byte(strings.Replace(html, "</body>", script, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	dom := string(chrome("--dump-dom", "file://"+probe))
	i := strings.Index(dom, `data-cells="`)
	if i < 0 {
		t.Fatalf("the probe script reported nothing:\n%.400s", dom)
	}
	raw := dom[i+len(`data-cells="`):]
	raw = raw[:strings.Index(raw, `"`)]
	raw = strings.NewReplacer("&quot;", `"`, "&amp;", "&", "&lt;", "<", "&gt;", ">").Replace(raw)
	type box struct {
		X, Y, W, H float64
		Text       string
	}
	cells := map[string]box{}
	if err := json.Unmarshal([]byte(raw), &cells); err != nil {
		t.Fatalf("cells %q: %v", raw, err)
	}

	shot := filepath.Join(t.TempDir(), "screenshot.png")
	chrome("--screenshot="+shot, "file://"+page)
	data := mustRead(t, shot)
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if keep := os.Getenv("CAVFORGE_KEEP_SCREENSHOT"); keep != "" {
		os.WriteFile(keep, data, 0o644)
		os.WriteFile(strings.TrimSuffix(keep, ".png")+".html", mustRead(t, page), 0o644)
	}

	near := func(c color.Color, hex uint32, tol int) bool {
		r, g, b, _ := c.RGBA()
		d := func(v uint32, w uint32) int { return int(v>>8) - int(w) }
		dr, dg, db := d(r, hex>>16&0xff), d(g, hex>>8&0xff), d(b, hex&0xff)
		return dr*dr+dg*dg+db*db <= tol*tol
	}
	// count of pixels in the cell's box near a colour.
	count := func(c box, hex uint32, tol int) (n, total int) {
		for y := int(c.Y) + 2; y < int(c.Y+c.H)-2; y++ {
			for x := int(c.X) + 2; x < int(c.X+c.W)-2; x++ {
				total++
				if near(img.At(x, y), hex, tol) {
					n++
				}
			}
		}
		return n, total
	}
	const blue, tan, hatchLight, hatchDark = 0x1f5fa8, 0xfaf3e6, 0xfafafa, 0xf0f0f0
	for concept, want := range map[string]string{"striped": "important", "dotted": "below", "zigzagged": "not significant"} {
		c, ok := cells[concept]
		if !ok {
			t.Errorf("no table row for %s in the rendered page", concept)
			continue
		}
		if c.W < 10 || c.H < 5 || c.Y+c.H > float64(img.Bounds().Dy()) || c.X+c.W > float64(img.Bounds().Dx()) {
			t.Errorf("%s verdict cell at %+v is not inside the %v screenshot", concept, c, img.Bounds())
			continue
		}
		if !strings.Contains(c.Text, want) {
			t.Errorf("%s verdict reads %q, want it to say %q", concept, c.Text, want)
		}
		blueN, total := count(c, blue, 40)
		tanN, _ := count(c, tan, 3)
		hatchN, _ := count(c, hatchLight, 2)
		darkN, _ := count(c, hatchDark, 2)
		t.Logf("%s: %d px, blue %d, tan %d, hatch %d+%d", concept, total, blueN, tanN, hatchN, darkN)
		switch concept {
		case "striped":
			if blueN < 15 {
				t.Errorf("important verdict of %s has %d important-blue pixels; it is not drawn as important", concept, blueN)
			}
		case "dotted":
			if tanN < total/3 {
				t.Errorf("below-baseline row %s: %d of %d pixels on the tan background", concept, tanN, total)
			}
			if blueN > 0 {
				t.Errorf("below-baseline row %s has %d important-blue pixels", concept, blueN)
			}
		case "zigzagged":
			if blueN > 0 {
				t.Errorf("not-significant row %s has %d important-blue pixels: drawn as important", concept, blueN)
			}
			if hatchN < total/10 || darkN < total/20 {
				t.Errorf("not-significant row %s: hatched background %d+%d of %d pixels", concept, hatchN, darkN, total)
			}
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// A calibrated result is rendered with what it was ranked among: a strip
// chart per target and layer, the sentence that says what "significant"
// means under that test, and, when R was too small, the resolution instead
// of a verdict that reads like a finding.
func TestCalibratedSectionShowsNullAndMeaning(t *testing.T) {
	null := []float64{0.41, 0.52, 0.47, 0.55, 0.6}
	mk := func(concept string, stat float64, sig stats.Significance) TCAVEntry {
		e := TCAVEntry{Target: "zebra", Concept: concept, Layer: "l", RandomSets: randomSets,
			Scores: []float64{stat, stat, stat, stat, stat}, Magnitudes: make([]float64, 5),
			RandomScores: null, CAVAccuracy: []float64{1, 1, 1, 1, 1}}
		e.Record(stats.Calibrated, 0.05, sig)
		e.Null = &Null{Statistic: stat, Centre: 0.5, Negatives: 5, Means: null}
		return e
	}
	r := &Results{TCAV: []TCAVEntry{
		mk("striped", 0.95, stats.Significance{PValue: 1.0 / 6, Direction: stats.Above, Resolution: "cannot reach alpha with 5 random sets", Needed: 19}),
		mk("dotted", 0.5, stats.Significance{PValue: 1, Direction: stats.Below, Needed: 19}),
	}}
	png, err := NullChart("zebra", "l", r.TCAV)
	if err != nil || png == nil {
		t.Fatalf("null chart: %v", err)
	}
	decodePNG(t, png)
	if png, _ := NullChart("zebra", "l", synthetic(t).TCAV[:3]); png != nil {
		t.Error("a null chart for t-test results, which have no null")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(`{"name": "x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	html := string(mustRead(t, filepath.Join(dir, HTMLFile)))
	for _, want := range []string{"Significant (calibrated test) means", "called significant with probability at most 0.05",
		"cannot reach alpha with 5 random sets (needs 19)", "null distribution for zebra at l"} {
		if !strings.Contains(html, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, PlotsDir, "null-zebra-l.png")); err != nil {
		t.Error(err)
	}
	res, err := ReadJSON(filepath.Join(dir, ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	if e := res.TCAV[1]; e.Test != stats.Calibrated || e.RandomSetCount != 5 || e.Resolution == "" || e.RandomSetsNeeded != 19 || e.Null == nil {
		t.Errorf("results.json entry lost the test's fields: %+v", e)
	}
	bad := r.TCAV[0]
	bad.Significant = true
	if err := (&Results{TCAV: []TCAVEntry{bad}}).Validate(); err == nil {
		t.Error("a significant entry with a resolution passes Validate")
	}
}

// Only a significant-above bar is drawn in the important blue: making the
// not-significant (or the below-baseline) concept important adds a whole
// bar of blue to the same chart, so it had none before. (The legend's
// swatch is in both.)
func TestNonSignificantBarIsNotDrawnAsImportant(t *testing.T) {
	r := synthetic(t).normalized()
	blueIn := func(entries []TCAVEntry) int {
		t.Helper()
		data, err := TCAVChart("zebra", "inception4c", entries)
		if err != nil {
			t.Fatal(err)
		}
		img := decodePNG(t, data)
		n := 0
		b := img.Bounds()
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				if c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA); c == present.ImportantColor {
					n++
				}
			}
		}
		return n
	}
	entries := slices.Clone(r.TCAV[:3])
	base := blueIn(entries)
	// The blue of the striped bar: what drawing it below the baseline
	// removes. Bars have one width, so a bar's blue is proportional to its
	// mean.
	si := slices.IndexFunc(entries, func(e TCAVEntry) bool { return e.Concept == "striped" })
	below := slices.Clone(entries)
	below[si].Direction = stats.Below
	perMean := float64(base-blueIn(below)) / entries[si].Mean
	if perMean < 10000 {
		t.Fatalf("the important striped bar has %.0f blue pixels per unit of mean", perMean)
	}
	for i, e := range entries {
		if i == si {
			continue
		}
		want := map[string]bool{"zigzagged": false, "dotted": true}[e.Concept]
		if e.Significant != want || (want && e.Direction != stats.Below) {
			t.Fatalf("fixture: %s is significant=%v %s", e.Concept, e.Significant, e.Direction)
		}
		alt := slices.Clone(entries)
		alt[i].Significant, alt[i].Direction = true, stats.Above
		added, bar := float64(blueIn(alt)-base), perMean*e.Mean
		t.Logf("%s: drawn as important adds %.0f blue pixels; a whole bar is %.0f", e.Concept, added, bar)
		if added < 0.8*bar {
			t.Errorf("%s: drawing it as important adds %.0f blue pixels, a whole bar %.0f: it was partly drawn in the important colour already", e.Concept, added, bar)
		}
	}
}
