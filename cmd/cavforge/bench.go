package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/model"
)

const benchUsage = "cavforge bench MODEL.pt --layer PATH [--input C,H,W] [--batches 1,2,8,32] [--passes act,grad,pgd] [--seconds S] [--rounds R] [--device D] [--baseline BIN]"

// benchPasses are the passes cavforge times, by the name the C++ floor
// (cgo/bench/baseline.cc --serve) knows them by.
var benchPasses = map[string]string{
	"act":  "activation pass",
	"grad": "class gradient",
	"pgd":  "PGD step",
}

// runBench times cavforge's passes over one layer and, when a baseline
// binary is given, the same work as a plain C++ libtorch loop built the
// fastest way known (the floor), in one run: for every pass and batch size
// the two sides take turns for --rounds rounds of --seconds each, and the
// table reports the median of each side and of the per-round ratios, so
// that load from other processes hits both alike.
func runBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	layer := fs.String("layer", "", "layer path")
	input := fs.String("input", "3,224,224", "input shape C,H,W")
	batches := fs.String("batches", "1,2,8,32", "batch sizes")
	passes := fs.String("passes", "act,grad,pgd", "passes: act, grad, pgd")
	seconds := fs.Float64("seconds", 2, "time per measurement and side")
	rounds := fs.Int("rounds", 3, "measurements per side, interleaved")
	device := fs.String("device", "cpu", "auto|cpu|cuda|cuda:N")
	precision := fs.String("precision", "fp32", "fp32|bf16|fp16 (autocast, CUDA only)")
	baseline := fs.String("baseline", "", "plain C++ floor binary (build/bin/bench_baseline)")
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
	if *rounds <= 0 {
		return fmt.Errorf("--rounds %d: want a whole number > 0", *rounds)
	}
	cast, ok := map[string]torch.Autocast{"fp32": torch.FP32, "bf16": torch.BF16, "fp16": torch.FP16}[*precision]
	if !ok {
		return fmt.Errorf("--precision %q: want fp32, bf16 or fp16", *precision)
	}
	var sizes []int
	for _, b := range strings.Split(*batches, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(b))
		if err != nil || n <= 0 {
			return fmt.Errorf("--batches: bad batch size %q: want a whole number > 0", b)
		}
		sizes = append(sizes, n)
	}
	var kinds []string
	for _, p := range strings.Split(*passes, ",") {
		if _, ok := benchPasses[p]; !ok {
			return fmt.Errorf("--passes: unknown pass %q (want act, grad, pgd)", p)
		}
		kinds = append(kinds, p)
	}
	m, err := model.Load(path, *device, model.Input{})
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.CheckLayers([]string{*layer}); err != nil {
		return err
	}
	b := &bench{m: m, layer: *layer, chw: chw, cast: cast, seconds: *seconds}
	var floor *floorProc
	if *baseline != "" && cast == torch.FP32 {
		if floor, err = startFloor(*baseline, path, *layer, *input, m.Device()); err != nil {
			return err
		}
		defer floor.close()
	}
	wait := os.Getenv("OMP_WAIT_POLICY")
	fmt.Printf("model %s, layer %s, input %s, device %s, precision %s, %d threads, OMP_WAIT_POLICY=%s, load average %s\n",
		path, *layer, *input, m.Device(), *precision, torch.NumThreads(), wait, loadAverage())
	for _, k := range []torch.Pass{torch.ActivationPass, torch.LeafPass, torch.InputGradPass} {
		plan, err := m.Plan(k, []string{*layer})
		if err != nil {
			return err
		}
		fmt.Printf("  %-16s %s\n", map[torch.Pass]string{torch.ActivationPass: "activation pass:", torch.LeafPass: "class gradient:", torch.InputGradPass: "PGD step:"}[k], plan)
	}
	fmt.Printf("median of %d interleaved rounds of %.1fs per side; floor÷cavforge > 1 means cavforge is slower\n", *rounds, *seconds)
	fmt.Printf("%-16s %8s %15s %15s %14s\n", "pass", "batch", "cavforge img/s", "floor img/s", "floor÷cavforge")
	for _, kind := range kinds {
		best := 0.0
		for _, n := range sizes {
			cf, fl, ratio, err := b.compare(kind, n, *rounds, floor)
			if err != nil {
				return err
			}
			best = max(best, fl)
			fmt.Printf("%-16s %8d %15.2f %15s %14s\n", benchPasses[kind], n, cf, rate(fl), rate(ratio))
		}
		if kind != "act" {
			continue
		}
		// What a run does by default: the probe's batch and memory format,
		// against the floor's best batch size above.
		choice, err := b.probe(sizes)
		if err != nil {
			return err
		}
		cf, _, _, err := b.compare(kind, choice.BatchSize, *rounds, nil)
		if err != nil {
			return err
		}
		ratio := 0.0
		if best > 0 {
			ratio = best / cf
		}
		fmt.Printf("%-16s %8s %15.2f %15s %14s   probe: %s\n", "activation pass", fmt.Sprintf("auto=%d", choice.BatchSize), cf, rate(best), rate(ratio), choice)
		m.SetChannelsLast(false)
	}
	return nil
}

func rate(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

type bench struct {
	m       *model.Model
	layer   string
	chw     []int64
	cast    torch.Autocast
	seconds float64
}

func (b *bench) input(n int) ([]float32, []int64) {
	shape := append([]int64{int64(n)}, b.chw...)
	host := make([]float32, int(shape[0]*shape[1]*shape[2]*shape[3]))
	r := rand.New(rand.NewPCG(1, 2))
	for i := range host {
		host[i] = r.Float32()
	}
	return host, shape
}

// probe runs the activation pass's batch-size probe as a run would, on the
// largest batch asked for.
func (b *bench) probe(sizes []int) (model.BatchChoice, error) {
	host, shape := b.input(max(slices.Max(sizes), model.ProbeCandidates(b.m.Device())[len(model.ProbeCandidates(b.m.Device()))-1]))
	s := torch.NewScope()
	defer s.Close()
	x := s.FromFloat32(host, shape, b.m.Device())
	if err := s.Err(); err != nil {
		return model.BatchChoice{}, err
	}
	return model.ProbeBatch(b.m, x, []string{b.layer}, b.cast, model.ProbeCandidates(b.m.Device()), 0)
}

// step returns one iteration of a pass on a batch of n, as the pipeline runs
// it: upload, pass, download (activations and class gradients); a PGD step
// keeps its perturbed input on the device.
func (b *bench) step(kind string, n int) (func() error, func()) {
	host, shape := b.input(n)
	switch kind {
	case "act", "grad":
		return func() error {
			s := torch.NewScope()
			defer s.Close()
			x := s.FromFloat32(host, shape, b.m.Device())
			var out *torch.Tensor
			if kind == "act" {
				if acts := b.m.Capture(s, x, []string{b.layer}, torch.Inference, b.cast); acts != nil {
					out = acts[0]
				}
			} else {
				out, _ = b.m.ClassGradients(s, x, b.layer, 0, b.cast)
			}
			if err := s.Err(); err != nil {
				return err
			}
			_, err := out.Float32s()
			return err
		}, func() {}
	}
	// PGD: x ← clamp(x + step·sign(∇_x Σ f_l(x)·d), 0, 1) for a fixed d.
	keep := torch.NewScope()
	x := keep.FromFloat32(host, shape, b.m.Device())
	var dir *torch.Tensor
	return func() error {
		s := torch.NewScope()
		defer s.Close()
		leaf := s.Detach(x)
		if leaf == nil {
			return s.Err()
		}
		s.Fail(leaf.SetRequiresGrad(true))
		acts := b.m.Capture(s, leaf, []string{b.layer}, torch.Grad, b.cast)
		if acts == nil {
			return s.Err()
		}
		if dir == nil {
			d := keep.Take(s.RandnLike(acts[0], 7))
			if d == nil {
				return keep.Err()
			}
			dir = d
		}
		g := s.Grad([]*torch.Tensor{s.Sum(s.Mul(acts[0], dir))}, nil, []*torch.Tensor{leaf}, false, false)
		if g == nil {
			return s.Err()
		}
		next := s.Clamp(s.Add(s.Detach(leaf), s.MulScalar(s.Sign(g[0]), 0.002)), 0, 1)
		if err := s.Err(); err != nil {
			return err
		}
		old := x
		x = keep.Take(s.Keep(next))
		old.Close()
		return keep.Err()
	}, keep.Close
}

// measure runs step for b.seconds (at least once) and returns images/s.
func (b *bench) measure(step func() error, n int) (float64, error) {
	start := time.Now()
	iters := 0
	for iters < 1 || time.Since(start).Seconds() < b.seconds {
		if err := step(); err != nil {
			return 0, err
		}
		iters++
	}
	if err := torch.Synchronize(b.m.Device()); err != nil {
		return 0, err
	}
	return float64(n*iters) / time.Since(start).Seconds(), nil
}

// compare takes turns between cavforge and the floor (when there is one) and
// returns the median rate of each and the median of the per-round ratios
// floor ÷ cavforge.
func (b *bench) compare(kind string, n, rounds int, floor *floorProc) (cf, fl, ratio float64, err error) {
	step, done := b.step(kind, n)
	defer done()
	for i := 0; i < 2; i++ { // warm-up
		if err := step(); err != nil {
			return 0, 0, 0, err
		}
	}
	var cfs, fls, ratios []float64
	for r := 0; r < max(rounds, 1); r++ {
		c, err := b.measure(step, n)
		if err != nil {
			return 0, 0, 0, err
		}
		cfs = append(cfs, c)
		if floor != nil {
			f, err := floor.run(kind, n, b.seconds)
			if err != nil {
				return 0, 0, 0, err
			}
			fls = append(fls, f)
			ratios = append(ratios, f/c)
		}
	}
	return median(cfs), median(fls), median(ratios), nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// floorProc is the C++ floor, kept running between measurements so that it
// builds its graphs once.
type floorProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
	bin string
}

func startFloor(bin, modelPath, layer, input, device string) (*floorProc, error) {
	cmd := exec.Command(bin, "--serve", modelPath, layer, input, device)
	cmd.Env = append(os.Environ(), fmt.Sprintf("BENCH_THREADS=%d", torch.NumThreads()))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("baseline %s: %w", bin, err)
	}
	f := &floorProc{cmd: cmd, in: in, out: bufio.NewScanner(out), bin: bin}
	if !f.out.Scan() || f.out.Text() != "ready" {
		f.close()
		return nil, fmt.Errorf("baseline %s did not start (see above)", bin)
	}
	return f, nil
}

func (f *floorProc) run(kind string, n int, seconds float64) (float64, error) {
	if _, err := fmt.Fprintf(f.in, "%s %d %g\n", kind, n, seconds); err != nil {
		return 0, fmt.Errorf("baseline %s: %w", f.bin, err)
	}
	if !f.out.Scan() {
		return 0, fmt.Errorf("baseline %s stopped (see above)", f.bin)
	}
	var images, secs float64
	if _, err := fmt.Sscanf(f.out.Text(), "images %g seconds %g", &images, &secs); err != nil || secs <= 0 {
		return 0, fmt.Errorf("baseline %s: unexpected answer %q", f.bin, f.out.Text())
	}
	return images / secs, nil
}

func (f *floorProc) close() {
	fmt.Fprintln(f.in, "quit")
	f.in.Close()
	f.cmd.Wait()
}
