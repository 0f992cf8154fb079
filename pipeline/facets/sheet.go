package facets

import (
	"fmt"

	"github.com/cavforge/cavforge/pipeline/images"
)

// Sheet lays images out in a grid, rows[r][c] at row r and column c, with
// gap pixels of white between them. Every image must have the size of the
// first; a row may be shorter than the others.
func Sheet(rows [][]images.Image, gap int) (images.Image, error) {
	var h, w, cols int
	for _, row := range rows {
		cols = max(cols, len(row))
		for _, im := range row {
			if h == 0 {
				h, w = im.H, im.W
			}
			if im.C != 3 || im.H != h || im.W != w || len(im.Pix) != 3*h*w {
				return images.Image{}, fmt.Errorf("contact sheet: image %s is %dx%dx%d, want 3x%dx%d", im.Path, im.C, im.H, im.W, h, w)
			}
		}
	}
	if cols == 0 {
		return images.Image{}, fmt.Errorf("contact sheet: no images")
	}
	sh, sw := len(rows)*h+(len(rows)-1)*gap, cols*w+(cols-1)*gap
	out := images.Image{C: 3, H: sh, W: sw, Pix: make([]float32, 3*sh*sw)}
	for i := range out.Pix {
		out.Pix[i] = 1
	}
	for r, row := range rows {
		for c, im := range row {
			top, left := r*(h+gap), c*(w+gap)
			for ch := range 3 {
				for y := range h {
					src := im.Pix[ch*h*w+y*w : ch*h*w+(y+1)*w]
					dst := ch*sh*sw + (top+y)*sw + left
					copy(out.Pix[dst:dst+w], src)
				}
			}
		}
	}
	return out, nil
}
