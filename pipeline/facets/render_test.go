package facets

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/images"
)

var demoSize = demoInput.Size

// The class logit rises as Adam runs, through the standard transforms.
func TestObjectiveRises(t *testing.T) {
	m := demoModel(t)
	for _, kind := range []string{"fourier", "pixels"} {
		var p Param
		var err error
		if kind == "fourier" {
			p, err = NewFourier(m.Device(), 32, 32, 0.01, 1, 2)
		} else {
			p, err = NewPixels(m.Device(), 32, 32, 0.01, 1, 2)
		}
		if err != nil {
			t.Fatal(err)
		}
		res, err := Render(m, p, Class(zebra), Settings{Steps: 64, LR: 0.05, Seed: 3, Transforms: Standard(), InputSize: demoSize})
		p.Close()
		if err != nil {
			t.Fatal(err)
		}
		first, last := mean(res.Trace[:8]), mean(res.Trace[len(res.Trace)-8:])
		t.Logf("%s: zebra logit summed over 2 images: %.2f over the first 8 steps, %.2f over the last 8", kind, first, last)
		if last < first+2 {
			t.Errorf("%s: objective went from %.2f to %.2f, want a clear rise", kind, first, last)
		}
	}
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// renderPNGs renders the zebra class through a facet and returns the PNG
// bytes of every image.
func renderPNGs(t *testing.T, seed uint64, dir Direction) [][]byte {
	t.Helper()
	m := demoModel(t)
	p, err := NewFourier(m.Device(), 48, 48, 0.01, seed, seed)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	f, err := NewFacet(m.Device(), Class(zebra), []Direction{dir}, []float64{0, 5}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := Render(m, p, Sum(Class(zebra), f), Settings{Steps: 24, LR: 0.05, Seed: seed, Transforms: Standard(), InputSize: demoSize})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for i := range res.N {
		path := filepath.Join(t.TempDir(), "x.png")
		if err := images.WritePNG8(path, res.Image(i)); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// Same seed, same PNG bytes; another seed, other images.
func TestSameSeedSamePNGs(t *testing.T) {
	if testDevice() != "cpu" {
		t.Skip("bitwise reproducibility is promised on the CPU")
	}
	dir := demoDirection(t, demoModel(t), "striped", "block2")
	a, b, c := renderPNGs(t, 5, dir), renderPNGs(t, 5, dir), renderPNGs(t, 6, dir)
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Errorf("image %d differs between two renders with seed 5", i)
		}
		if bytes.Equal(a[i], c[i]) {
			t.Errorf("image %d is the same for seeds 5 and 6", i)
		}
	}
	if bytes.Equal(a[0], a[1]) {
		t.Error("strengths 0 and 5 gave the same image")
	}
}

// The facet steers the picture: rendering zebra through the striped facet
// at high strength gives images that lie further along the striped
// direction at block2 than the same render at strength 0, and than the
// render through the dotted facet at the same strength; the dotted facet,
// in turn, raises the dotted projection. All images of a seed start from
// the same spectrum and see the same transforms, so the strength is the only
// difference; four seeds are averaged.
func TestFacetSteersTheImage(t *testing.T) {
	m := demoModel(t)
	striped := demoDirection(t, m, "striped", "block2")
	dotted := demoDirection(t, m, "dotted", "block2")
	const high = 8
	var seeds []uint64
	var strengths []float64
	for seed := uint64(1); seed <= 4; seed++ {
		seeds = append(seeds, seed, seed)
		strengths = append(strengths, 0, high)
	}
	render := func(dir Direction) *Measure {
		p, err := NewFourier(m.Device(), 64, 64, 0.01, seeds...)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		f, err := NewFacet(m.Device(), Class(zebra), []Direction{dir}, strengths, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		res, err := Render(m, p, Sum(Class(zebra), f), Settings{Steps: 160, LR: 0.05, Seed: 1, Transforms: Standard(), InputSize: demoSize})
		if err != nil {
			t.Fatal(err)
		}
		ms, err := MeasureImages(m, res, Class(zebra), []Direction{striped, dotted}, demoSize)
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	at := func(v []float64, strength float64) float64 { // mean over the seeds
		sum, n := 0.0, 0
		for i, s := range strengths {
			if s == strength {
				sum += v[i]
				n++
			}
		}
		return sum / float64(n)
	}
	bySt, byDot := render(striped), render(dotted)
	plain := at(bySt.Projections[0], 0)
	throughStriped := at(bySt.Projections[0], high)
	throughDotted := at(byDot.Projections[0], high)
	t.Logf("striped projection at block2: strength 0 %.2f, striped facet at %d %.2f, dotted facet at %d %.2f", plain, high, throughStriped, high, throughDotted)
	t.Logf("dotted projection at block2: strength 0 %.2f, striped facet %.2f, dotted facet %.2f",
		at(byDot.Projections[1], 0), at(bySt.Projections[1], high), at(byDot.Projections[1], high))
	t.Logf("zebra logit: strength 0 %.2f, striped facet %.2f, dotted facet %.2f",
		at(bySt.Target, 0), at(bySt.Target, high), at(byDot.Target, high))
	if throughStriped < 1.15*plain {
		t.Errorf("striped facet at strength %d: striped projection %.2f, want clearly above %.2f at strength 0", high, throughStriped, plain)
	}
	if throughStriped < 1.15*throughDotted {
		t.Errorf("striped projection %.2f through the striped facet, want clearly above %.2f through the dotted facet", throughStriped, throughDotted)
	}
	if d0, d := at(byDot.Projections[1], 0), at(byDot.Projections[1], high); d < 1.15*d0 {
		t.Errorf("dotted facet at strength %d: dotted projection %.2f, want clearly above %.2f at strength 0", high, d, d0)
	}
}

func residentBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm")
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// 2,000 steps of the full facet objective: every tensor is freed, resident
// memory (and device memory on CUDA) stays flat after warm-up.
func TestMemoryFlatOver2000Steps(t *testing.T) {
	m := demoModel(t)
	dir := Direction{Layer: "block2", Shape: []int64{32, 16, 16}, Weight: make([]float32, 32*16*16)}
	for i := range dir.Weight {
		dir.Weight[i] = float32(i%7-3) / 100
	}
	base := torch.LiveTensors()
	run := func(steps int) {
		p, err := NewFourier(m.Device(), 32, 32, 0.01, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		f, err := NewFacet(m.Device(), Class(zebra), []Direction{dir}, []float64{2}, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		obj := Sum(Class(zebra), f, Scaled(10, L2{}))
		if _, err := Render(m, p, obj, Settings{Steps: steps, LR: 0.05, Seed: 1, Transforms: Standard()}); err != nil {
			t.Fatal(err)
		}
	}
	run(200) // warm-up: allocator pools and libtorch's caches fill
	runtime.GC()
	rssWarm := residentBytes(t)
	devWarm, _ := torch.CUDAMemory(m.Device())
	start := time.Now()
	run(2000)
	elapsed := time.Since(start)
	runtime.GC()
	rssEnd := residentBytes(t)
	devEnd, _ := torch.CUDAMemory(m.Device())
	t.Logf("2000 steps at 32 px in %v; RSS %.1f → %.1f MiB; device allocated %d → %d bytes",
		elapsed.Round(time.Millisecond), float64(rssWarm)/(1<<20), float64(rssEnd)/(1<<20), devWarm.Allocated, devEnd.Allocated)
	if live := torch.LiveTensors() - base; live != 0 {
		t.Errorf("%d tensors still alive", live)
	}
	// One leaked 32 px image per step would add 2000×12 KiB = 23 MiB.
	if grew := rssEnd - rssWarm; grew > 8<<20 {
		t.Errorf("resident memory grew %.1f MiB over 2000 steps", float64(grew)/(1<<20))
	}
	if devEnd.Allocated != devWarm.Allocated {
		t.Errorf("device memory allocated went from %d to %d bytes", devWarm.Allocated, devEnd.Allocated)
	}
}

// BenchmarkRender reports rendering speed in steps/s for a batch of 4 at
// 128 and 224 px through a facet at block2 (the model runs at the render
// size): go test -run XXX -bench Render ./pipeline/facets/
func BenchmarkRender(b *testing.B) {
	m := demoModel(b)
	dir := Direction{Layer: "block2", Shape: []int64{32, 16, 16}, Weight: make([]float32, 32*16*16)}
	for i := range dir.Weight {
		dir.Weight[i] = float32(i%7-3) / 100
	}
	for _, size := range []int{128, 224} {
		b.Run(fmt.Sprintf("%dpx-batch4", size), func(b *testing.B) {
			p, err := NewFourier(m.Device(), size, size, 0.01, 1, 2, 3, 4)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			f, err := NewFacet(m.Device(), Class(zebra), []Direction{dir}, Strengths(0, 5, 4), 0)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			st := Settings{Steps: 4, LR: 0.05, Seed: 1, Transforms: Standard(), InputSize: [2]int{size, size}}
			if _, err := Render(m, p, Sum(Class(zebra), f), st); err != nil { // warm-up
				b.Fatal(err)
			}
			st.Steps = b.N
			b.ResetTimer()
			start := time.Now()
			if _, err := Render(m, p, Sum(Class(zebra), f), st); err != nil {
				b.Fatal(err)
			}
			if err := torch.Synchronize(m.Device()); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "steps/s")
		})
	}
}
