package run

import (
	"fmt"
	"io"
	"math"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/interrupt"
	"github.com/cavforge/cavforge/pipeline/stats"
	"github.com/cavforge/cavforge/pipeline/tcav"
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
	e := &experiment{cfg: cfg, log: log, sets: setsMap(), effects: map[string]string{}}
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
	if err := interrupt.Err(); err != nil {
		return err
	}
	if err := e.listImages(); err != nil {
		return err
	}
	t := cfg.TCAV
	r := len(t.Random.Sets)
	fmt.Fprintf(w, "model    %s on %s, %d classes, input 3x%dx%d\n", cfg.Model.Path, e.device, e.classes.N, cfg.Model.Input.Size[0], cfg.Model.Input.Size[1])
	in := cfg.Model.Input
	prep := fmt.Sprintf("resized straight to %dx%d", in.Size[1], in.Size[0])
	if in.Crop == config.CropCenter {
		prep = fmt.Sprintf("shorter side resized to %d, center %dx%d cut out", in.Resize, in.Size[1], in.Size[0])
	}
	fmt.Fprintf(w, "data     %s: %d sets, up to %d images each; images are %s\n", cfg.Data.Root, len(e.sets), cfg.Data.MaxImages, prep)
	for _, name := range sortedKeys(e.sets) {
		fmt.Fprintf(w, "  %-20s %s\n", name, e.effects[name])
	}
	if len(t.Targets) > 0 {
		sig := e.significance(len(t.Concepts))
		null := 0
		if sig.Method == stats.Calibrated {
			null = len(tcav.NewDesign(r, sig.Negatives).Pairs()) - r
		}
		fmt.Fprintf(w, "tcav     %d targets × %d concepts × %d layers, %d random sets: %d CAVs (%s), %d gradient passes\n",
			len(t.Targets), len(t.Concepts), len(t.Layers), r, len(t.Layers)*((len(t.Concepts)+1)*r+max(null, 0)),
			t.CAV.Classifier, len(t.Targets)*len(t.Layers))
		th := sig.Threshold(len(t.Concepts))
		fmt.Fprintf(w, "         significance: %s test, alpha %.3g per test", sig.Method, th)
		if sig.Method == stats.Calibrated {
			fmt.Fprintf(w, ", each set scored against %d others; smallest p with %d random sets 1/%d",
				tcav.NewDesign(r, sig.Negatives).Negatives(), r, r+1)
		}
		fmt.Fprintln(w)
		if sig.Method == stats.Calibrated && !stats.Reachable(r, th) {
			fmt.Fprintf(w, "         warning: %s (alpha %.3g): no concept can be significant; it needs %d random sets (tcav.random.count, or tcav.random.from a pool folder)\n",
				stats.Resolution(r), th, stats.RandomSetsNeeded(th))
		}
	}
	if sig := e.significance(len(t.Concepts)); sig.Method == stats.Calibrated {
		th := sig.Threshold(len(t.Concepts))
		for i, a := range cfg.Attack {
			if !stats.Reachable(a.JudgeRandom, th) {
				fmt.Fprintf(w, "attack.%d  warning: judged on %d held-out random sets, the calibrated test %s (alpha %.3g): its verdicts cannot be significant; it needs judge_random %d\n",
					i, a.JudgeRandom, stats.Resolution(a.JudgeRandom), th, stats.RandomSetsNeeded(th))
			}
		}
	}
	return nil
}

// checkSplits finds the sets too small for a held-out CAV split before any
// compute: every set a CAV is fitted on needs an image on each side of the
// split.
func (e *experiment) checkSplits() error {
	tf := e.cfg.TCAV.CAV.TestFraction
	names := append(append([]string(nil), e.cfg.TCAV.Concepts...), e.cfg.TCAV.Random.Sets...)
	for _, a := range e.cfg.Attack {
		names = append(names, a.Concept)
	}
	for _, f := range e.cfg.Facets {
		names = append(names, f.Facet)
	}
	for _, name := range names {
		set, listed := e.sets[name]
		if !listed { // not read: tcav.cavs_from
			continue
		}
		n := len(set.Files)
		if test := int(math.Round(tf * float64(n))); test < 1 || n-test < 1 {
			need := 2
			for t := int(math.Round(tf * float64(need))); t < 1 || need-t < 1; t = int(math.Round(tf * float64(need))) {
				need++
			}
			return fmt.Errorf("data.root/%s: %d images are too few for a held-out CAV split of tcav.cav.test_fraction %g (it needs at least %d)",
				name, n, tf, need)
		}
	}
	return nil
}
