package model

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/cgo/torch"
)

// Spec is how a run loads its model.
type Spec struct {
	Path      string
	Labels    string // labels file; "" names classes by index only
	Device    string // auto | cpu | cuda | cuda:N
	Precision string // fp32 | bf16 | fp16; the CPU runs fp32
	Input     Input
	Layers    []string // every layer the run captures (see Prepare)
}

// Open loads and prepares the model of sp, checks its layers, and reads its
// labels, which must name every output. It says on log where it falls back
// to the CPU or to fp32, and which names stand for more than one class. It
// returns the autocast the passes that may use reduced precision run with.
func Open(sp Spec, log logrus.FieldLogger) (m *Model, classes Classes, cast torch.Autocast, err error) {
	dev, fellBack, err := torch.ResolveDevice(sp.Device)
	if err != nil {
		return nil, classes, cast, err
	}
	if fellBack {
		log.Warn("device auto: no CUDA device found, running on the CPU")
	}
	cast = torch.FP32
	if strings.HasPrefix(dev, "cuda") {
		cast = map[string]torch.Autocast{"bf16": torch.BF16, "fp16": torch.FP16}[sp.Precision]
	} else if sp.Precision != "fp32" {
		log.Warnf("precision %s applies on CUDA only; the CPU runs fp32", sp.Precision)
	}
	if m, err = Load(sp.Path, dev, sp.Input); err != nil {
		return nil, classes, cast, err
	}
	defer func() {
		if err != nil {
			m.Close()
			m = nil
		}
	}()
	if err := m.CheckLayers(sp.Layers); err != nil {
		return m, classes, cast, err
	}
	classes.Path = sp.Labels
	if classes.N, err = m.Prepare(sp.Layers); err != nil {
		return m, classes, cast, err
	}
	if sp.Labels == "" {
		return m, classes, cast, nil
	}
	if classes.Labels, err = ReadLabels(sp.Labels); err != nil {
		return m, classes, cast, err
	}
	if len(classes.Labels) != classes.N {
		return m, classes, cast, fmt.Errorf("model.labels %s has %d names but the model has %d outputs", sp.Labels, len(classes.Labels), classes.N)
	}
	if dup := classes.Repeated(); len(dup) > 0 {
		log.Warnf("model.labels %s: names that stand for more than one class: %s; a target with such a name is an error, give its index",
			sp.Labels, strings.Join(dup, ", "))
	}
	return m, classes, cast, nil
}

// DeviceName is the GPU's name for a cuda:N device, else "cpu".
func DeviceName(dev string) string {
	if idx, ok := strings.CutPrefix(dev, "cuda:"); ok {
		names, _ := torch.CUDADevices()
		if i, err := strconv.Atoi(idx); err == nil && i < len(names) {
			return names[i]
		}
	}
	return "cpu"
}
