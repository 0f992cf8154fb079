package images

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func encodePNG(t *testing.T, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t *testing.T, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pixel returns the RGB of (x, y).
func pixel(img Image, x, y int) [3]float32 {
	n := img.H * img.W
	i := y*img.W + x
	return [3]float32{img.Pix[i], img.Pix[n+i], img.Pix[2*n+i]}
}

func TestDecode(t *testing.T) {
	// 2x1 images: pixel (0,0) and (1,0) with known values.
	rgba := image.NewRGBA(image.Rect(0, 0, 2, 1))
	rgba.Set(0, 0, color.RGBA{10, 200, 30, 255})
	rgba.Set(1, 0, color.RGBA{255, 0, 128, 255})

	nrgba := image.NewNRGBA(image.Rect(0, 0, 2, 1))
	nrgba.SetNRGBA(0, 0, color.NRGBA{255, 0, 0, 128}) // half-transparent red
	nrgba.SetNRGBA(1, 0, color.NRGBA{0, 0, 0, 0})     // transparent black

	gray := image.NewGray(image.Rect(0, 0, 2, 1))
	gray.SetGray(0, 0, color.Gray{0})
	gray.SetGray(1, 0, color.Gray{77})

	gray16 := image.NewGray16(image.Rect(0, 0, 2, 1))
	gray16.SetGray16(0, 0, color.Gray16{1000})
	gray16.SetGray16(1, 0, color.Gray16{65535})

	rgba64 := image.NewRGBA64(image.Rect(0, 0, 2, 1))
	rgba64.SetRGBA64(0, 0, color.RGBA64{1, 30000, 65535, 65535})
	rgba64.SetRGBA64(1, 0, color.RGBA64{0, 0, 0, 65535})

	nrgba64 := image.NewNRGBA64(image.Rect(0, 0, 2, 1))
	nrgba64.SetNRGBA64(0, 0, color.NRGBA64{0, 65535, 0, 32768})
	nrgba64.SetNRGBA64(1, 0, color.NRGBA64{1234, 5678, 9999, 65535})

	pal := image.NewPaletted(image.Rect(0, 0, 2, 1), color.Palette{
		color.RGBA{0, 0, 255, 255},
		color.NRGBA{0, 0, 0, 0},
	})
	pal.SetColorIndex(0, 0, 0)
	pal.SetColorIndex(1, 0, 1)

	solid := func(c color.Color) image.Image {
		m := image.NewRGBA(image.Rect(0, 0, 16, 16))
		for y := range 16 {
			for x := range 16 {
				m.Set(x, y, c)
			}
		}
		return m
	}
	solidGray := image.NewGray(image.Rect(0, 0, 16, 16))
	for i := range solidGray.Pix {
		solidGray.Pix[i] = 90
	}

	h := float32(127) / 255 // white under 128/255 alpha: (255*127)/(255*255)
	tests := []struct {
		name string
		file string
		data []byte
		w, h int
		want [][3]float32 // pixels (0,0), (1,0)
		tol  float32
	}{
		{"png rgb8", "a.png", encodePNG(t, rgba), 2, 1,
			[][3]float32{{10. / 255, 200. / 255, 30. / 255}, {1, 0, 128. / 255}}, 0},
		{"png alpha on white", "b.png", encodePNG(t, nrgba), 2, 1,
			[][3]float32{{1, h, h}, {1, 1, 1}}, 1e-7},
		{"png gray8", "c.png", encodePNG(t, gray), 2, 1,
			[][3]float32{{0, 0, 0}, {77. / 255, 77. / 255, 77. / 255}}, 0},
		{"png gray16", "d.png", encodePNG(t, gray16), 2, 1,
			[][3]float32{{1000. / 65535, 1000. / 65535, 1000. / 65535}, {1, 1, 1}}, 0},
		{"png rgb16", "e.png", encodePNG(t, rgba64), 2, 1,
			[][3]float32{{1. / 65535, 30000. / 65535, 1}, {0, 0, 0}}, 0},
		{"png rgba16 alpha", "f.png", encodePNG(t, nrgba64), 2, 1,
			[][3]float32{{32767. / 65535, 1, 32767. / 65535}, {1234. / 65535, 5678. / 65535, 9999. / 65535}}, 1e-6},
		{"png paletted with transparency", "g.png", encodePNG(t, pal), 2, 1,
			[][3]float32{{0, 0, 1}, {1, 1, 1}}, 0},
		{"jpeg colour", "h.jpg", encodeJPEG(t, solid(color.RGBA{200, 40, 90, 255})), 16, 16,
			[][3]float32{{200. / 255, 40. / 255, 90. / 255}, {200. / 255, 40. / 255, 90. / 255}}, 3. / 255},
		{"jpeg gray", "i.JPEG", encodeJPEG(t, solidGray), 16, 16,
			[][3]float32{{90. / 255, 90. / 255, 90. / 255}, {90. / 255, 90. / 255, 90. / 255}}, 1. / 255},
		{"jpeg named png", "j.png", encodeJPEG(t, solidGray), 16, 16,
			[][3]float32{{90. / 255, 90. / 255, 90. / 255}, {90. / 255, 90. / 255, 90. / 255}}, 1. / 255},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.file)
			writeFile(t, p, tc.data)
			img, err := Decode(p)
			if err != nil {
				t.Fatal(err)
			}
			if img.Path != p || img.C != 3 || img.W != tc.w || img.H != tc.h || len(img.Pix) != 3*tc.w*tc.h {
				t.Fatalf("got %s %dx%dx%d (%d values), want %s 3x%dx%d", img.Path, img.C, img.H, img.W, len(img.Pix), p, tc.h, tc.w)
			}
			for x, want := range tc.want {
				got := pixel(img, x, 0)
				for c := range 3 {
					if d := float32(math.Abs(float64(got[c] - want[c]))); d > tc.tol {
						t.Errorf("pixel (%d,0) = %v, want %v (±%g)", x, got, want, tc.tol)
						break
					}
				}
			}
		})
	}
}

func TestDecodeErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	good := encodePNG(t, image.NewGray(image.Rect(0, 0, 4, 4)))
	tests := []struct {
		name, file string
		data       []byte
		want       string
	}{
		{"not a png", "003.png", []byte("hello, not an image"), "png: invalid format"},
		{"not a jpeg", "004.jpg", []byte("hello, not an image"), "jpeg: invalid format"},
		{"tiny", "007.png", []byte("x"), "png: invalid format"},
		{"truncated jpeg", "008.jpg", encodeJPEG(t, image.NewGray(image.Rect(0, 0, 8, 8)))[:40], "decode "},
		{"truncated png", "005.png", good[:len(good)/2], "decode "},
		{"missing", "006.png", nil, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.file)
			if tc.data != nil {
				writeFile(t, p, tc.data)
			}
			_, err := Decode(p)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "decode "+p+": ") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want prefix %q and %q", msg, "decode "+p+": ", tc.want)
			}
			if strings.Count(msg, p) != 1 {
				t.Errorf("error %q names the file %d times", msg, strings.Count(msg, p))
			}
		})
	}
}

func TestLoadSet(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i := range 20 {
		m := image.NewGray(image.Rect(0, 0, 3, 2))
		for j := range m.Pix {
			m.Pix[j] = uint8(i)
		}
		p := filepath.Join(dir, "img"+string(rune('a'+i))+".png")
		writeFile(t, p, encodePNG(t, m))
		paths = append(paths, p)
	}
	bad1 := filepath.Join(dir, "bad1.png")
	bad2 := filepath.Join(dir, "bad2.jpg")
	writeFile(t, bad1, []byte("corrupt"))
	writeFile(t, bad2, []byte("corrupt"))
	withBad := slices.Concat(paths[:5], []string{bad1}, paths[5:15], []string{bad2}, paths[15:])

	t.Run("order kept", func(t *testing.T) {
		imgs, err := LoadSet(paths, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(imgs) != len(paths) {
			t.Fatalf("%d images, want %d", len(imgs), len(paths))
		}
		for i, img := range imgs {
			if img.Path != paths[i] || img.Pix[0] != float32(i)/255 {
				t.Errorf("image %d is %s with value %v", i, img.Path, img.Pix[0])
			}
		}
	})
	t.Run("corrupt is an error naming the first bad file", func(t *testing.T) {
		for range 5 {
			_, err := LoadSet(withBad, false, nil)
			if err == nil || !strings.Contains(err.Error(), bad1) {
				t.Fatalf("error %v, want one naming %s", err, bad1)
			}
		}
	})
	t.Run("skipBad skips and warns", func(t *testing.T) {
		log, hook := logtest.NewNullLogger()
		imgs, err := LoadSet(withBad, true, log)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, img := range imgs {
			got = append(got, img.Path)
		}
		if !slices.Equal(got, paths) {
			t.Errorf("got %v, want %v", got, paths)
		}
		var warned []string
		for _, e := range hook.AllEntries() {
			if e.Level == logrus.WarnLevel {
				warned = append(warned, e.Data["file"].(string))
			}
		}
		if !slices.Equal(warned, []string{bad1, bad2}) {
			t.Errorf("warned about %v, want %v", warned, []string{bad1, bad2})
		}
	})
	t.Run("all bad", func(t *testing.T) {
		log, _ := logtest.NewNullLogger()
		if _, err := LoadSet([]string{bad1, bad2}, true, log); err == nil {
			t.Error("no error when every image is bad")
		}
	})
}

func TestListSet(t *testing.T) {
	root := t.TempDir()
	set := filepath.Join(root, "striped")
	for _, name := range []string{"b.PNG", "a.jpg", "c.JpEg", "notes.txt", "._a.png", "d.gif"} {
		writeFile(t, filepath.Join(set, name), []byte("x"))
	}
	if err := os.Mkdir(filepath.Join(set, "sub.png"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "empty", "readme.txt"), []byte("x"))
	writeFile(t, filepath.Join(root, "afile"), []byte("x"))

	log, hook := logtest.NewNullLogger()
	got, err := ListSet(root, "striped", false, log)
	if err != nil {
		t.Fatal(err)
	}
	if w := hook.AllEntries(); len(w) != 1 || !strings.Contains(w[0].Message, "1 files in formats cavforge does not decode") {
		t.Errorf("want one warning counting d.gif, got %v", w)
	}
	want := []string{filepath.Join(set, "a.jpg"), filepath.Join(set, "b.PNG"), filepath.Join(set, "c.JpEg")}
	if !slices.Equal(got, want) {
		t.Errorf("ListSet = %v, want %v", got, want)
	}

	errTests := []struct{ set, want string }{
		{"dotted", "data.root/dotted: no such folder " + filepath.Join(root, "dotted")},
		{"empty", filepath.Join(root, "empty") + ": no images (.png, .jpg, .jpeg)"},
		{"afile", "data.root/afile: " + filepath.Join(root, "afile") + " is not a folder"},
	}
	for _, tc := range errTests {
		_, err := ListSet(root, tc.set, false, nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ListSet(%q) error %v, want %q", tc.set, err, tc.want)
		}
	}
}

func TestListSetDanglingSymlinkIsNotDroppedSilently(t *testing.T) {
	root := t.TempDir()
	set := filepath.Join(root, "striped")
	writeFile(t, filepath.Join(set, "a.png"), []byte("x"))
	link := filepath.Join(set, "b.png")
	if err := os.Symlink(filepath.Join(root, "gone.png"), link); err != nil {
		t.Fatal(err)
	}
	_, err := ListSet(root, "striped", false, nil)
	if err == nil || !strings.Contains(err.Error(), link+": dangling symlink to") {
		t.Fatalf("error %v, want one naming the dangling link %s", err, link)
	}
	log, hook := logtest.NewNullLogger()
	got, err := ListSet(root, "striped", true, log)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{filepath.Join(set, "a.png")}) {
		t.Errorf("with skip_bad_images got %v", got)
	}
	if w := hook.LastEntry(); w == nil || w.Data["file"] != link {
		t.Errorf("skipping the link gave no warning naming it: %v", hook.AllEntries())
	}
}

func TestChoose(t *testing.T) {
	var files []string
	for i := range 50 {
		files = append(files, filepath.Join("data", "set", string(rune('A'+i))+".png"))
	}
	a := Choose(files, 10, 0, "striped")
	if len(a) != 10 {
		t.Fatalf("chose %d, want 10", len(a))
	}
	if !slices.IsSorted(a) {
		t.Errorf("not sorted: %v", a)
	}
	for i, f := range a {
		if !slices.Contains(files, f) || (i > 0 && a[i-1] == f) {
			t.Errorf("%s is not a distinct member of the input", f)
		}
	}
	if b := Choose(slices.Clone(files), 10, 0, "striped"); !slices.Equal(a, b) {
		t.Errorf("not deterministic: %v vs %v", a, b)
	}
	if b := Choose(files, 10, 1, "striped"); slices.Equal(a, b) {
		t.Errorf("seed 1 chose the same as seed 0: %v", a)
	}
	if b := Choose(files, 10, 0, "dotted"); slices.Equal(a, b) {
		t.Errorf("set dotted chose the same as set striped: %v", a)
	}
	for _, max := range []int{0, -1, 50, 51} {
		if got := Choose(files, max, 0, "striped"); !slices.Equal(got, files) {
			t.Errorf("Choose(max=%d) = %d files, want all %d", max, len(got), len(files))
		}
	}
	if slices.IsSorted(files) && !slices.Equal(files[:3], []string{filepath.Join("data", "set", "A.png"), filepath.Join("data", "set", "B.png"), filepath.Join("data", "set", "C.png")}) {
		t.Error("Choose modified its input")
	}
}

func TestListHash(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "s", "a.png"), filepath.Join(root, "s", "b.png")
	writeFile(t, a, []byte("aaaa"))
	writeFile(t, b, []byte("bbbb"))
	h0, err := ListHash(root, []string{a, b})
	if err != nil {
		t.Fatal(err)
	}

	// Same content under another root hashes the same.
	root2 := t.TempDir()
	a2, b2 := filepath.Join(root2, "s", "a.png"), filepath.Join(root2, "s", "b.png")
	writeFile(t, a2, []byte("aaaa"))
	writeFile(t, b2, []byte("bbbb"))
	if h, _ := ListHash(root2, []string{a2, b2}); h != h0 {
		t.Errorf("moved root changed the hash")
	}
	if h, _ := ListHash(root, []string{b, a}); h == h0 {
		t.Errorf("order did not change the hash")
	}
	if h, _ := ListHash(root, []string{a}); h == h0 {
		t.Errorf("dropping a file did not change the hash")
	}
	writeFile(t, b2, []byte("bbbc"))
	if h, _ := ListHash(root2, []string{a2, b2}); h == h0 {
		t.Errorf("changing one byte did not change the hash")
	}
	if _, err := ListHash(root, []string{filepath.Join(root, "s", "nope.png")}); err == nil || !strings.Contains(err.Error(), "nope.png") {
		t.Errorf("missing file error %v", err)
	}
}

func TestWritePNG8RoundTripsQuantize(t *testing.T) {
	const h, w = 7, 37
	img := Image{C: 3, H: h, W: w, Pix: make([]float32, 3*h*w)}
	for i := range img.Pix {
		// Cover out-of-range values, exact halves and everything in between.
		img.Pix[i] = -0.1 + 1.2*float32(i)/float32(len(img.Pix)-1)
	}
	img.Pix[0], img.Pix[1], img.Pix[2] = 0.5, 1.5/255, 254.6/255
	p := filepath.Join(t.TempDir(), "out.png")
	if err := WritePNG8(p, img); err != nil {
		t.Fatal(err)
	}
	got, err := Decode(p)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(img.Pix)
	Quantize(want)
	if got.C != 3 || got.H != h || got.W != w {
		t.Fatalf("read back %dx%dx%d", got.C, got.H, got.W)
	}
	for i := range want {
		if got.Pix[i] != want[i] {
			t.Fatalf("value %d: read back %v, Quantize gives %v (from %v)", i, got.Pix[i], want[i], img.Pix[i])
		}
	}
	// Nearest, halves away from zero (0.5*255 = 127.5 is the one exact half
	// a float32 in [0,1] can hold); out of range clamps.
	for _, tc := range []struct{ in, want float32 }{
		{0.5, 128. / 255}, {254.4 / 255, 254. / 255}, {254.6 / 255, 1}, {-0.3, 0}, {1.7, 1}, {0.2, 51. / 255},
	} {
		v := []float32{tc.in}
		Quantize(v)
		if v[0] != tc.want {
			t.Errorf("Quantize(%v) = %v, want %v", tc.in, v[0], tc.want)
		}
	}
	// The file is 8-bit RGB, not RGBA or 16-bit.
	f, _ := os.ReadFile(p)
	cfg, err := png.DecodeConfig(bytes.NewReader(f))
	if err != nil || cfg.ColorModel != color.RGBAModel {
		t.Errorf("color model %v, err %v", cfg.ColorModel, err)
	}
	if f[24] != 8 || f[25] != 2 { // IHDR bit depth, colour type 2 = RGB
		t.Errorf("IHDR bit depth %d colour type %d, want 8 and 2", f[24], f[25])
	}
	// No temp files left behind.
	if ents, _ := os.ReadDir(filepath.Dir(p)); len(ents) != 1 {
		t.Errorf("%d files in output dir, want 1", len(ents))
	}
}

func TestWritePNG8Errors(t *testing.T) {
	dir := t.TempDir()
	nan := float32(math.NaN())
	tests := []struct {
		name string
		img  Image
	}{
		{"short pix", Image{C: 3, H: 2, W: 2, Pix: make([]float32, 11)}},
		{"two channels", Image{C: 2, H: 1, W: 1, Pix: make([]float32, 2)}},
		{"nan", Image{C: 3, H: 1, W: 1, Pix: []float32{0, nan, 0}}},
	}
	for _, tc := range tests {
		p := filepath.Join(dir, tc.name+".png")
		if err := WritePNG8(p, tc.img); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, p)
		}
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s: file written despite error", tc.name)
		}
	}
}
