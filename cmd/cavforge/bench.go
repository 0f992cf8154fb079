package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/model"
)

const benchUsage = "cavforge bench MODEL.pt --layer PATH [--input C,H,W] [--batches 1,16,64] [--seconds S] [--device D] [--baseline BIN]"

// runBench times the TCAV gradient pass (upload, forward with capture,
// gradient of a class logit at the layer, download) through cavforge, and
// the same work as a plain C++ loop when a baseline binary is given.
func runBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	layer := fs.String("layer", "", "layer path")
	input := fs.String("input", "3,224,224", "input shape C,H,W")
	batches := fs.String("batches", "1,16,64", "batch sizes")
	seconds := fs.Float64("seconds", 5, "time per batch size and side")
	device := fs.String("device", "cpu", "auto|cpu|cuda|cuda:N")
	precision := fs.String("precision", "fp32", "fp32|bf16|fp16 (autocast, CUDA only)")
	baseline := fs.String("baseline", "", "plain C++ baseline binary (build/bin/bench_baseline)")
	path, rest := splitPositional(args)
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if path == "" || *layer == "" {
		return fmt.Errorf("usage: %s", benchUsage)
	}
	chw, err := parseShape(*input)
	if err != nil {
		return fmt.Errorf("--input: %w", err)
	}
	if !(*seconds > 0) || math.IsInf(*seconds, 0) {
		return fmt.Errorf("--seconds %v: want a time > 0", *seconds)
	}
	var sizes []int
	for _, b := range strings.Split(*batches, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(b))
		if err != nil || n <= 0 {
			return fmt.Errorf("--batches: bad batch size %q: want a whole number > 0", b)
		}
		sizes = append(sizes, n)
	}
	cast, ok := map[string]torch.Autocast{"fp32": torch.FP32, "bf16": torch.BF16, "fp16": torch.FP16}[*precision]
	if !ok {
		return fmt.Errorf("--precision %q: want fp32, bf16 or fp16", *precision)
	}
	m, err := model.Load(path, *device, model.Input{})
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.CheckLayers([]string{*layer}); err != nil {
		return err
	}
	fmt.Printf("model %s, layer %s, input %s, device %s, precision %s, %d threads\n",
		path, *layer, *input, m.Device(), *precision, torch.NumThreads())
	fmt.Printf("%6s %16s %16s %8s\n", "batch", "cavforge img/s", "C++ loop img/s", "ratio")
	for _, n := range sizes {
		goRate, iters, err := benchGo(m, *layer, chw, n, *seconds, cast)
		if err != nil {
			return err
		}
		cRate := "-"
		ratio := "-"
		if *baseline != "" && cast == torch.FP32 {
			r, err := benchBaseline(*baseline, path, *layer, *input, n, iters, m.Device())
			if err != nil {
				return err
			}
			cRate = fmt.Sprintf("%.2f", r)
			ratio = fmt.Sprintf("%.3f", goRate/r)
		}
		fmt.Printf("%6d %16.2f %16s %8s\n", n, goRate, cRate, ratio)
	}
	return nil
}

func benchGo(m *model.Model, layer string, chw []int64, batch int, seconds float64, cast torch.Autocast) (float64, int, error) {
	shape := append([]int64{int64(batch)}, chw...)
	host := make([]float32, int(shape[0]*shape[1]*shape[2]*shape[3]))
	r := rand.New(rand.NewPCG(1, 2))
	for i := range host {
		host[i] = r.Float32()
	}
	step := func() error {
		s := torch.NewScope()
		defer s.Close()
		x := s.FromFloat32(host, shape, m.Device())
		g, _ := m.ClassGradients(s, x, layer, 0, cast)
		if _, err := g.Float32s(); err != nil {
			return err
		}
		return s.Err()
	}
	for i := 0; i < 3; i++ {
		if err := step(); err != nil {
			return 0, 0, err
		}
	}
	// Enough iterations to fill the time budget, then one timed run of them.
	start := time.Now()
	iters := 0
	for time.Since(start).Seconds() < seconds || iters < 2 {
		if err := step(); err != nil {
			return 0, 0, err
		}
		iters++
	}
	if err := torch.Synchronize(m.Device()); err != nil {
		return 0, 0, err
	}
	return float64(batch*iters) / time.Since(start).Seconds(), iters, nil
}

func benchBaseline(bin, modelPath, layer, input string, batch, iters int, device string) (float64, error) {
	cmd := exec.Command(bin, modelPath, layer, input, strconv.Itoa(batch), strconv.Itoa(iters), device)
	cmd.Env = append(os.Environ(), fmt.Sprintf("BENCH_THREADS=%d", torch.NumThreads()))
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("baseline %s: %w", bin, err)
	}
	var rate float64
	if _, err := fmt.Sscanf(string(out), "images_per_s %g", &rate); err != nil {
		return 0, fmt.Errorf("baseline %s: unexpected output %q", bin, out)
	}
	return rate, nil
}
