package present

import (
	"testing"

	"github.com/cavforge/cavforge/pipeline/stats"
)

// A significant-below or non-significant result must never read or look
// important (SPEC §5), in words, marks or colours.
func TestOnlySignificantAboveReadsAsImportant(t *testing.T) {
	cases := []struct {
		significant bool
		d           stats.Direction
		want        Verdict
		text, mark  string
	}{
		{true, stats.Above, Important, "important", "*"},
		{true, stats.Below, BelowBaseline, "significant, below baseline: not important", "below"},
		{false, stats.Above, NotSignificant, "not significant", "n.s."},
		{false, stats.Below, NotSignificant, "not significant", "n.s."},
	}
	for _, c := range cases {
		v := VerdictOf(c.significant, c.d)
		if v != c.want || v.Text() != c.text || v.Mark() != c.mark {
			t.Errorf("significant=%v %s: %v %q %q, want %v %q %q", c.significant, c.d, v, v.Text(), v.Mark(), c.want, c.text, c.mark)
		}
		if fill, _ := v.Colors(); (fill == ImportantColor) != (v == Important) {
			t.Errorf("%q is filled with %v", v.Text(), fill)
		}
	}
}
