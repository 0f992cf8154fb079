package model

import (
	"fmt"
	"strings"
	"time"

	"github.com/cavforge/cavforge/cgo/torch"
)

// BatchChoice is how the activation pass runs: images per pass and memory
// format, where they came from, and the measurements behind them.
type BatchChoice struct {
	BatchSize    int           `json:"batch_size"`
	ChannelsLast bool          `json:"channels_last"`
	Source       string        `json:"source"` // "probe" or "config"
	Plan         string        `json:"plan"`   // what the pass runs (Model.Plan)
	Timings      []BatchTiming `json:"timings,omitempty"`
}

// BatchTiming is one probe measurement.
type BatchTiming struct {
	BatchSize       int     `json:"batch_size"`
	ChannelsLast    bool    `json:"channels_last"`
	ImagesPerSecond float64 `json:"images_per_s"`
}

func (c BatchChoice) String() string {
	var t []string
	for _, m := range c.Timings {
		f := ""
		if m.ChannelsLast {
			f = " cl"
		}
		t = append(t, fmt.Sprintf("%d%s: %.1f", m.BatchSize, f, m.ImagesPerSecond))
	}
	return fmt.Sprintf("batch %d, channels_last %v (%s; images/s %s)", c.BatchSize, c.ChannelsLast, c.Source, strings.Join(t, ", "))
}

// ProbeCandidates are the batch sizes worth timing on a device: on a CPU
// small batches keep the activations in cache (batch 1–2 ran twice as fast
// as 10 for a MobileNet backbone on 2 cores); a GPU wants large ones.
func ProbeCandidates(device string) []int {
	if strings.HasPrefix(device, "cuda") {
		return []int{16, 32, 64, 128}
	}
	return []int{1, 2, 4, 8, 16}
}

// ProbeBatch times the activation pass at layers (with the download of its
// values, as the pipeline does) on the first images of x, a preprocessed
// batch: first both memory formats at a small batch, then every candidate
// batch size no larger than x in the faster format. It leaves the model set
// to the chosen format. When fixed > 0 the batch size is fixed and only the
// format is measured.
func ProbeBatch(m *Model, x *torch.Tensor, layers []string, cast torch.Autocast, candidates []int, fixed int) (BatchChoice, error) {
	plan, err := m.Plan(torch.ActivationPass, layers)
	if err != nil {
		return BatchChoice{}, err
	}
	return probe(m, x, plan, candidates, fixed, true, func(s *torch.Scope, xb *torch.Tensor) []*torch.Tensor {
		return m.Capture(s, xb, layers, torch.Inference, cast)
	})
}

// ProbeGradBatch times the class-gradient pass at layer the same way (one
// memory format: gradient graphs take the input as it is).
func ProbeGradBatch(m *Model, x *torch.Tensor, layer string, cast torch.Autocast, candidates []int, fixed int) (BatchChoice, error) {
	plan, err := m.Plan(torch.LeafPass, []string{layer})
	if err != nil {
		return BatchChoice{}, err
	}
	return probe(m, x, plan, candidates, fixed, false, func(s *torch.Scope, xb *torch.Tensor) []*torch.Tensor {
		g, _ := m.ClassGradients(s, xb, layer, 0, cast)
		return []*torch.Tensor{g}
	})
}

func probe(m *Model, x *torch.Tensor, plan string, candidates []int, fixed int, formats bool,
	pass func(*torch.Scope, *torch.Tensor) []*torch.Tensor) (BatchChoice, error) {
	shape := x.Shape()
	if len(shape) == 0 {
		return BatchChoice{}, fmt.Errorf("probe: no input")
	}
	n := int(shape[0])
	choice := BatchChoice{Source: "probe", Plan: plan}
	rate := func(b int, cl bool) (float64, error) {
		if formats {
			m.SetChannelsLast(cl)
		}
		s := torch.NewScope()
		defer s.Close()
		xb := s.Narrow(x, 0, 0, int64(b))
		once := func() error {
			ps := torch.NewScope()
			defer ps.Close()
			for _, a := range pass(ps, xb) {
				if _, err := a.Float32s(); err != nil {
					return err
				}
			}
			return ps.Err()
		}
		if err := once(); err != nil { // warm-up: kernels and buffers for this shape
			return 0, err
		}
		start := time.Now()
		reps := 0
		for reps < 1 || (reps < 4 && time.Since(start) < 60*time.Millisecond) {
			if err := once(); err != nil {
				return 0, err
			}
			reps++
		}
		if err := torch.Synchronize(m.Device()); err != nil {
			return 0, err
		}
		r := float64(b*reps) / time.Since(start).Seconds()
		choice.Timings = append(choice.Timings, BatchTiming{b, cl, r})
		return r, nil
	}
	small := min(n, 2)
	if fixed > 0 {
		small = min(n, fixed, 4)
	}
	contiguous, err := rate(small, false)
	if err != nil {
		return choice, err
	}
	best, bestRate := small, contiguous
	if formats {
		last, err := rate(small, true)
		if err != nil {
			return choice, err
		}
		// channels_last only for a clear win: the measurement is noisy.
		choice.ChannelsLast = last > 1.05*contiguous
		if choice.ChannelsLast {
			bestRate = last
		}
	}
	if fixed > 0 {
		choice.BatchSize, choice.Source = fixed, "config"
		if formats {
			m.SetChannelsLast(choice.ChannelsLast)
		}
		return choice, nil
	}
	for _, b := range candidates {
		if b > n || b == small {
			continue
		}
		r, err := rate(b, choice.ChannelsLast)
		if err != nil {
			return choice, err
		}
		if r > bestRate {
			best, bestRate = b, r
		}
	}
	choice.BatchSize = best
	if formats {
		m.SetChannelsLast(choice.ChannelsLast)
	}
	return choice, nil
}
