package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/cavforge/cavforge/pipeline/atomicfile"
	"github.com/cavforge/cavforge/pipeline/present"
	"github.com/cavforge/cavforge/pipeline/stats"
)

// Files in a run directory that this package writes or reads.
const (
	ResultsFile  = "results.json"
	ManifestFile = "manifest.json"
	TCAVCSVFile  = "tcav.csv"
	HTMLFile     = "report.html"
	PlotsDir     = "plots"
)

// Write writes results.json, tcav.csv, the charts and report.html into
// runDir. Every file is written atomically.
func Write(runDir string, r *Results) error {
	if err := WriteJSON(filepath.Join(runDir, ResultsFile), r); err != nil {
		return err
	}
	return render(runDir, r)
}

// Build rebuilds tcav.csv, the charts under plots/ and report.html from
// runDir/results.json, and shows runDir/manifest.json when there is one
// (cavforge report RUN_DIR).
func Build(runDir string) error {
	r, err := ReadJSON(filepath.Join(runDir, ResultsFile))
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return render(runDir, r)
}

func readManifest(runDir string) (map[string]any, error) {
	data, err := os.ReadFile(filepath.Join(runDir, ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(runDir, ManifestFile), err)
	}
	return m, nil
}

func render(runDir string, r *Results) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("report: %s: %w", filepath.Join(runDir, ResultsFile), err)
	}
	r = r.normalized()
	manifest, err := readManifest(runDir)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := WriteTCAVCSV(filepath.Join(runDir, TCAVCSVFile), r.TCAV); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(runDir, PlotsDir), 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}

	pg := &page{Convention: r.Convention, Manifest: manifestFields(manifest)}
	pg.Title = "cavforge report: " + filepath.Base(filepath.Clean(runDir))
	if name, ok := manifest["name"].(string); ok && name != "" {
		pg.Title = "cavforge report: " + name
	}
	names := chartNames{}

	for _, group := range groupBy(r.TCAV, func(e TCAVEntry) string { return e.Target + "\x00" + e.Layer }) {
		target, layer := group[0].Target, group[0].Layer
		png, err := TCAVChart(target, layer, group)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if err := names.write(runDir, png, "tcav", target, layer); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		sec := tcavSection{Target: target, Layer: layer, Chart: pngURI(png), Rows: tcavRows(group), Meaning: Meaning(group[0])}
		null, err := NullChart(target, layer, group)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if null != nil {
			if err := names.write(runDir, null, "null", target, layer); err != nil {
				return fmt.Errorf("report: %w", err)
			}
			sec.Null = pngURI(null)
		}
		if b, ok := tcavBaseline(group); ok {
			sec.Baseline = fmt.Sprintf("Random baseline (random-vs-random scores): %.3f ± %.3f.", b.mean, b.std)
		}
		pg.TCAV = append(pg.TCAV, sec)
	}

	for _, group := range groupBy(r.Attack, func(a AttackEntry) string {
		return strings.Join([]string{a.Concept, a.Target, a.Layer, a.Goal, a.Objective, a.Norm}, "\x00")
	}) {
		settings := map[string]bool{}
		for _, e := range group {
			settings[e.StealthLabel()] = true
		}
		if len(settings) < 2 {
			continue
		}
		png, err := FrontChart(group)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		a := group[0]
		if err := names.write(runDir, png, "front", a.Concept, a.Target, a.Layer, a.Goal, a.Objective, a.Norm); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		pg.Fronts = append(pg.Fronts, frontSection{Title: fmt.Sprintf("%s %q for %q at %s, %s budget: stealth off and on", a.Goal, a.Concept, a.Target, a.Layer, a.Norm), Chart: pngURI(png)})
	}

	for _, group := range groupBy(r.Attack, func(a AttackEntry) string {
		return strings.Join([]string{a.Concept, a.Target, a.Layer, a.Goal, a.Objective, a.Norm, a.StealthLabel()}, "\x00")
	}) {
		a := group[0]
		var fallback *float64
		for _, e := range r.TCAV {
			if e.Target == a.Target && e.Concept == a.Concept && e.Layer == a.Layer && len(e.RandomScores) > 0 {
				m := stats.Mean(e.RandomScores)
				fallback = &m
				break
			}
		}
		png, err := AttackChart(group, fallback)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		nameParts := []string{"attack", a.Concept, a.Target, a.Layer, a.Goal, a.Objective, a.Norm}
		if a.StealthWeight > 0 {
			nameParts = append(nameParts, "stealth-"+a.StealthForm+strconv.FormatFloat(a.StealthWeight, 'g', -1, 64))
		}
		if err := names.write(runDir, png, nameParts...); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		title := fmt.Sprintf("%s concept %q for target %q at layer %s, %s budget", a.Goal, a.Concept, a.Target, a.Layer, a.Norm)
		if a.Objective != "" {
			title += ", objective " + a.Objective
		}
		if a.StealthWeight > 0 {
			title += ", stealth " + a.StealthLabel()
		}
		sec := attackSection{Title: title, Chart: pngURI(png)}
		for _, e := range group {
			imgs, note := embedDir(runDir, e.Images)
			var transfer []transferCell
			for _, tr := range e.Transfer {
				transfer = append(transfer, transferCell{What: tr.Kind + ": " + tr.Setting,
					Before: scoreText(tr.Before), After: scoreText(tr.After),
					AfterClass: verdictClass(present.VerdictOf(tr.After.Significant, tr.After.Direction))})
			}
			sec.Rows = append(sec.Rows, attackRow{
				Transfer:    transfer,
				Eps:         formatFloat(e.Eps),
				Before:      scoreText(e.Before),
				BeforeClass: verdictClass(present.VerdictOf(e.Before.Significant, e.Before.Direction)),
				After:       scoreText(e.After),
				AfterClass:  verdictClass(present.VerdictOf(e.After.Significant, e.After.Direction)),
				Linf:        fmt.Sprintf("%.4g", e.Linf),
				L2:          fmt.Sprintf("%.4g", e.L2Mean),
				PSNR:        fmt.Sprintf("%.1f", e.PSNRMean),
				Changed:     fmt.Sprintf("%.1f%%", 100*e.ChangedPrediction),
				LogitChange: fmt.Sprintf("%+.3g", e.ClassLogitChange),
				ImagesDir:   e.Images,
				Images:      imgs,
				ImagesNote:  note,
			})
		}
		pg.Attacks = append(pg.Attacks, sec)
	}

	for _, f := range r.Facets {
		pg.Facets = append(pg.Facets, facetSectionOf(runDir, f))
	}
	pg.Audit = auditRows(r.Audit)

	err = atomicfile.WriteWith(filepath.Join(runDir, HTMLFile), func(w io.Writer) error { return writePage(w, pg) })
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// groupBy splits sorted entries into runs with equal keys, keeping order.
func groupBy[T any](xs []T, key func(T) string) [][]T {
	var groups [][]T
	for i, x := range xs {
		if i > 0 && key(xs[i-1]) == key(x) {
			groups[len(groups)-1] = append(groups[len(groups)-1], x)
			continue
		}
		groups = append(groups, []T{x})
	}
	return groups
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// chartNames gives each chart a readable file name under plots/, unique
// even when two names differ only in characters a file name cannot hold.
type chartNames map[string]bool

func (n chartNames) write(runDir string, png []byte, parts ...string) error {
	var kept []string
	for _, p := range parts {
		if p = strings.Trim(unsafeFileChars.ReplaceAllString(p, "_"), "._"); p != "" {
			kept = append(kept, p)
		}
	}
	base := strings.Join(kept, "-")
	name := base + ".png"
	for i := 2; n[name]; i++ {
		name = fmt.Sprintf("%s-%d.png", base, i)
	}
	n[name] = true
	return atomicfile.Write(filepath.Join(runDir, PlotsDir, name), png)
}
