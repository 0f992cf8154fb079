package present

import (
	"bytes"
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// DPI is the charts' resolution: 150 dpi keeps text crisp in the HTML
// report while a chart stays well under 100 kB.
const DPI = 150

// legendWidth is the strip right of the plot area that holds the legend, so
// that it never covers a bar or a point.
const legendWidth = 2.6 * vg.Inch

// RenderPNG draws the title across the whole image (a long title would be
// clipped if centred over the plot area alone), the plot below it and the
// legend in a strip to its right.
func RenderPNG(p *plot.Plot, legend *plot.Legend, plotWidth, height vg.Length) ([]byte, error) {
	img := vgimg.NewWith(vgimg.UseWH(plotWidth+legendWidth, height), vgimg.UseDPI(DPI))
	dc := draw.New(img)

	title := p.Title.TextStyle
	title.Font.Size = vg.Points(11)
	title.XAlign, title.YAlign = text.XCenter, text.YTop
	titleHeight := title.Rectangle(p.Title.Text).Size().Y + vg.Points(8)
	dc.FillText(title, vg.Point{X: dc.Center().X, Y: dc.Max.Y - vg.Points(4)}, p.Title.Text)
	p.Title.Text = ""

	body := draw.Crop(dc, 0, 0, 0, -titleHeight)
	p.Draw(draw.Crop(body, 0, -legendWidth, 0, 0))
	legend.TextStyle.Font.Size = vg.Points(9)
	legend.Padding = vg.Points(4)
	legend.Draw(draw.Crop(body, plotWidth+vg.Points(10), 0, 0, -vg.Points(12)))
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("encode chart: %w", err)
	}
	return buf.Bytes(), nil
}

// Hatch fills the rectangle with 45° lines: how a not-significant bar is
// drawn.
func Hatch(c *draw.Canvas, x0, y0, x1, y1 vg.Length, col color.Color) {
	if y1 < y0 {
		y0, y1 = y1, y0
	}
	w, h := x1-x0, y1-y0
	step := vg.Points(5)
	var lines [][]vg.Point
	// Line k: (x0+k+t, y0+t) for t in [0, h], kept inside x0..x1.
	for k := -h; k < w; k += step {
		t0, t1 := max(0, -k), min(h, w-k)
		if t0 >= t1 {
			continue
		}
		lines = append(lines, []vg.Point{{X: x0 + k + t0, Y: y0 + t0}, {X: x0 + k + t1, Y: y0 + t1}})
	}
	c.StrokeLines(draw.LineStyle{Color: col, Width: vg.Points(0.6)}, c.ClipLinesY(lines...)...)
}

// Swatch is a legend thumbnail in a verdict's bar style.
type Swatch struct{ Verdict Verdict }

func (s Swatch) Thumbnail(c *draw.Canvas) {
	fill, edge := s.Verdict.Colors()
	r := c.Rectangle
	pts := []vg.Point{r.Min, {X: r.Max.X, Y: r.Min.Y}, r.Max, {X: r.Min.X, Y: r.Max.Y}}
	c.FillPolygon(fill, pts)
	if s.Verdict == NotSignificant {
		Hatch(c, r.Min.X, r.Min.Y, r.Max.X, r.Max.Y, edge)
	}
	c.StrokeLines(draw.LineStyle{Color: edge, Width: vg.Points(0.8)}, append(pts, pts[0]))
}
