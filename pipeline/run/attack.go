package run

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/atomicfile"
	"github.com/cavforge/cavforge/pipeline/attack"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/report"
	"github.com/cavforge/cavforge/pipeline/stats"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// attacks runs every attack of the config. Each is judged by the real
// pipeline: the perturbed images are written as 8-bit PNG, read back and
// scored with the configured classifier against random sets the attack
// never saw.
func (e *experiment) attacks() error {
	for _, a := range e.cfg.Attack {
		if err := e.attack(e.dir, a); err != nil {
			return fmt.Errorf("attack %s→%s at %s: %w", a.Concept, a.Target, a.Layer, err)
		}
	}
	return nil
}

func (e *experiment) attack(runDir string, a config.Attack) error {
	randoms := e.cfg.TCAV.Random.Sets
	judge := randoms[len(randoms)-a.JudgeRandom:]
	seen := randoms[:len(randoms)-a.JudgeRandom]
	class, err := e.classIndex(a.Target)
	if err != nil {
		return err
	}
	grads, err := e.extract.ClassGradients(e.sets[e.classSet(a.Target)], a.Layer, class)
	if err != nil {
		return err
	}
	actsOf := func(set string) (*activations.Activations, error) {
		m, err := e.extract.Extract(e.sets[set], []string{a.Layer})
		if err != nil {
			return nil, err
		}
		return m[a.Layer], nil
	}
	clean, err := actsOf(a.Concept)
	if err != nil {
		return err
	}
	judgeActs := make([]*activations.Activations, len(judge))
	for i, r := range judge {
		if judgeActs[i], err = actsOf(r); err != nil {
			return err
		}
	}
	seenMean, err := meanActivation(seen, actsOf)
	if err != nil {
		return err
	}
	obj, err := e.objective(a, grads, seenMean, actsOf)
	if err != nil {
		return err
	}
	defer obj.Close()

	settings := e.cavSettings()
	other := settings
	other.Classifier = map[string]string{"sgd-hinge": "logistic", "logistic": "sgd-hinge", "mean-diff": "sgd-hinge"}[settings.Classifier]
	before, err := e.judge(a, clean, judgeActs, grads, settings)
	if err != nil {
		return err
	}
	beforeOther, err := e.judge(a, clean, judgeActs, grads, other)
	if err != nil {
		return err
	}

	// The concept images as the model sees them, on the 8-bit grid.
	set := e.sets[a.Concept]
	imgs, err := images.LoadSet(set.Files, e.cfg.Data.SkipBadImages, e.log)
	if err != nil {
		return err
	}
	x0, shape, err := e.pixels(imgs)
	if err != nil {
		return err
	}
	cleanPred, err := attack.Predictions(e.model, x0, shape, e.cfg.Data.BatchSize)
	if err != nil {
		return err
	}
	for _, eps := range a.Eps {
		if a.Norm == "linf" && attack.Levels(eps) == 0 {
			e.log.Warnf("attack %s→%s: eps %g is below one 8-bit level (1/255): the written images cannot change", a.Concept, a.Target, eps)
		}
		budget := attack.Budget{Norm: a.Norm, Eps: eps, Step: a.Step, Steps: a.Steps, RandomStart: a.RandomStart, Momentum: a.Momentum,
			Progress: e.opts.Progress.New(fmt.Sprintf("attack %s→%s eps %g", a.Concept, a.Target, eps), a.Steps)}
		seed := cav.Seed(e.cfg.Seed, "attack:"+a.Concept, a.Target+"/"+a.Goal+"/"+a.Objective, a.Layer) ^ math.Float64bits(eps)
		res, err := attack.Perturb(e.model, x0, shape, a.Layer, obj, budget, e.cfg.Data.BatchSize, seed)
		if err != nil {
			return err
		}
		rel := attackDir(a, eps)
		name := filepath.Base(rel)
		written, err := writePerturbed(runDir, rel, imgs, res.Pixels, shape)
		if err != nil {
			return err
		}
		if err := writeLosses(filepath.Join(runDir, rel+".losses.csv"), res.Losses); err != nil {
			return err
		}
		grid := attack.Grid(x0, res.Pixels, int(shape[0]), int(shape[2]), int(shape[3]), 4)
		if err := images.WritePNG8(filepath.Join(runDir, rel+"-grid.png"), grid); err != nil {
			return err
		}
		// Judged from the files, as anyone reading them would see them.
		hash, err := images.ListHash(runDir, written)
		if err != nil {
			return err
		}
		perturbed := activations.Set{Name: a.Concept, Files: written, Hash: hash, Preprocessed: true}
		back, err := e.extract.Extract(perturbed, []string{a.Layer})
		if err != nil {
			return err
		}
		after, err := e.judge(a, back[a.Layer], judgeActs, grads, settings)
		if err != nil {
			return err
		}
		afterOther, err := e.judge(a, back[a.Layer], judgeActs, grads, other)
		if err != nil {
			return err
		}
		e.release(back[a.Layer]) // each budget's set is judged once
		advPred, err := attack.Predictions(e.model, res.Pixels, shape, e.cfg.Data.BatchSize)
		if err != nil {
			return err
		}
		changed := 0
		for i := range advPred {
			if advPred[i] != cleanPred[i] {
				changed++
			}
		}
		size := attack.Measure(x0, res.Pixels, int(shape[0]))
		e.log.WithField("attack", name).Infof("score %.3f → %.3f (p %.2g → %.2g), PSNR %.1f dB, %d/%d predictions changed",
			before.Mean, after.Mean, before.PValue, after.PValue, size.PSNRMean, changed, len(advPred))
		e.results.Attack = append(e.results.Attack, report.AttackEntry{
			Concept: a.Concept, Target: a.Target, Layer: a.Layer, Goal: a.Goal, Objective: a.Objective,
			Eps: eps, Norm: a.Norm, Before: before, After: after,
			Linf: size.Linf, L2Mean: size.L2Mean, PSNRMean: size.PSNRMean,
			ChangedPrediction: float64(changed) / float64(len(advPred)),
			Images:            rel + "/",
			Transfer:          &report.Transfer{Classifier: other.Classifier, Before: beforeOther, After: afterOther},
		})
	}
	return nil
}

// attackDir is the run-relative folder of an attack's images at one budget.
func attackDir(a config.Attack, eps float64) string {
	return filepath.ToSlash(filepath.Join("attack", fmt.Sprintf("%s-%s-%s-eps%s",
		a.Concept, a.Target, a.Layer, strconv.FormatFloat(eps, 'g', -1, 64))))
}

func (e *experiment) cavSettings() cav.Settings {
	c := e.cfg.TCAV.CAV
	return cav.Settings{Classifier: c.Classifier, Alpha: c.Alpha, Epochs: c.Epochs, TestFraction: c.TestFraction}
}

// objective builds the attack's loss from what it may see: the class
// gradients and the random sets it is allowed to use.
func (e *experiment) objective(a config.Attack, grads *activations.Activations, seenMean []float32,
	actsOf func(string) (*activations.Activations, error)) (attack.Objective, error) {
	switch a.Objective {
	case "tcav-surrogate":
		return attack.NewSurrogate(e.device, grads.Data, grads.N, seenMean, a.Tau, a.Goal == "promote")
	case "feature-collision":
		target := seenMean
		if a.Toward != "" && a.Toward != "random" {
			t, err := actsOf(a.Toward)
			if err != nil {
				return nil, err
			}
			target = mean(t)
		}
		return attack.NewCollision(e.device, target)
	}
	return nil, fmt.Errorf("objective %q: want tcav-surrogate or feature-collision", a.Objective)
}

// judge scores a concept's activations against the held-out random sets
// with the given classifier, as the TCAV stage would.
func (e *experiment) judge(a config.Attack, concept *activations.Activations, randoms []*activations.Activations,
	grads *activations.Activations, st cav.Settings) (report.AttackScore, error) {
	l := tcav.Layer{Target: a.Target, Layer: a.Layer, Grads: grads, Concepts: []string{a.Concept},
		CAVs: map[string][]*cav.CAV{}}
	for i, r := range randoms {
		l.Randoms = append(l.Randoms, r.Set)
		c, err := e.fitCAV(concept, r, st)
		if err != nil {
			return report.AttackScore{}, err
		}
		l.CAVs[a.Concept] = append(l.CAVs[a.Concept], c)
		b, err := e.fitCAV(r, randoms[(i+1)%len(randoms)], st)
		if err != nil {
			return report.AttackScore{}, err
		}
		l.Baseline = append(l.Baseline, b)
	}
	sig := e.cfg.TCAV.Significance
	// Corrected as the TCAV stage corrects the same concept, so that the
	// "before" verdict is the one the TCAV table shows.
	entries, err := tcav.Entries(e.device, l, tcav.Significance{Method: stats.Method(sig.Test), Alpha: sig.Alpha,
		Bonferroni: sig.Bonferroni, Tests: max(1, len(e.cfg.TCAV.Concepts))})
	if err != nil {
		return report.AttackScore{}, err
	}
	x := entries[0]
	rm := stats.Mean(x.RandomScores)
	return report.AttackScore{Mean: x.Mean, Std: x.Std, PValue: x.PValue, Significant: x.Significant,
		Direction: x.Direction, RandomMean: &rm}, nil
}

// pixels turns decoded images into the model's input pixels on the 8-bit
// grid, on the host.
func (e *experiment) pixels(imgs []images.Image) ([]float32, []int64, error) {
	s := torch.NewScope()
	defer s.Close()
	x := e.model.Pixels(s, imgs)
	if err := s.Err(); err != nil {
		return nil, nil, err
	}
	px, err := x.Float32s()
	if err != nil {
		return nil, nil, err
	}
	images.Quantize(px)
	return px, x.Shape(), nil
}

func writePerturbed(runDir, rel string, imgs []images.Image, px []float32, shape []int64) ([]string, error) {
	dir := filepath.Join(runDir, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	per := int(shape[1] * shape[2] * shape[3])
	var out []string
	seen := map[string]string{}
	for i, im := range imgs {
		base := strings.TrimSuffix(filepath.Base(im.Path), filepath.Ext(im.Path)) + ".png"
		if other, dup := seen[base]; dup {
			return nil, fmt.Errorf("%s and %s would both be written as %s: rename one", other, im.Path, base)
		}
		seen[base] = im.Path
		path := filepath.Join(dir, base)
		img := images.Image{Path: path, C: 3, H: int(shape[2]), W: int(shape[3]), Pix: px[i*per : (i+1)*per]}
		if err := images.WritePNG8(path, img); err != nil {
			return nil, err
		}
		out = append(out, path)
	}
	return out, nil
}

func writeLosses(path string, losses []float64) error {
	var b strings.Builder
	b.WriteString("step,loss\n")
	for i, l := range losses {
		fmt.Fprintf(&b, "%d,%s\n", i, strconv.FormatFloat(l, 'g', 8, 64))
	}
	return atomicfile.Write(path, []byte(b.String()))
}

func meanActivation(sets []string, actsOf func(string) (*activations.Activations, error)) ([]float32, error) {
	var sum []float64
	n := 0
	for _, s := range sets {
		a, err := actsOf(s)
		if err != nil {
			return nil, err
		}
		if sum == nil {
			sum = make([]float64, a.Dim())
		}
		for i, v := range a.Data {
			sum[i%len(sum)] += float64(v)
		}
		n += a.N
	}
	out := make([]float32, len(sum))
	for i := range sum {
		out[i] = float32(sum[i] / float64(n))
	}
	return out, nil
}

func mean(a *activations.Activations) []float32 {
	m, _ := meanActivation([]string{a.Set}, func(string) (*activations.Activations, error) { return a, nil })
	return m
}
