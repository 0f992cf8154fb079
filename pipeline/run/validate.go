package run

import (
	"io"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/interrupt"
)

// Validate checks what can be checked without heavy compute — the model
// loads and accepts the input size, layers exist, targets are classes, every
// image folder exists and is not empty — and writes the plan to w.
// Stages are those the run is limited to (--stages); none: all.
func Validate(cfg *config.Config, log *logrus.Logger, w io.Writer, stages ...string) error {
	if log == nil {
		log = logrus.StandardLogger()
	}
	if err := CheckStages(cfg, stages); err != nil {
		return err
	}
	e := &experiment{cfg: cfg, log: log}
	e.manifest.Stages = map[string]float64{}
	defer func() {
		if e.model != nil {
			e.model.Close()
		}
	}()
	if err := e.loadModel(); err != nil {
		return err
	}
	if err := interrupt.Err(); err != nil {
		return err
	}
	if err := e.plan.ListImages(); err != nil {
		return err
	}
	e.plan.Print(w, e.device)
	return nil
}
