package report

import (
	"cmp"
	"fmt"
	"image/color"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/cavforge/cavforge/pipeline/present"
)

var colNull = color.NRGBA{R: 0x70, G: 0x70, B: 0x70, A: 0xa0}

// NullChart draws the calibrated test of one target and layer: per concept
// a strip of its null distribution (each random set's mean TCAV score,
// scored as if it were a concept) as grey dots, and the concept's own
// statistic as a large marker styled by its verdict, labelled with its
// p-value (its rank among them). It returns nil when no entry has a null.
func NullChart(target, layer string, entries []TCAVEntry) ([]byte, error) {
	entries = slices.DeleteFunc(slices.Clone(entries), func(e TCAVEntry) bool { return e.Null == nil })
	if len(entries) == 0 {
		return nil, nil
	}
	slices.SortStableFunc(entries, func(a, b TCAVEntry) int { return cmp.Compare(a.Concept, b.Concept) })

	p := plot.New()
	p.Title.Text = fmt.Sprintf("calibrated test  target: %s   layer: %s", target, layer)
	p.Y.Label.Text = "mean TCAV score"
	names := make([]string, len(entries))
	var dots plotter.XYs
	var centres []float64
	lo, hi := 0.0, 1.0
	for i, e := range entries {
		names[i] = e.Concept
		means := slices.Clone(e.Null.Means)
		slices.Sort(means)
		for j, m := range means {
			// Spread the strip sideways in a fixed pattern, so that equal
			// means stay visible and the chart is the same every time.
			off := math.Mod(float64(j)*0.618034, 1) - 0.5
			dots = append(dots, plotter.XY{X: float64(i) + 0.5*off, Y: m})
			lo, hi = math.Min(lo, m), math.Max(hi, m)
		}
		centres = append(centres, e.Null.Centre)
	}
	p.NominalX(names...)
	p.Y.Min, p.Y.Max = math.Max(0, lo-0.05), math.Min(1.15, hi+0.15)
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil
	p.Add(grid)

	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true
	if len(dots) > 0 {
		s, err := plotter.NewScatter(dots)
		if err != nil {
			return nil, err
		}
		s.GlyphStyle = draw.GlyphStyle{Color: colNull, Radius: vg.Points(1.6), Shape: draw.CircleGlyph{}}
		p.Add(s)
		legend.Add(fmt.Sprintf("random sets as concepts (%d each)", len(entries[0].Null.Means)), s)
	}
	c := &statMarks{entries: entries, centres: centres}
	p.Add(c)
	legend.Add("concept, significant above", present.Swatch{Verdict: present.Important})
	legend.Add("concept, significant below", present.Swatch{Verdict: present.BelowBaseline})
	legend.Add("concept, not significant", present.Swatch{Verdict: present.NotSignificant})

	width := vg.Length(math.Max(4.5, 0.9*float64(len(entries)))) * vg.Inch
	return present.RenderPNG(p, &legend, width, 4*vg.Inch)
}

// statMarks draws, per concept, a short line at the centre of its null and
// its statistic as a large marker with its p-value.
type statMarks struct {
	entries []TCAVEntry
	centres []float64
}

func (m *statMarks) Plot(c draw.Canvas, plt *plot.Plot) {
	trX, trY := plt.Transforms(&c)
	label := plt.X.Tick.Label
	label.XAlign, label.YAlign = text.XLeft, text.YCenter
	label.Font.Size = vg.Points(8)
	for i, e := range m.entries {
		x := float64(i)
		c.StrokeLine2(draw.LineStyle{Color: colBaseline, Width: vg.Points(1)},
			trX(x-0.3), trY(m.centres[i]), trX(x+0.3), trY(m.centres[i]))
		v := present.VerdictOf(e.Significant, e.Direction)
		fill, edge := v.Colors()
		at := vg.Point{X: trX(x), Y: trY(e.Null.Statistic)}
		c.DrawGlyph(draw.GlyphStyle{Color: fill, Radius: vg.Points(5), Shape: draw.CircleGlyph{}}, at)
		c.DrawGlyph(draw.GlyphStyle{Color: edge, Radius: vg.Points(5), Shape: draw.RingGlyph{}}, at)
		text := "p=" + formatP(e.PValue)
		if e.Resolution != "" {
			text += " (too few sets)"
		}
		label.Color = edge
		c.FillText(label, vg.Point{X: at.X + vg.Points(8), Y: at.Y}, text)
	}
}

func (m *statMarks) DataRange() (xmin, xmax, ymin, ymax float64) {
	ymin, ymax = math.Inf(1), math.Inf(-1)
	for _, e := range m.entries {
		ymin, ymax = math.Min(ymin, e.Null.Statistic), math.Max(ymax, e.Null.Statistic)
	}
	return -0.5, float64(len(m.entries)) - 0.5, ymin, ymax
}

// Meaning says, in one sentence, what "significant" means under the test
// that decided entries (one target and layer).
func Meaning(e TCAVEntry) string {
	switch e.Test {
	case "calibrated":
		against := "all the other sets"
		if e.Null != nil && e.Null.Negatives < e.RandomSetCount {
			against = fmt.Sprintf("%d of the others", e.Null.Negatives)
		}
		s := fmt.Sprintf("Significant (calibrated test) means the concept's mean TCAV score is among the most extreme %.3g%% of the scores of it and the %d random sets, each set scored as if it were the concept against %s, so a concept set that is just more random images is called significant with probability at most %.3g.",
			100*e.Threshold, e.RandomSetCount, against, e.Threshold)
		if e.Resolution != "" {
			s += fmt.Sprintf(" Here it %s: nothing can be significant, it needs %d.", e.Resolution, e.RandomSetsNeeded)
		}
		return s
	case "two-sample":
		return fmt.Sprintf("Significant (two-sample t-test, the reference implementation's) means the concept's %d scores differ from the random-vs-random scores by Student's t-test at %.3g, which treats scores that share one concept set as independent: on null concepts it fires far more often than %.3g (at 0.05 on the demo model: 13%% of them with 10 random sets, 34%% with 30).",
			e.RandomSetCount, e.Threshold, e.Threshold)
	case "one-sample":
		return fmt.Sprintf("Significant (one-sample t-test, the paper's) means the concept's %d scores differ from 0.5 by Student's t-test at %.3g, which treats scores that share one concept set as independent: on null concepts it fires far more often than %.3g (at 0.05 on the demo model: 35%% of them with 10 random sets).",
			e.RandomSetCount, e.Threshold, e.Threshold)
	}
	return ""
}
