package run

import (
	"fmt"
	"io"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/config"
)

// Validate checks what can be checked without heavy compute — the model
// loads and accepts the input size, layers exist, targets are classes, every
// image folder exists and is not empty — and writes the plan to w.
func Validate(cfg *config.Config, log *logrus.Logger, w io.Writer) error {
	if log == nil {
		log = logrus.StandardLogger()
	}
	e := &experiment{cfg: cfg, log: log, sets: setsMap()}
	e.manifest.Stages = map[string]float64{}
	e.manifest.ImageLists = map[string]string{}
	defer func() {
		if e.model != nil {
			e.model.Close()
		}
	}()
	if err := e.loadModel(); err != nil {
		return err
	}
	if err := e.listImages(); err != nil {
		return err
	}
	t := cfg.TCAV
	r := len(t.Random.Sets)
	fmt.Fprintf(w, "model    %s on %s, %d classes, input 3x%dx%d\n", cfg.Model.Path, e.device, e.classes, cfg.Model.Input.Size[0], cfg.Model.Input.Size[1])
	fmt.Fprintf(w, "data     %s: %d sets, up to %d images each\n", cfg.Data.Root, len(e.sets), cfg.Data.MaxImages)
	for _, name := range sortedKeys(e.sets) {
		fmt.Fprintf(w, "  %-20s %d images\n", name, len(e.sets[name].Files))
	}
	if len(t.Targets) > 0 {
		fmt.Fprintf(w, "tcav     %d targets × %d concepts × %d layers, %d random sets: %d CAVs (%s), %d gradient passes\n",
			len(t.Targets), len(t.Concepts), len(t.Layers), r, len(t.Layers)*(len(t.Concepts)+1)*r,
			t.CAV.Classifier, len(t.Targets)*len(t.Layers))
	}
	return nil
}
