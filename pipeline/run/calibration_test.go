package run

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/stats"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// The calibration experiment: how often each significance test calls a null
// concept significant, and how often it finds the known answers.
//
//	go test ./pipeline/run -run TestCalibrationTable -calibration -v -timeout 60m
//
// prints the table for the demo model (testdata/demo, random sets drawn
// from data/random_pool) and the planted model (testdata/models); without
// -calibration only TestCalibratedFalseAlarmRateIsNominal runs, on a small
// model.
var calibrationTable = flag.Bool("calibration", false, "run the calibration experiment and print its table")

// calibration holds one model's sets at its layers: pool sets of random
// images (null concepts and random sets alike), known-answer concepts, and
// the class gradients of each target.
type calibration struct {
	e       *experiment
	layers  []string
	targets []string
	pool    []map[string]*activations.Activations // set → layer → values
	known   map[string]map[string]*activations.Activations
	grads   map[string]map[string]*activations.Activations // target → layer
}

// newCalibration loads cfg's model and extracts every set it names: the
// tcav.random sets are the pool, the tcav.concepts the known answers.
func newCalibration(t *testing.T, cfg *config.Config) *calibration {
	t.Helper()
	e := loadedExperiment(t, cfg)
	if err := e.plan.ListImages(); err != nil {
		t.Fatal(err)
	}
	c := &calibration{e: e, layers: cfg.TCAV.Layers, targets: cfg.TCAV.Targets,
		known: map[string]map[string]*activations.Activations{}, grads: map[string]map[string]*activations.Activations{}}
	for _, name := range cfg.TCAV.Random.Sets {
		a, err := e.extract.Extract(e.plan.Sets[name], c.layers)
		if err != nil {
			t.Fatal(err)
		}
		c.pool = append(c.pool, a)
	}
	for _, name := range cfg.TCAV.Concepts {
		a, err := e.extract.Extract(e.plan.Sets[name], c.layers)
		if err != nil {
			t.Fatal(err)
		}
		c.known[name] = a
	}
	for _, target := range c.targets {
		class, err := e.plan.Classes.Index(target)
		if err != nil {
			t.Fatal(err)
		}
		c.grads[target] = map[string]*activations.Activations{}
		for _, l := range c.layers {
			g, err := e.extract.ClassGradients(e.plan.Sets[cfg.ClassSet(target)], l, class)
			if err != nil {
				t.Fatal(err)
			}
			c.grads[target][l] = g
		}
	}
	return c
}

// loadedExperiment is an experiment over cfg with its model loaded, closed
// when the test ends.
func loadedExperiment(t *testing.T, cfg *config.Config) *experiment {
	t.Helper()
	e := &experiment{cfg: cfg, log: quietLog()}
	e.manifest.Stages = map[string]float64{}
	t.Cleanup(func() {
		if e.fitter != nil {
			e.fitter.Close()
		}
		if e.model != nil {
			e.model.Close()
		}
	})
	if err := e.loadModel(); err != nil {
		t.Fatal(err)
	}
	return e
}

// arm is one row of the table: a test with R random sets at alpha.
type arm struct {
	test  stats.Method
	r     int
	alpha float64
}

func (a arm) String() string { return fmt.Sprintf("%-10s R=%-3d alpha %-4g", a.test, a.r, a.alpha) }

// tally counts verdicts of one arm.
type tally struct{ significant, above, unresolved, n int }

// verdict tests concept against the r pool sets after start (a window
// around the ring of pool sets that never holds the concept's own index,
// when it is a pool set) for every target and layer, and counts.
func (c *calibration) verdict(t *testing.T, concept map[string]*activations.Activations, start int, a arm, negatives int, into *tally) {
	t.Helper()
	sig := tcav.Significance{Method: a.test, Alpha: a.alpha, Negatives: negatives}
	for _, l := range c.layers {
		randoms := make([]*activations.Activations, a.r)
		for i := range randoms {
			randoms[i] = c.pool[(start+1+i)%len(c.pool)][l]
		}
		// The calibrated design's CAVs are fitted for every arm: the
		// t-tests ignore them, and the cache keeps each fit once.
		tl, err := tcav.FitLayer(c.e.fitter, []*activations.Activations{concept[l]}, randoms, c.e.plan.Method,
			tcav.Significance{Method: stats.Calibrated, Negatives: negatives})
		if err != nil {
			t.Fatal(err)
		}
		for _, target := range c.targets {
			tl.Target, tl.Grads = target, c.grads[target][l]
			entries, err := tcav.Entries(c.e.device, *tl, sig)
			if err != nil {
				t.Fatal(err)
			}
			x := entries[0]
			into.n++
			if x.Significant {
				into.significant++
				if x.Direction == stats.Above {
					into.above++
				}
			}
			if x.Resolution != "" {
				into.unresolved++
			}
		}
	}
}

// nullRates tests pool set k against the R sets after it, for k < replicates.
func (c *calibration) nullRates(t *testing.T, arms []arm, replicates, negatives int) map[arm]*tally {
	out := map[arm]*tally{}
	for _, a := range arms {
		if a.r >= len(c.pool) {
			t.Fatalf("%v: needs more than %d pool sets", a, len(c.pool))
		}
		out[a] = &tally{}
		for k := 0; k < replicates; k++ {
			c.verdict(t, c.pool[k], k, a, negatives, out[a])
		}
	}
	return out
}

// power tests a known-answer concept (only its targets and layers count)
// against replicates windows of random sets.
func (c *calibration) power(t *testing.T, concept string, arms []arm, replicates, negatives int) map[arm]*tally {
	out := map[arm]*tally{}
	for _, a := range arms {
		out[a] = &tally{}
		for k := 0; k < replicates; k++ {
			c.verdict(t, c.known[concept], k*(len(c.pool)/replicates)-1, a, negatives, out[a])
		}
	}
	return out
}

func rateCell(k, n int) string {
	iv := stats.ClopperPearson(k, n, 0.05)
	return fmt.Sprintf("%3d/%-3d = %.3f [%.3f, %.3f]", k, n, float64(k)/float64(n), iv.Lo, iv.Hi)
}

// tinyModelConfig writes sets of generated images for tiny_traced.pt (no
// preprocessing, 16×16): count pool sets of per images, one class set.
func tinyModelConfig(t *testing.T, count, per int, overrides ...string) *config.Config {
	t.Helper()
	root := t.TempDir()
	// Random images: a colour field plus noise, the same generator for the
	// random sets and the null concepts, a seed per set.
	clutter := func(r *rand.Rand, c int) float32 { return r.Float32() }
	writeSet(t, root, "cls", 16, 1, clutter)
	for i := 0; i < count; i++ {
		writeSet(t, root, fmt.Sprintf("r%d", i), per, uint64(100+i), clutter)
	}
	sets := make([]string, count)
	for i := range sets {
		sets[i] = fmt.Sprintf("r%d", i)
	}
	yaml := `name: calibration
device: cpu
cache_dir: ` + filepath.Join(t.TempDir(), "cache") + `
model:
  path: ` + filepath.Join(modelsDir(), "tiny_traced.pt") + `
  input: {size: [16, 16], mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
data: {root: ` + root + `, max_images: ` + fmt.Sprint(per) + `, batch_size: 64}
tcav:
  targets: ["0", "1", "2"]
  class_sets: {"0": cls, "1": cls, "2": cls}
  concepts: [cls]
  random: [` + strings.Join(sets, ", ") + `]
  layers: [block1]
`
	return loadConfig(t, t.TempDir(), "c.yaml", yaml, overrides...)
}

// A null concept (one more set from the random sets' generator) is called
// significant by the calibrated test at the nominal rate: over 40 null
// concepts × 3 classes of a small model, with 19 random sets each, the
// false-alarm count's 95% interval holds 0.05. The rate of the reference
// t-tests on the same tests is logged next to it.
func TestCalibratedFalseAlarmRateIsNominal(t *testing.T) {
	const replicates, r, negatives = 40, 19, 10
	c := newCalibration(t, tinyModelConfig(t, replicates+r, 12))
	arms := []arm{{stats.Calibrated, r, 0.05}, {stats.TwoSample, 10, 0.05}, {stats.OneSample, 10, 0.05}}
	rates := c.nullRates(t, arms, replicates, negatives)
	for _, a := range arms {
		x := rates[a]
		t.Logf("%v: %s false alarms", a, rateCell(x.significant, x.n))
	}
	x := rates[arms[0]]
	iv := stats.ClopperPearson(x.significant, x.n, 0.05)
	if x.n < 100 || iv.Lo > 0.05 || iv.Hi < 0.05 || x.unresolved != 0 {
		t.Fatalf("calibrated test: %d of %d null concepts significant (%d unresolved), 95%% interval [%.3f, %.3f] does not hold 0.05",
			x.significant, x.n, x.unresolved, iv.Lo, iv.Hi)
	}
}

// TestCalibrationTable is the experiment behind the closing note of the
// calibrated test: false alarms of each test at 0.05 and 0.01 on null
// concepts, and power on the known answers.
func TestCalibrationTable(t *testing.T) {
	if !*calibrationTable {
		t.Skip("run with -calibration to print the calibration table (minutes)")
	}
	arms := []arm{
		{stats.TwoSample, 10, 0.05}, {stats.TwoSample, 10, 0.01}, {stats.TwoSample, 30, 0.05}, {stats.TwoSample, 30, 0.01},
		{stats.OneSample, 10, 0.05}, {stats.OneSample, 10, 0.01},
		{stats.Calibrated, 19, 0.05}, {stats.Calibrated, 99, 0.05}, {stats.Calibrated, 99, 0.01},
	}
	const negatives = 20
	print := func(title string, rates map[arm]*tally, col string) {
		var b strings.Builder
		fmt.Fprintf(&b, "\n%s\n%-32s %-36s %-8s %s\n", title, "test", col, "above", "unresolved")
		for _, a := range arms {
			x := rates[a]
			k := x.significant
			if col == "significant above (power)" {
				k = x.above
			}
			fmt.Fprintf(&b, "%-32v %-36s %-8d %d\n", a, rateCell(k, x.n), x.above, x.unresolved)
		}
		fmt.Println(b.String())
	}

	// Demo model: 120 disjoint sets of 16 from the pool; null concepts are
	// pool sets, known answer striped → zebra.
	demoCfg := demoConfig(t, "", "tcav.random.from=random_pool", "tcav.random.count=120", "data.max_images=16",
		"tcav.targets=[zebra,dalmatian,honeycomb,plain]", "tcav.layers=[block2,block3]", "tcav.concepts=[striped]")
	demo := newCalibration(t, demoCfg)
	print("demo model (testdata/demo), null concepts: 15 pool sets × 4 classes × 2 layers", demo.nullRates(t, arms, 15, negatives), "false alarms [95% CI]")
	demo.targets = []string{"zebra"}
	print("demo model, known answer striped → zebra: 10 windows of random sets × 2 layers", demo.power(t, "striped", arms, 10, negatives), "significant above (power)")

	// Planted model: feature 0 is red, logit 0 reads it; reddish → 0 is
	// the related concept, bluish → 0 the unrelated one.
	planted := newCalibration(t, plantedConfig(t, 120))
	planted.targets = []string{"0"}
	print("planted model (testdata/models/planted.pt), known answer reddish → 0: 20 windows", planted.power(t, "reddish", arms, 20, negatives), "significant above (power)")
	// bluish is one set: its 20 windows share its own sampling noise, so
	// this row is one concept's verdict 20 times, not a false-alarm rate.
	print("planted model, unrelated bluish → 0 (one set): 20 windows", planted.power(t, "bluish", arms, 20, negatives), "significant, either side")
}
