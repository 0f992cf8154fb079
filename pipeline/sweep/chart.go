package sweep

import (
	"fmt"
	"image/color"
	"math"
	"regexp"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/cavforge/cavforge/pipeline/present"
	"github.com/cavforge/cavforge/pipeline/stats"
)

// Chart is one PNG chart of a collection.
type Chart struct {
	Name string // file name under plots/
	PNG  []byte
}

// Charts draws, for each grid key, the mean TCAV score of every
// target/concept against the key's values, averaged over the other keys
// (and layers), with ±std bars over the tasks and entries averaged, and the
// random-vs-random baseline dashed. There is no chart when no task has TCAV
// results.
func (c *Collection) Charts() ([]Chart, error) {
	var charts []Chart
	for k, axis := range c.grid {
		png, ok, err := c.chartFor(k, axis)
		if err != nil {
			return nil, fmt.Errorf("chart for %s: %w", axis.Key, err)
		}
		if ok {
			charts = append(charts, Chart{Name: "tcav-vs-" + fileSafe(axis.Key) + ".png", PNG: png})
		}
	}
	return charts, nil
}

type pointKey struct {
	series string
	x      int
}

func (c *Collection) chartFor(k int, axis Axis) ([]byte, bool, error) {
	scores := map[pointKey][]float64{}
	baseline := map[int][]float64{}
	var series []string
	for _, r := range c.Rows {
		if r.TCAV == nil {
			continue
		}
		x := slices.IndexFunc(axis.Values, func(v Value) bool { return v.Text == r.texts[k] })
		if x < 0 {
			continue
		}
		name := r.TCAV.Target + ": " + r.TCAV.Concept
		if !slices.Contains(series, name) {
			series = append(series, name)
		}
		pk := pointKey{name, x}
		scores[pk] = append(scores[pk], r.TCAV.Mean)
		if len(r.TCAV.RandomScores) > 0 {
			baseline[x] = append(baseline[x], stats.Mean(r.TCAV.RandomScores))
		}
	}
	if len(series) == 0 {
		return nil, false, nil
	}
	slices.Sort(series)

	p := plot.New()
	p.Title.Text = "mean TCAV score vs " + axis.Key
	p.X.Label.Text = axis.Key
	p.Y.Label.Text = "TCAV score (mean ± std over the other keys)"
	labels := make([]string, len(axis.Values))
	for i, v := range axis.Values {
		labels[i] = v.Text
	}
	p.NominalX(labels...)
	p.X.Min, p.X.Max = -0.5, float64(len(axis.Values))-0.5
	p.Y.Min, p.Y.Max = 0, 1.05
	p.Add(plotter.NewGrid())
	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true

	if pts := meanPoints(len(axis.Values), 0, func(x int) []float64 { return baseline[x] }); len(pts.XYs) > 0 {
		l, err := plotter.NewLine(pts.XYs)
		if err != nil {
			return nil, false, err
		}
		l.Color = color.Gray{Y: 0x80}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		legend.Add("random baseline", l)
	}
	width := 0.3 // spread of the series around each x, so error bars do not overlap
	for i, name := range series {
		off := 0.0
		if len(series) > 1 {
			off = width * (float64(i)/float64(len(series)-1) - 0.5)
		}
		pts := meanPoints(len(axis.Values), off, func(x int) []float64 { return scores[pointKey{name, x}] })
		l, s, err := plotter.NewLinePoints(pts.XYs)
		if err != nil {
			return nil, false, err
		}
		l.Color = plotutil.Color(i)
		s.Color = plotutil.Color(i)
		s.Shape = plotutil.Shape(i)
		eb, err := plotter.NewYErrorBars(pts)
		if err != nil {
			return nil, false, err
		}
		eb.Color = plotutil.Color(i)
		p.Add(l, s, eb)
		legend.Add(name, l, s)
	}
	w := vg.Length(math.Max(4, 1.1*float64(len(axis.Values))+1.5)) * vg.Inch
	png, err := present.RenderPNG(p, &legend, w, 4*vg.Inch)
	return png, err == nil, err
}

// errPoints are points with symmetric y errors, for plotter.NewYErrorBars.
type errPoints struct {
	plotter.XYs
	plotter.YErrors
}

// meanPoints averages the values at each x (x+off on the axis), skipping
// the x's without values.
func meanPoints(n int, off float64, values func(x int) []float64) errPoints {
	var pts errPoints
	for x := range n {
		vs := values(x)
		if len(vs) == 0 {
			continue
		}
		sd := 0.0
		if len(vs) > 1 {
			sd = stats.StdDev(vs)
		}
		pts.XYs = append(pts.XYs, plotter.XY{X: float64(x) + off, Y: stats.Mean(vs)})
		pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{sd, sd})
	}
	return pts
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func fileSafe(s string) string { return unsafeChars.ReplaceAllString(s, "_") }
