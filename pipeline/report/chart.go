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
	"github.com/cavforge/cavforge/pipeline/stats"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

var (
	colBaseline = color.NRGBA{R: 0xc0, G: 0x20, B: 0x20, A: 0xff}
	colBand     = color.NRGBA{R: 0xc0, G: 0x20, B: 0x20, A: 0x30}
	colAfter    = color.NRGBA{R: 0xd0, G: 0x60, B: 0x10, A: 0xff}
)

// baseline is the random-vs-random score distribution a result is tested
// against.
type baseline struct{ mean, std float64 }

// tcavBaseline pools the random-vs-random scores of entries. They are
// normally one list shared by every concept of a target and layer, so equal
// lists are counted once.
func tcavBaseline(entries []TCAVEntry) (baseline, bool) {
	var seen [][]float64
	var pooled []float64
	for _, e := range entries {
		if len(e.RandomScores) == 0 || slices.ContainsFunc(seen, func(s []float64) bool { return slices.Equal(s, e.RandomScores) }) {
			continue
		}
		seen = append(seen, e.RandomScores)
		pooled = append(pooled, e.RandomScores...)
	}
	if len(pooled) == 0 {
		return baseline{}, false
	}
	return baseline{mean: stats.Mean(pooled), std: tcav.SampleStd(pooled)}, true
}

// TCAVChart draws one target and layer: per concept a bar of the mean score
// with a ±std error bar, the random baseline as a line with a ±std band.
// Significant concepts above the baseline are solid blue; significant ones
// below it are pale and labelled "below"; non-significant ones are hatched
// grey and labelled "n.s.". The result is a PNG.
func TCAVChart(target, layer string, entries []TCAVEntry) ([]byte, error) {
	if len(entries) == 0 {
		return nil, fmt.Errorf("tcav chart %s/%s: no entries", target, layer)
	}
	entries = slices.Clone(entries)
	slices.SortStableFunc(entries, func(a, b TCAVEntry) int { return cmp.Compare(a.Concept, b.Concept) })

	p := plot.New()
	p.Title.Text = fmt.Sprintf("TCAV  target: %s   layer: %s", target, layer)
	p.Y.Label.Text = "TCAV score (mean ± std over random sets)"
	bars := &conceptBars{width: 0.6}
	names := make([]string, len(entries))
	top := 1.0
	for i, e := range entries {
		names[i] = e.Concept
		v := present.VerdictOf(e.Significant, e.Direction)
		label := v.Mark()
		if v == present.Important {
			label = "p=" + formatP(e.PValue)
		}
		bars.bars = append(bars.bars, bar{mean: e.Mean, std: e.Std, verdict: v, label: label})
		top = math.Max(top, e.Mean+e.Std)
	}
	p.NominalX(names...)
	if len(names) > 6 {
		p.X.Tick.Label.Rotation = math.Pi / 6
		p.X.Tick.Label.XAlign = draw.XRight
		p.X.Tick.Label.YAlign = draw.YCenter
	}
	p.Y.Min, p.Y.Max = 0, top+0.12
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil // concepts are categories
	p.Add(grid)

	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true
	if b, ok := tcavBaseline(entries); ok {
		band := &hBand{lo: b.mean - b.std, hi: b.mean + b.std, line: b.mean, xmin: -0.5, xmax: float64(len(entries)) - 0.5}
		p.Add(band)
		legend.Add(fmt.Sprintf("random baseline %.2f ± %.2f", b.mean, b.std), band)
	}
	p.Add(bars)
	legend.Add("significant, above baseline", present.Swatch{Verdict: present.Important})
	legend.Add("significant, below baseline", present.Swatch{Verdict: present.BelowBaseline})
	legend.Add("not significant (n.s.)", present.Swatch{Verdict: present.NotSignificant})

	width := vg.Length(math.Max(4.5, 0.9*float64(len(entries)))) * vg.Inch
	return present.RenderPNG(p, &legend, width, 4*vg.Inch)
}

// AttackChart draws one attack (one concept, target, layer, goal, objective
// and norm) over its budgets: the concept's TCAV score before and after the
// attack against eps, with ±std error bars, filled markers where the result
// is significant and "n.s."/"below" labels, and the random baseline.
// baselineFallback is used where an entry does not record its own.
func AttackChart(entries []AttackEntry, baselineFallback *float64) ([]byte, error) {
	if len(entries) == 0 {
		return nil, fmt.Errorf("attack chart: no entries")
	}
	entries = slices.Clone(entries)
	slices.SortStableFunc(entries, func(a, b AttackEntry) int { return cmp.Compare(a.Eps, b.Eps) })
	first := entries[0]

	p := plot.New()
	p.Title.Text = fmt.Sprintf("Attack: %s %q for %q at %s (%s)", first.Goal, first.Concept, first.Target, first.Layer, first.Norm)
	if first.Objective != "" {
		p.Title.Text += ", " + first.Objective
	}
	p.X.Label.Text = fmt.Sprintf("budget eps (%s, pixel scale [0,1])", first.Norm)
	p.Y.Label.Text = "TCAV score"
	p.Add(plotter.NewGrid())
	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true

	maxEps, top := 0.0, 1.0
	for _, e := range entries {
		maxEps = math.Max(maxEps, e.Eps)
		top = math.Max(top, math.Max(e.Before.Mean+e.Before.Std, e.After.Mean+e.After.Std))
	}
	if maxEps <= 0 {
		maxEps = 1
	}
	p.X.Min, p.X.Max = 0, maxEps*1.15
	p.Y.Min, p.Y.Max = 0, top+0.12

	// Random baselines, drawn first so the scores sit on top.
	for _, s := range []struct {
		name  string
		score func(AttackEntry) AttackScore
		dash  []vg.Length
	}{
		{"random baseline (before)", func(e AttackEntry) AttackScore { return e.Before }, []vg.Length{vg.Points(6), vg.Points(3)}},
		{"random baseline (after, held-out sets)", func(e AttackEntry) AttackScore { return e.After }, []vg.Length{vg.Points(2), vg.Points(2)}},
	} {
		var pts plotter.XYs
		for _, e := range entries {
			if rm := s.score(e).RandomMean; rm != nil {
				pts = append(pts, plotter.XY{X: e.Eps, Y: *rm})
			} else if baselineFallback != nil {
				pts = append(pts, plotter.XY{X: e.Eps, Y: *baselineFallback})
			}
		}
		if len(pts) == 0 {
			continue
		}
		// A flat baseline spans the whole axis.
		if allEqualY(pts) {
			pts = plotter.XYs{{X: 0, Y: pts[0].Y}, {X: p.X.Max, Y: pts[0].Y}}
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		line.Color, line.Width, line.Dashes = colBaseline, vg.Points(1.2), s.dash
		p.Add(line)
		legend.Add(s.name, line)
	}

	for _, s := range []struct {
		name           string
		score          func(AttackEntry) AttackScore
		color          color.Color
		filled, hollow draw.GlyphDrawer
	}{
		{"before attack", func(e AttackEntry) AttackScore { return e.Before }, present.ImportantColor, draw.CircleGlyph{}, draw.RingGlyph{}},
		{"after attack", func(e AttackEntry) AttackScore { return e.After }, colAfter, draw.BoxGlyph{}, draw.SquareGlyph{}},
	} {
		pts := make(scoredPoints, len(entries))
		for i, e := range entries {
			sc := s.score(e)
			pts[i] = scoredPoint{x: e.Eps, y: sc.Mean, std: sc.Std, verdict: present.VerdictOf(sc.Significant, sc.Direction)}
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		line.Color, line.Width = s.color, vg.Points(1.5)
		errBars, err := plotter.NewYErrorBars(pts)
		if err != nil {
			return nil, err
		}
		errBars.Color = s.color
		markers := &verdictMarkers{pts: pts, color: s.color, filled: s.filled, hollow: s.hollow}
		p.Add(line, errBars, markers)
		legend.Add(s.name, line, markers)
	}
	neutral := color.NRGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff}
	legend.Add("significant", glyphThumb{draw.GlyphStyle{Color: neutral, Radius: vg.Points(4), Shape: draw.CircleGlyph{}}})
	legend.Add("not significant (n.s.)", glyphThumb{draw.GlyphStyle{Color: neutral, Radius: vg.Points(4), Shape: draw.RingGlyph{}}})

	width := vg.Length(math.Max(4.5, 1.2*float64(len(entries)))) * vg.Inch
	return present.RenderPNG(p, &legend, width, 4*vg.Inch)
}

func allEqualY(pts plotter.XYs) bool {
	for _, pt := range pts {
		if pt.Y != pts[0].Y {
			return false
		}
	}
	return true
}

type bar struct {
	mean, std float64
	verdict   present.Verdict
	label     string
}

// conceptBars draws bars at x = 0, 1, … with per-bar styling, which
// plotter.BarChart (one style for all bars) cannot do.
type conceptBars struct {
	bars  []bar
	width float64 // in data units
}

func (b *conceptBars) Plot(c draw.Canvas, plt *plot.Plot) {
	trX, trY := plt.Transforms(&c)
	labelStyle := plt.X.Tick.Label
	labelStyle.Rotation = 0
	labelStyle.XAlign, labelStyle.YAlign = text.XCenter, text.YBottom
	labelStyle.Font.Size = vg.Points(9)

	for i, br := range b.bars {
		x := float64(i)
		x0, x1 := trX(x-b.width/2), trX(x+b.width/2)
		y0, y1 := trY(0), trY(br.mean)
		fill, edge := br.verdict.Colors()
		rect := []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}}
		c.FillPolygon(fill, c.ClipPolygonY(rect))
		if br.verdict == present.NotSignificant {
			present.Hatch(&c, x0, y0, x1, y1, edge)
		}
		c.StrokeLines(draw.LineStyle{Color: edge, Width: vg.Points(0.8)}, c.ClipLinesY(append(rect, rect[0]))...)

		errStyle := draw.LineStyle{Color: present.TextColor, Width: vg.Points(1)}
		lo, hi := trY(br.mean-br.std), trY(br.mean+br.std)
		xc, capW := trX(x), (x1-x0)/6
		c.StrokeLines(errStyle, c.ClipLinesY(
			[]vg.Point{{X: xc, Y: lo}, {X: xc, Y: hi}},
			[]vg.Point{{X: xc - capW, Y: lo}, {X: xc + capW, Y: lo}},
			[]vg.Point{{X: xc - capW, Y: hi}, {X: xc + capW, Y: hi}},
		)...)
		c.FillText(labelStyle, vg.Point{X: xc, Y: max(hi, y1) + vg.Points(3)}, br.label)
	}
}

func (b *conceptBars) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = -0.5, float64(len(b.bars))-0.5
	for _, br := range b.bars {
		ymax = math.Max(ymax, br.mean+br.std)
	}
	return xmin, xmax, 0, ymax
}

// hBand is a horizontal line with a shaded band around it.
type hBand struct {
	lo, hi, line float64
	xmin, xmax   float64
}

func (b *hBand) Plot(c draw.Canvas, plt *plot.Plot) {
	trX, trY := plt.Transforms(&c)
	x0, x1 := trX(b.xmin), trX(b.xmax)
	c.FillPolygon(colBand, c.ClipPolygonY([]vg.Point{
		{X: x0, Y: trY(b.lo)}, {X: x1, Y: trY(b.lo)}, {X: x1, Y: trY(b.hi)}, {X: x0, Y: trY(b.hi)},
	}))
	c.StrokeLines(b.lineStyle(), c.ClipLinesY([]vg.Point{{X: x0, Y: trY(b.line)}, {X: x1, Y: trY(b.line)}})...)
}

func (b *hBand) lineStyle() draw.LineStyle {
	return draw.LineStyle{Color: colBaseline, Width: vg.Points(1.2), Dashes: []vg.Length{vg.Points(6), vg.Points(3)}}
}

func (b *hBand) DataRange() (xmin, xmax, ymin, ymax float64) {
	return b.xmin, b.xmax, math.Max(0, b.lo), b.hi
}

func (b *hBand) Thumbnail(c *draw.Canvas) {
	r := c.Rectangle
	c.FillPolygon(colBand, []vg.Point{r.Min, {X: r.Max.X, Y: r.Min.Y}, r.Max, {X: r.Min.X, Y: r.Max.Y}})
	y := (r.Min.Y + r.Max.Y) / 2
	c.StrokeLine2(b.lineStyle(), r.Min.X, y, r.Max.X, y)
}

type scoredPoint struct {
	x, y, std float64
	verdict   present.Verdict
}

// scoredPoints is a plotter.XYer and plotter.YErrorer.
type scoredPoints []scoredPoint

func (s scoredPoints) Len() int                        { return len(s) }
func (s scoredPoints) XY(i int) (float64, float64)     { return s[i].x, s[i].y }
func (s scoredPoints) YError(i int) (float64, float64) { return s[i].std, s[i].std }

// verdictMarkers draws filled markers for significant points, hollow ones
// otherwise, with the "n.s."/"below" mark beside them.
type verdictMarkers struct {
	pts            scoredPoints
	color          color.Color
	filled, hollow draw.GlyphDrawer
}

func (m *verdictMarkers) Plot(c draw.Canvas, plt *plot.Plot) {
	trX, trY := plt.Transforms(&c)
	labelStyle := plt.X.Tick.Label
	labelStyle.XAlign, labelStyle.YAlign = text.XLeft, text.YCenter
	labelStyle.Font.Size = vg.Points(8)
	labelStyle.Color = m.color
	radius := vg.Points(4)
	for _, pt := range m.pts {
		at := vg.Point{X: trX(pt.x), Y: trY(pt.y)}
		if pt.verdict == present.NotSignificant {
			// Blank the line under the hollow marker.
			c.DrawGlyph(draw.GlyphStyle{Color: color.White, Radius: radius, Shape: m.filled}, at)
			c.DrawGlyph(draw.GlyphStyle{Color: m.color, Radius: radius, Shape: m.hollow}, at)
		} else {
			c.DrawGlyph(draw.GlyphStyle{Color: m.color, Radius: radius, Shape: m.filled}, at)
		}
		if pt.verdict != present.Important {
			c.FillText(labelStyle, vg.Point{X: at.X + vg.Points(6), Y: at.Y}, pt.verdict.Mark())
		}
	}
}

func (m *verdictMarkers) Thumbnail(c *draw.Canvas) {
	c.DrawGlyph(draw.GlyphStyle{Color: m.color, Radius: vg.Points(4), Shape: m.filled}, c.Center())
}

type glyphThumb struct{ style draw.GlyphStyle }

func (g glyphThumb) Thumbnail(c *draw.Canvas) { c.DrawGlyph(g.style, c.Center()) }

func formatP(p float64) string { return fmt.Sprintf("%.2g", p) }

// FrontChart draws the budget–success–stealth front of one attack run with
// several stealth weights: per weight, the TCAV score after the attack
// (solid, filled markers where significant) and the share of concept images
// whose predicted class changed (dashed), against the budget. The cheapest
// budget that flips the verdict while the dashed line stays near zero is
// what an attacker who does not want to be noticed pays.
func FrontChart(entries []AttackEntry) ([]byte, error) {
	if len(entries) == 0 {
		return nil, fmt.Errorf("front chart: no entries")
	}
	byLabel := map[string][]AttackEntry{}
	var labels []string
	maxEps := 0.0
	for _, e := range entries {
		l := e.StealthLabel()
		if _, ok := byLabel[l]; !ok {
			labels = append(labels, l)
		}
		byLabel[l] = append(byLabel[l], e)
		maxEps = math.Max(maxEps, e.Eps)
	}
	first := entries[0]
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Success and stealth: %s %q for %q at %s (%s)", first.Goal, first.Concept, first.Target, first.Layer, first.Norm)
	p.X.Label.Text = fmt.Sprintf("budget eps (%s, pixel scale [0,1])", first.Norm)
	p.Y.Label.Text = "TCAV score after / share of predictions changed"
	p.Add(plotter.NewGrid())
	p.X.Min, p.X.Max = 0, math.Max(maxEps, 1e-9)*1.15
	p.Y.Min, p.Y.Max = 0, 1.12
	legend := plot.NewLegend()
	palette := []color.Color{colAfter, present.ImportantColor, color.NRGBA{R: 0x2a, G: 0x8a, B: 0x3a, A: 0xff}, color.NRGBA{R: 0x80, G: 0x30, B: 0x90, A: 0xff}}
	for i, l := range labels {
		es := slices.Clone(byLabel[l])
		slices.SortStableFunc(es, func(a, b AttackEntry) int { return cmp.Compare(a.Eps, b.Eps) })
		col := palette[i%len(palette)]
		name := "stealth " + l
		score := make(scoredPoints, len(es))
		var changed plotter.XYs
		for j, e := range es {
			score[j] = scoredPoint{x: e.Eps, y: e.After.Mean, std: e.After.Std, verdict: present.VerdictOf(e.After.Significant, e.After.Direction)}
			changed = append(changed, plotter.XY{X: e.Eps, Y: e.ChangedPrediction})
		}
		line, err := plotter.NewLine(score)
		if err != nil {
			return nil, err
		}
		line.Color, line.Width = col, vg.Points(1.5)
		shape := frontGlyphs[i%len(frontGlyphs)]
		markers := &verdictMarkers{pts: score, color: col, filled: shape[0], hollow: shape[1]}
		dash, err := plotter.NewLine(changed)
		if err != nil {
			return nil, err
		}
		dash.Color, dash.Width, dash.Dashes = col, vg.Points(1.5), []vg.Length{vg.Points(5), vg.Points(3)}
		p.Add(line, markers, dash)
		legend.Add(name+": score after", line, markers)
		legend.Add(name+": predictions changed", dash)
	}
	neutral := color.NRGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff}
	legend.Add("significant", glyphThumb{draw.GlyphStyle{Color: neutral, Radius: vg.Points(4), Shape: draw.CircleGlyph{}}})
	legend.Add("not significant", glyphThumb{draw.GlyphStyle{Color: neutral, Radius: vg.Points(4), Shape: draw.RingGlyph{}}})
	return present.RenderPNG(p, &legend, 5*vg.Inch, 4*vg.Inch)
}

// frontGlyphs are the filled (significant) and hollow (not) markers of the
// front chart's series, one shape per stealth setting.
var frontGlyphs = [][2]draw.GlyphDrawer{
	{draw.CircleGlyph{}, draw.RingGlyph{}},
	{draw.BoxGlyph{}, draw.SquareGlyph{}},
	{draw.PyramidGlyph{}, draw.TriangleGlyph{}},
	{draw.CrossGlyph{}, draw.PlusGlyph{}},
}
