package attack

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/model"
)

func rss(t testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm")
	}
	pages, _ := strconv.ParseInt(strings.Fields(string(b))[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// 1,000 PGD steps: every step's tensors are freed, resident memory flat.
func TestMemoryFlatOver1000Steps(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m := demoModel(t)
	defer m.Close()
	x0 := gridImages(4, 5)
	obj := collisionTo(t, 0.5)
	defer obj.Close()
	base := torch.LiveTensors()
	run := func(steps int) {
		if _, err := Perturb(m, x0, "block3", obj, Budget{Norm: "linf", Eps: 0.03, Step: 0.002, Steps: steps, RandomStart: true}, 8, 1); err != nil {
			t.Fatal(err)
		}
	}
	run(100) // warm-up
	runtime.GC()
	before := rss(t)
	run(1000)
	runtime.GC()
	after := rss(t)
	t.Logf("RSS %.1f MiB → %.1f MiB over 1,000 steps", float64(before)/(1<<20), float64(after)/(1<<20))
	if live := torch.LiveTensors() - base; live != 0 {
		t.Errorf("%d tensors alive after the attack", live)
	}
	if after-before > 8<<20 {
		t.Errorf("RSS grew %.1f MiB", float64(after-before)/(1<<20))
	}
}

// BenchmarkPGD reports images·steps/s of the tcav-surrogate attack: on the
// demo model, and on GoogLeNet at 224 px when build/models/googlenet.pt
// exists (make bench exports it).
func BenchmarkPGD(b *testing.B) {
	cases := []struct {
		name, path, layer string
		size, n           int
	}{
		{"demo-64px-32img", filepath.Join("..", "..", "testdata", "demo", "model.pt"), "block3", 64, 32},
		{"googlenet-224px-16img", filepath.Join("..", "..", "build", "models", "googlenet.pt"), "inception4c", 224, 16},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if _, err := os.Stat(c.path); err != nil {
				b.Skip("no " + c.path)
			}
			m, err := model.Load(c.path, "cpu", model.Input{Size: [2]int{c.size, c.size}, Mean: [3]float64{0.5, 0.5, 0.5}, Std: [3]float64{0.25, 0.25, 0.25}})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			x0 := randomPixels(c.n, c.size)
			acts := activationSize(b, m, c.layer, c.size)
			obj, err := NewSurrogate("cpu", make1s(4*acts), 4, make([]float32, acts), 10, false)
			if err != nil {
				b.Fatal(err)
			}
			defer obj.Close()
			const steps = 5
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := Perturb(m, x0, c.layer, obj, Budget{Norm: "linf", Eps: 0.03, Step: 0.004, Steps: steps}, c.n, uint64(i)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*steps*c.n)/time.Since(start).Seconds(), "img·steps/s")
		})
	}
}

func randomPixels(n, size int) []images.Image {
	var out []images.Image
	for k := range n {
		px := make([]float32, 3*size*size)
		for i := range px {
			px[i] = float32(((k*len(px)+i)*7919)%256) / 255
		}
		out = append(out, images.Image{C: 3, H: size, W: size, Pix: px})
	}
	return out
}

// activationSize is the number of features of one image at layer.
func activationSize(b *testing.B, m *model.Model, layer string, size int) int {
	s := torch.NewScope()
	defer s.Close()
	x := s.FromFloat32(make([]float32, 3*size*size), []int64{1, 3, int64(size), int64(size)}, "cpu")
	_, acts := m.Forward(s, x, []string{layer}, torch.NoGrad, torch.FP32)
	if s.Err() != nil {
		b.Fatal(s.Err())
	}
	return int(acts[0].Numel())
}

func make1s(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	return v
}
