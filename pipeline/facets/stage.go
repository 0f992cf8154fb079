package facets

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/progress"
)

// Spec is one faceted feature visualization, resolved from a facets entry
// of the config: the target through the facet fitted on the clean concept
// set and, when Poisoned is set, through the facet fitted on the poisoned
// set, from the same start and the same transforms.
type Spec struct {
	Name   string    // the target as results.json names it
	Target Objective // its logit or channel
	Facet  activations.Set
	// Poisoned is the poisoned concept set (compare_attack), PoisonedDir
	// how results.json names its folder.
	Poisoned    *activations.Set
	PoisonedDir string
	Layers      []string
	Strength    [2]float64
	Batch, Size int
	Steps       int
	LR          float64
	Seed        uint64
	// Randoms are the sets each facet direction's CAVs are fitted against.
	Randoms   []activations.Set
	Method    cav.Method
	Device    string
	InputSize [2]int
	Cast      torch.Autocast
	Progress  *progress.Bars // may be nil
}

// Extractor is what fitting facet directions needs of the activations.
type Extractor interface {
	Extract(set activations.Set, layers []string) (map[string]*activations.Activations, error)
}

// Entry lists run-relative paths of faceted feature visualizations,
// rendered with the facet fitted on the clean and on the attacked concept set
// (image i at Strengths[i]), and what they show: each render's projection on
// the clean facet direction (summed over the facet layers) and its target
// value (logit or channel mean).
type Entry struct {
	Target      string    `json:"target"`
	Facet       string    `json:"facet"`
	FacetLayers []string  `json:"facet_layers,omitempty"`
	Strengths   []float64 `json:"strengths,omitempty"`
	Clean       []string  `json:"clean"`
	Attacked    []string  `json:"attacked"`
	Sheet       string    `json:"sheet,omitempty"` // rows clean, attacked; columns strengths
	// AttackImages is the poisoned concept set the attacked facet was fitted on.
	AttackImages string `json:"attack_images,omitempty"`
	// DirectionCosine is, per facet layer, the cosine between the clean and
	// the attacked facet directions.
	DirectionCosine    []float64 `json:"direction_cosine,omitempty"`
	CleanProjection    []float64 `json:"clean_projection,omitempty"`
	AttackedProjection []float64 `json:"attacked_projection,omitempty"`
	CleanTarget        []float64 `json:"clean_target,omitempty"`
	AttackedTarget     []float64 `json:"attacked_target,omitempty"`
}

// Run is the facets stage for one spec: it writes the renders and their
// contact sheet under runDir/facets and returns what they show.
func Run(spec Spec, net Network, ex Extractor, f *cav.Fitter, runDir string) (*Entry, error) {
	clean, err := directions(spec, ex, f, spec.Facet)
	if err != nil {
		return nil, err
	}
	name := safeName(spec.Name) + "-" + safeName(spec.Facet.Name)
	if err := os.MkdirAll(filepath.Join(runDir, "facets"), 0o755); err != nil {
		return nil, err
	}
	entry := &Entry{Target: spec.Name, Facet: spec.Facet.Name, FacetLayers: spec.Layers,
		Strengths: Strengths(spec.Strength[0], spec.Strength[1], spec.Batch)}

	var renders []*Result
	render := func(kind string, dirs []Direction) ([]string, *Measure, error) {
		res, err := renderFacet(spec, net, dirs, entry.Strengths)
		if err != nil {
			return nil, nil, fmt.Errorf("%s facet: %w", kind, err)
		}
		renders = append(renders, res)
		// Measured along the clean facet: how much of the facet each picture shows.
		m, err := MeasureImages(net, res, spec.Target, clean, spec.InputSize)
		if err != nil {
			return nil, nil, err
		}
		var paths []string
		for i := range res.N {
			rel := fmt.Sprintf("facets/%s-%s-%d.png", name, kind, i)
			if err := images.WritePNG8(filepath.Join(runDir, filepath.FromSlash(rel)), res.Image(i)); err != nil {
				return nil, nil, err
			}
			paths = append(paths, rel)
		}
		return paths, m, nil
	}
	var cleanM, attackedM *Measure
	if entry.Clean, cleanM, err = render("clean", clean); err != nil {
		return nil, err
	}
	entry.CleanProjection, entry.CleanTarget = sumProjections(cleanM), cleanM.Target
	if spec.Poisoned != nil {
		poisoned, err := directions(spec, ex, f, *spec.Poisoned)
		if err != nil {
			return nil, err
		}
		entry.AttackImages = spec.PoisonedDir + "/"
		for i := range clean {
			entry.DirectionCosine = append(entry.DirectionCosine, cosine(clean[i].Weight, poisoned[i].Weight))
		}
		if entry.Attacked, attackedM, err = render("attacked", poisoned); err != nil {
			return nil, err
		}
		entry.AttackedProjection, entry.AttackedTarget = sumProjections(attackedM), attackedM.Target
	}
	var rows [][]images.Image
	for _, r := range renders {
		var row []images.Image
		for i := range r.N {
			row = append(row, r.Image(i))
		}
		rows = append(rows, row)
	}
	sheet, err := Sheet(rows, 2)
	if err != nil {
		return nil, err
	}
	entry.Sheet = "facets/" + name + "-sheet.png"
	if err := images.WritePNG8(filepath.Join(runDir, filepath.FromSlash(entry.Sheet)), sheet); err != nil {
		return nil, err
	}
	return entry, nil
}

// directions fits the facet direction of concept at each layer: its CAVs
// against every random set (cached like TCAV's), averaged.
func directions(spec Spec, ex Extractor, f *cav.Fitter, concept activations.Set) ([]Direction, error) {
	acts, err := ex.Extract(concept, spec.Layers)
	if err != nil {
		return nil, err
	}
	randoms := map[string][]*activations.Activations{} // layer → every random set
	for _, r := range spec.Randoms {
		racts, err := ex.Extract(r, spec.Layers)
		if err != nil {
			return nil, err
		}
		for _, l := range spec.Layers {
			randoms[l] = append(randoms[l], racts[l])
		}
	}
	var dirs []Direction
	for _, l := range spec.Layers {
		cavs, err := f.Against([]*activations.Activations{acts[l]}, randoms[l], spec.Method)
		if err != nil {
			return nil, err
		}
		d, err := MeanDirection(l, acts[l].Shape, cavs[0])
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, d)
	}
	return dirs, nil
}

// renderFacet renders the target through the facet directions, one
// strength per image, every image from the same start.
func renderFacet(spec Spec, net Network, dirs []Direction, strengths []float64) (*Result, error) {
	seeds := make([]uint64, spec.Batch)
	for i := range seeds {
		seeds[i] = spec.Seed
	}
	p, err := NewFourier(spec.Device, spec.Size, spec.Size, 0.01, seeds...)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	term, err := NewFacet(spec.Device, spec.Target, dirs, strengths, 0)
	if err != nil {
		return nil, err
	}
	defer term.Close()
	return Render(net, p, Sum(spec.Target, term), Settings{
		Steps: spec.Steps, LR: spec.LR, Seed: spec.Seed, Transforms: Standard(),
		InputSize: spec.InputSize, Cast: spec.Cast,
		Progress: spec.Progress.New(fmt.Sprintf("facet %s (%d steps)", spec.Facet.Name, spec.Steps), spec.Steps)})
}

// safeName keeps a name usable as part of a file name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

func sumProjections(m *Measure) []float64 {
	out := make([]float64, len(m.Target))
	for _, p := range m.Projections {
		for i, v := range p {
			out[i] += v
		}
	}
	return out
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

// ProjectionSummary says how much of the clean facet the renders show.
func (e *Entry) ProjectionSummary() string {
	f := func(v []float64) string {
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = strconv.FormatFloat(x, 'f', 2, 64)
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	s := "clean " + f(e.CleanProjection)
	if e.AttackedProjection != nil {
		s += ", attacked " + f(e.AttackedProjection)
	}
	return s
}
