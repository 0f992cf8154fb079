// Package present holds what the run report and the sweep's collection
// share when they show results: how a verdict is worded and coloured, and
// how a chart is laid out and rendered to PNG.
package present

import (
	"image/color"

	"github.com/cavforge/cavforge/pipeline/stats"
)

// Verdict is how a result must be read; charts, tables and terminal output
// style by it so that only a significant-above concept looks important
// (SPEC §5).
type Verdict int

const (
	Important     Verdict = iota // significant, above the random baseline
	BelowBaseline                // significant, below the random baseline
	NotSignificant
)

// VerdictOf reads a test's outcome.
func VerdictOf(significant bool, d stats.Direction) Verdict {
	switch {
	case !significant:
		return NotSignificant
	case d == stats.Below:
		return BelowBaseline
	default:
		return Important
	}
}

// Text is the verdict in words, as tables show it.
func (v Verdict) Text() string {
	switch v {
	case BelowBaseline:
		return "significant, below baseline: not important"
	case NotSignificant:
		return "not significant"
	}
	return "important"
}

// Mark is the short label drawn on a bar or beside a point.
func (v Verdict) Mark() string {
	switch v {
	case BelowBaseline:
		return "below"
	case NotSignificant:
		return "n.s."
	}
	return "*"
}

// Colours of the verdicts. ImportantColor is used for nothing that is not
// important, so that a reader can trust it.
var (
	ImportantColor = color.NRGBA{R: 0x1f, G: 0x5f, B: 0xa8, A: 0xff} // strong blue
	TextColor      = color.NRGBA{A: 0xff}

	belowFill = color.NRGBA{R: 0xe8, G: 0xd3, B: 0xb0, A: 0xff} // pale sand
	belowEdge = color.NRGBA{R: 0x9a, G: 0x7a, B: 0x4a, A: 0xff}
	nsFill    = color.NRGBA{R: 0xe4, G: 0xe4, B: 0xe4, A: 0xff} // light grey
	nsEdge    = color.NRGBA{R: 0x80, G: 0x80, B: 0x80, A: 0xff}
)

// Colors are the fill and edge of a bar or marker with this verdict.
func (v Verdict) Colors() (fill, edge color.Color) {
	switch v {
	case BelowBaseline:
		return belowFill, belowEdge
	case NotSignificant:
		return nsFill, nsEdge
	}
	return ImportantColor, TextColor
}
