package report

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cavforge/cavforge/pipeline/present"
	"github.com/cavforge/cavforge/pipeline/stats"
)

//go:embed report.html.tmpl
var pageTemplateText string

var pageTemplate = template.Must(template.New("report").Parse(pageTemplateText))

// Limits on what report.html embeds, so that a run with thousands of
// perturbed images still gives a page a browser opens.
const (
	maxImagesPerAttack = 4
	maxEmbeddedImage   = 8 << 20
)

type page struct {
	Title      string
	Convention string
	Manifest   []manifestField
	TCAV       []tcavSection
	Attacks    []attackSection
	Fronts     []frontSection
	Facets     []facetSection
	Audit      []auditRow
}

type manifestField struct{ Key, Value string }

type tcavSection struct {
	Target, Layer string
	Chart         template.URL
	Null          template.URL // the calibrated test's strip chart, if it decided
	Baseline      string
	Meaning       string // what "significant" means under the test used
	Rows          []tcavRow
}

type tcavRow struct {
	Concept, Score, Magnitude, Accuracy, Random, PValue, Direction, Verdict, Class string
	Sets                                                                           int
}

type attackSection struct {
	Title string
	Chart template.URL
	Rows  []attackRow
}

type frontSection struct {
	Title string
	Chart template.URL
}

type attackRow struct {
	Eps, Linf, L2, PSNR, Changed string
	LogitChange                  string
	Before, BeforeClass          string
	After, AfterClass            string
	ImagesDir, ImagesNote        string
	Images                       []embeddedImage
	Transfer                     []transferCell
}

// transferCell is an attack judged with one thing changed.
type transferCell struct {
	What, Before, After, AfterClass string
}

type facetSection struct {
	Target, Facet, Layers string
	Strengths             []string
	Clean, Attacked       []facetCell
	AttackImages, Cosine  string
}

// facetCell is one render and what it shows.
type facetCell struct {
	Image embeddedImage
	Note  string
}

// embeddedImage is a run-relative image as a data URI, or why it is not.
type embeddedImage struct {
	Path    string
	URI     template.URL
	Problem string
}

// verdictClass is the CSS class of a verdict's cell.
func verdictClass(v present.Verdict) string {
	switch v {
	case present.BelowBaseline:
		return "below"
	case present.NotSignificant:
		return "ns"
	}
	return "important"
}

func pngURI(data []byte) template.URL {
	return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(data))
}

// embedFile reads a run-relative image. Paths that leave the run directory
// are refused: results.json is data, and the report must not pull arbitrary
// files into a page that users share.
func embedFile(runDir, rel string) embeddedImage {
	img := embeddedImage{Path: rel}
	local := filepath.FromSlash(rel)
	if !filepath.IsLocal(local) {
		img.Problem = "not inside the run directory"
		return img
	}
	var mime string
	switch strings.ToLower(filepath.Ext(local)) {
	case ".png":
		mime = "image/png"
	case ".jpg", ".jpeg":
		mime = "image/jpeg"
	default:
		img.Problem = "not a PNG or JPEG"
		return img
	}
	full := filepath.Join(runDir, local)
	info, err := os.Stat(full)
	if err != nil {
		img.Problem = "missing"
		return img
	}
	if info.Size() > maxEmbeddedImage {
		img.Problem = fmt.Sprintf("too large to embed (%d bytes)", info.Size())
		return img
	}
	data, err := os.ReadFile(full)
	if err != nil {
		img.Problem = "unreadable"
		return img
	}
	img.URI = template.URL("data:" + mime + ";base64," + base64.StdEncoding.EncodeToString(data))
	return img
}

// embedDir embeds the first few images of a run-relative directory, in name
// order, and says how many there are.
func embedDir(runDir, rel string) ([]embeddedImage, string) {
	local := filepath.FromSlash(rel)
	if rel == "" || !filepath.IsLocal(local) {
		return nil, "image directory not inside the run directory"
	}
	entries, err := os.ReadDir(filepath.Join(runDir, local))
	if err != nil {
		return nil, "image directory missing"
	}
	var names []string
	for _, e := range entries {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".png", ".jpg", ".jpeg":
			if !e.IsDir() {
				names = append(names, e.Name())
			}
		}
	}
	slices.Sort(names)
	var imgs []embeddedImage
	for _, n := range names[:min(len(names), maxImagesPerAttack)] {
		imgs = append(imgs, embedFile(runDir, path.Join(filepath.ToSlash(local), n)))
	}
	note := fmt.Sprintf("%d images", len(names))
	if len(names) > maxImagesPerAttack {
		note = fmt.Sprintf("first %d of %d images", maxImagesPerAttack, len(names))
	}
	return imgs, note
}

// manifestFields flattens the top level of manifest.json for display:
// scalars as they are, nested values as compact JSON.
func manifestFields(m map[string]any) []manifestField {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var fields []manifestField
	for _, k := range keys {
		var v string
		switch x := m[k].(type) {
		case string:
			v = x
		case nil:
			v = "null"
		default:
			b, err := json.Marshal(x)
			if err != nil {
				v = fmt.Sprint(x)
			} else {
				v = string(b)
			}
		}
		fields = append(fields, manifestField{Key: k, Value: v})
	}
	return fields
}

func scoreText(s AttackScore) string {
	return fmt.Sprintf("%.3f ± %.3f, p=%s, %s", s.Mean, s.Std, formatP(s.PValue), present.VerdictOf(s.Significant, s.Direction).Text())
}

func tcavRows(entries []TCAVEntry) []tcavRow {
	rows := make([]tcavRow, len(entries))
	for i, e := range entries {
		v := present.VerdictOf(e.Significant, e.Direction)
		rows[i] = tcavRow{
			Concept:   e.Concept,
			Score:     fmt.Sprintf("%.3f ± %.3f", e.Mean, e.Std),
			Sets:      len(e.Scores),
			Magnitude: fmt.Sprintf("%.4g", stats.Mean(e.Magnitudes)),
			Accuracy:  fmt.Sprintf("%.3f", stats.Mean(e.CAVAccuracy)),
			Random:    fmt.Sprintf("%.3f", stats.Mean(e.RandomScores)),
			PValue:    fmt.Sprintf("%.3g", e.PValue),
			Direction: string(e.Direction),
			Verdict:   v.Text(),
			Class:     verdictClass(v),
		}
		if e.Resolution != "" {
			rows[i].Verdict = fmt.Sprintf("not significant: %s (needs %d)", e.Resolution, e.RandomSetsNeeded)
		}
	}
	return rows
}

func writePage(w io.Writer, p *page) error {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, p); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// facetSectionOf lays a facet entry out as a table: one column per
// strength, a row for the clean and one for the attacked facet.
func facetSectionOf(runDir string, f FacetEntry) facetSection {
	sec := facetSection{Target: f.Target, Facet: f.Facet, Layers: strings.Join(f.FacetLayers, ", "), AttackImages: f.AttackImages}
	for _, v := range f.Strengths {
		sec.Strengths = append(sec.Strengths, fmt.Sprintf("%.3g", v))
	}
	var cos []string
	for _, c := range f.DirectionCosine {
		cos = append(cos, fmt.Sprintf("%.3f", c))
	}
	sec.Cosine = strings.Join(cos, ", ")
	cells := func(paths []string, proj, target []float64) []facetCell {
		var out []facetCell
		for i, p := range paths {
			c := facetCell{Image: embedFile(runDir, p)}
			if i < len(proj) && i < len(target) {
				c.Note = fmt.Sprintf("facet %.3g, target %.3g", proj[i], target[i])
			}
			out = append(out, c)
		}
		return out
	}
	sec.Clean = cells(f.Clean, f.CleanProjection, f.CleanTarget)
	sec.Attacked = cells(f.Attacked, f.AttackedProjection, f.AttackedTarget)
	return sec
}
