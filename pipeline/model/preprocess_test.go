package model

import (
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/images"
)

// randomPNG writes an 8-bit RGB PNG of random pixels and returns its path
// and bytes (planar RGB).
func randomPNG(t *testing.T, h, w int, seed uint64) (string, []uint8) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	planar := make([]uint8, 3*h*w)
	for y := range h {
		for x := range w {
			c := color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
			m.SetRGBA(x, y, c)
			planar[y*w+x], planar[h*w+y*w+x], planar[2*h*w+y*w+x] = c.R, c.G, c.B
		}
	}
	path := filepath.Join(t.TempDir(), "img.png")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, m); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path, planar
}

func pixelsOf(t *testing.T, m *Model, path string) ([]float32, []int64) {
	t.Helper()
	im, err := images.DecodeStored(path)
	if err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	x := m.Pixels(s, []images.Image{im})
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v, x.Shape()
}

func demoModel(t *testing.T, in Input) *Model {
	t.Helper()
	m, err := Load(filepath.Join("..", "..", "testdata", "demo", "model.pt"), testDevice(), in)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// With no resize key an image already at the input size reaches the model
// bit for bit: each value is its byte / 255, as Decode computes it.
func TestImageAtInputSizeIsNotZoomedOrChanged(t *testing.T) {
	m := demoModel(t, Input{Size: [2]int{64, 64}, Crop: "none"})
	defer m.Close()
	path, want := randomPNG(t, 64, 64, 1)
	got, shape := pixelsOf(t, m, path)
	if shape[2] != 64 || shape[3] != 64 {
		t.Fatalf("shape %v", shape)
	}
	for i, b := range want {
		if got[i] != float32(b)/255 {
			t.Fatalf("value %d is %v, want byte %d / 255 = %v", i, got[i], b, float32(b)/255)
		}
	}
}

// triangle is antialiased bilinear resampling of one axis written as the
// plain loop: each output sample averages the inputs under a triangle
// filter as wide as the scale factor.
func triangle(in []float64, out int) []float64 {
	n := len(in)
	scale := float64(n) / float64(out)
	support := math.Max(scale, 1)
	res := make([]float64, out)
	for i := range res {
		center := scale * (float64(i) + 0.5)
		lo := max(int(center-support+0.5), 0)
		hi := min(int(center+support+0.5), n)
		sum, wsum := 0.0, 0.0
		for j := lo; j < hi; j++ {
			w := math.Max(0, 1-math.Abs((float64(j)-center+0.5)/support))
			sum += w * in[j]
			wsum += w
		}
		res[i] = sum / wsum
	}
	return res
}

// A 128×96 image for a 64×64 model is resized straight to 64×64 (aspect
// changed, nothing cut away), and the values are the triangle-filter loop's.
func TestLargerImageIsResizedStraightToTheInputSize(t *testing.T) {
	m := demoModel(t, Input{Size: [2]int{64, 64}, Crop: "none"})
	defer m.Close()
	const h, w = 96, 128
	path, px := randomPNG(t, h, w, 2)
	got, shape := pixelsOf(t, m, path)
	if shape[2] != 64 || shape[3] != 64 {
		t.Fatalf("shape %v, want 64x64", shape)
	}
	worst := 0.0
	for c := range 3 {
		// Rows first, then columns (the filter is separable).
		rows := make([][]float64, h)
		for y := range h {
			line := make([]float64, w)
			for x := range w {
				line[x] = float64(px[c*h*w+y*w+x]) / 255
			}
			rows[y] = triangle(line, 64)
		}
		for x := range 64 {
			col := make([]float64, h)
			for y := range h {
				col[y] = rows[y][x]
			}
			for y, v := range triangle(col, 64) {
				worst = math.Max(worst, math.Abs(v-float64(got[c*64*64+y*64+x])))
			}
		}
	}
	if worst > 1e-4 {
		t.Fatalf("resized values differ from the triangle-filter loop by up to %g", worst)
	}
}

// With resize 73 and crop center, a 73×90 image is not scaled (its shorter
// side is already 73) and the model sees exactly the centered 64×64 window.
func TestCenterCropCutsTheMiddle(t *testing.T) {
	m := demoModel(t, Input{Size: [2]int{64, 64}, Resize: 73, Crop: "center"})
	defer m.Close()
	const h, w = 73, 90
	path, px := randomPNG(t, h, w, 3)
	got, shape := pixelsOf(t, m, path)
	if shape[2] != 64 || shape[3] != 64 {
		t.Fatalf("shape %v", shape)
	}
	top, left := (73-64)/2, (90-64)/2
	for c := range 3 {
		for y := range 64 {
			for x := range 64 {
				want := float32(px[c*h*w+(y+top)*w+x+left]) / 255
				if g := got[c*64*64+y*64+x]; g != want {
					t.Fatalf("channel %d (%d,%d) = %v, want the source pixel at (%d,%d) = %v", c, x, y, g, x+left, y+top, want)
				}
			}
		}
	}
}

func TestPlanAndEffect(t *testing.T) {
	in := Input{Size: [2]int{64, 64}, Crop: "none"}
	line, warnings, err := in.Effect([]SizeCount{{128, 128, 30}, {80, 96, 8}, {120, 72, 2}, {16, 16, 1}})
	if err != nil {
		t.Fatal(err)
	}
	// 120 rows × 72 columns → 64×64 changes the aspect by 120/72 − 1 = 67%;
	// 80×96 by 20%; 16×16 is upscaled 4×.
	want := "41 images, 128x128 (30), 96x80 (8), 72x120 (2), 16x16 (1) → 41 resized to 64x64, aspect changed by more than 25% for 2, upscaled more than 2x: 1"
	if line != want {
		t.Errorf("effect\n got %q\nwant %q", line, want)
	}
	if len(warnings) != 2 || !strings.Contains(warnings[0], "2 of 41 images change aspect") || !strings.Contains(warnings[1], "1 of 41 images are upscaled") {
		t.Errorf("warnings %q", warnings)
	}
	if line, _, _ := in.Effect([]SizeCount{{64, 64, 5}}); !strings.HasSuffix(line, "→ used as they are") {
		t.Errorf("images at the input size: %q", line)
	}
	crop := Input{Size: [2]int{224, 224}, Resize: 256, Crop: "center"}
	g, err := crop.Plan(480, 640)
	if err != nil {
		t.Fatal(err)
	}
	if g.ResizeH != 256 || g.ResizeW != 341 || g.Top != 16 || g.Left != 58 || g.AspectChange() > 0.005 {
		t.Errorf("plan for 640x480 with resize 256, crop 224: %+v (aspect change %g)", g, g.AspectChange())
	}
	if _, err := (Input{Size: [2]int{224, 224}, Resize: 200, Crop: "center"}).Plan(300, 300); err == nil {
		t.Error("resize below the input size: no error")
	}
}

// Normalize applies each channel's own mean and std, on the pixel range:
// (lo + x·(hi−lo) − mean_c)/std_c, checked by hand with three different
// channels so that a channel mix-up cannot pass.
func TestNormalizeUsesEachChannelsOwnMeanAndStd(t *testing.T) {
	in := Input{Size: [2]int{1, 2}, Mean: [3]float64{10, 100, 200}, Std: [3]float64{2, 4, 8}, PixelRange: [2]float64{0, 255}}
	m := demoModel(t, in)
	defer m.Close()
	s := torch.NewScope()
	defer s.Close()
	x := []float32{0, 1, 0.2, 0.4, 0.6, 0.8} // [1,3,1,2]
	got, err := m.Normalize(s, s.FromFloat32(x, []int64{1, 3, 1, 2}, testDevice())).Float32s()
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range x {
		c := i / 2
		want := (float64(v)*255 - in.Mean[c]) / in.Std[c]
		if math.Abs(float64(got[i])-want) > 1e-4 {
			t.Errorf("channel %d value %g: got %g, want %g", c, v, got[i], want)
		}
	}
}

// Resize then crop resamples once: a 96×80 image with resize 72 and crop
// center is scaled straight to 86×72 and the middle 64×64 kept, equal to the
// plain triangle-filter loop (no resampling to the output size on the way).
func TestResizeAndCropResampleOnce(t *testing.T) {
	m := demoModel(t, Input{Size: [2]int{64, 64}, Resize: 72, Crop: "center"})
	defer m.Close()
	const h, w, rh, rw = 96, 80, 86, 72
	g, err := m.Input.Plan(h, w)
	if err != nil || g.ResizeH != rh || g.ResizeW != rw {
		t.Fatalf("plan %+v, %v; want a resize to %dx%d", g, err, rh, rw)
	}
	path, px := randomPNG(t, h, w, 4)
	got, shape := pixelsOf(t, m, path)
	if shape[2] != 64 || shape[3] != 64 {
		t.Fatalf("shape %v, want 64x64", shape)
	}
	worst := 0.0
	for c := range 3 {
		rows := make([][]float64, h)
		for y := range h {
			line := make([]float64, w)
			for x := range w {
				line[x] = float64(px[c*h*w+y*w+x]) / 255
			}
			rows[y] = triangle(line, rw)
		}
		for x := range 64 {
			col := make([]float64, h)
			for y := range h {
				col[y] = rows[y][x+g.Left]
			}
			full := triangle(col, rh)
			for y := range 64 {
				worst = math.Max(worst, math.Abs(full[y+g.Top]-float64(got[c*64*64+y*64+x])))
			}
		}
	}
	if worst > 1e-4 {
		t.Fatalf("resized and cropped values differ from the triangle-filter loop by up to %g", worst)
	}
}
