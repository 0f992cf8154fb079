package run

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/atomicfile"
	"github.com/cavforge/cavforge/pipeline/attack"
	"github.com/cavforge/cavforge/pipeline/audit"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/model"
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

	settings, other := e.method, e.transfer
	before, err := e.judge(a, clean, judgeActs, grads, settings)
	if err != nil {
		return err
	}
	beforeOther, err := e.judge(a, clean, judgeActs, grads, other)
	if err != nil {
		return err
	}

	// Transfer: the analyst's own preprocessing and a JPEG round trip, each
	// judged before and after.
	alt, altDesc := e.alternativeInput()
	altJudge, err := e.transferJudge(a, alt, judge)
	if err != nil {
		return err
	}
	beforeAlt, err := altJudge(e.sets[a.Concept])
	if err != nil {
		return err
	}
	beforeJPEG, err := e.judgeJPEG(a, e.sets[a.Concept], judgeActs, grads, settings)
	if err != nil {
		return err
	}

	// The concept files at their own sizes: the attack poisons files.
	set := e.sets[a.Concept]
	imgs, err := images.LoadStored(set.Files, e.cfg.Data.SkipBadImages, e.log)
	if err != nil {
		return err
	}
	cleanLogits, err := attack.Logits(e.model, imgs, e.cfg.Data.BatchSize)
	if err != nil {
		return err
	}
	cleanPred := attack.Predictions(cleanLogits)
	var stealth *attack.Stealth
	if a.Stealth.Weight > 0 {
		stealth = &attack.Stealth{Weight: a.Stealth.Weight, Form: a.Stealth.Form, Margin: a.Stealth.Margin, Clean: cleanLogits}
	}
	adaptive := adaptiveOf(a.Adaptive)
	for _, eps := range a.Eps {
		if a.Norm == "linf" && attack.Levels(eps) == 0 {
			e.log.Warnf("attack %s→%s: eps %g is below one 8-bit level (1/255): the written images cannot change", a.Concept, a.Target, eps)
		}
		budget := attack.Budget{Norm: a.Norm, Eps: eps, Step: a.Step, Steps: a.Steps, RandomStart: a.RandomStart, Momentum: a.Momentum, Stealth: stealth, Adaptive: adaptive,
			Progress: e.opts.Progress.New(fmt.Sprintf("attack %s→%s eps %g", a.Concept, a.Target, eps), a.Steps)}
		seed := cav.Seed(e.cfg.Seed, "attack:"+a.Concept, a.Target+"/"+a.Goal+"/"+a.Objective, a.Layer) ^ math.Float64bits(eps)
		res, err := attack.Perturb(e.model, imgs, a.Layer, obj, budget, e.cfg.Data.BatchSize, seed)
		if err != nil {
			return err
		}
		rel := attackDir(a, eps)
		name := filepath.Base(rel)
		written, err := attack.WritePoisoned(filepath.Join(runDir, rel), res.Images)
		if err != nil {
			return err
		}
		// Everything below reads the files, as anyone handed them would.
		size, err := attack.WriteManifest(filepath.Join(runDir, rel, "poisoned.json"), set.Files, written, eps, a.Norm)
		if err != nil {
			return err
		}
		if err := writeLosses(filepath.Join(runDir, rel+".losses.csv"), res.Losses); err != nil {
			return err
		}
		back, err := images.LoadStored(written, false, e.log)
		if err != nil {
			return err
		}
		grid, err := attack.Grid(e.model, imgs, back, 4)
		if err != nil {
			return err
		}
		if err := images.WritePNG8(filepath.Join(runDir, rel+"-grid.png"), grid); err != nil {
			return err
		}
		advLogits, err := attack.Logits(e.model, back, e.cfg.Data.BatchSize)
		if err != nil {
			return err
		}
		advPred := attack.Predictions(advLogits)
		hash, err := images.ListHash(runDir, written)
		if err != nil {
			return err
		}
		poisoned := activations.Set{Name: a.Concept, Files: written, Hash: hash}
		acts, err := e.extract.Extract(poisoned, []string{a.Layer})
		if err != nil {
			return err
		}
		after, err := e.judge(a, acts[a.Layer], judgeActs, grads, settings)
		if err != nil {
			return err
		}
		afterOther, err := e.judge(a, acts[a.Layer], judgeActs, grads, other)
		if err != nil {
			return err
		}
		e.fitter.Release(acts[a.Layer]) // each budget's set is judged once
		afterAlt, err := altJudge(poisoned)
		if err != nil {
			return err
		}
		afterJPEG, err := e.judgeJPEG(a, poisoned, judgeActs, grads, settings)
		if err != nil {
			return err
		}
		changed, logitChange := 0, 0.0
		for i := range advPred {
			if advPred[i] != cleanPred[i] {
				changed++
			}
			logitChange += float64(advLogits[i][class]-cleanLogits[i][class]) / float64(len(advPred))
		}
		e.log.WithField("attack", name).Infof("score %.3f → %.3f (p %.2g → %.2g), PSNR %.1f dB, %d/%d predictions changed; "+
			"transfer: %s %.3f → %.3f, %s %.3f → %.3f, JPEG q%d %.3f → %.3f",
			before.Mean, after.Mean, before.PValue, after.PValue, size.PSNRMean, changed, len(advPred),
			other.Name, beforeOther.Mean, afterOther.Mean, altDesc, beforeAlt.Mean, afterAlt.Mean,
			jpegQuality, beforeJPEG.Mean, afterJPEG.Mean)
		e.results.Attack = append(e.results.Attack, report.AttackEntry{
			Concept: a.Concept, Target: a.Target, Layer: a.Layer, Goal: a.Goal, Objective: a.Objective,
			Eps: eps, Norm: a.Norm, Before: before, After: after,
			Linf: size.Linf, L2Mean: size.L2Mean, PSNRMean: size.PSNRMean,
			ChangedPrediction: float64(changed) / float64(len(advPred)),
			ClassLogitChange:  logitChange,
			StealthWeight:     a.Stealth.Weight,
			StealthForm:       stealthForm(a.Stealth),
			Adaptive:          a.Adaptive.Purifications,
			ShiftWeight:       a.Adaptive.ShiftWeight,
			AlignmentWeight:   a.Adaptive.AlignmentWeight,
			Images:            rel + "/",
			Transfer: []report.Transfer{
				{Kind: "classifier", Setting: other.Name, Before: beforeOther, After: afterOther},
				{Kind: "preprocessing", Setting: altDesc, Before: beforeAlt, After: afterAlt},
				{Kind: "jpeg", Setting: fmt.Sprintf("quality %d", jpegQuality), Before: beforeJPEG, After: afterJPEG},
			},
		})
	}
	return nil
}

// jpegQuality is the re-encoding an analyst's pipeline commonly applies.
const jpegQuality = 90

// alternativeInput is the preprocessing a different analyst would use: no
// crop when the config crops, otherwise the common 87.5% center crop.
func (e *experiment) alternativeInput() (model.Input, string) {
	in := e.model.Input
	if in.Resize > 0 && in.Crop == config.CropCenter {
		in.Resize, in.Crop = 0, config.CropNone
		return in, "no crop"
	}
	in.Resize = int(math.Round(float64(max(in.Size[0], in.Size[1])) / 0.875))
	in.Crop = config.CropCenter
	return in, fmt.Sprintf("center crop 87.5%% (resize %d)", in.Resize)
}

// transferJudge returns a judge that sees every set — concept, held-out
// random sets, class images — through the preprocessing in.
func (e *experiment) transferJudge(a config.Attack, in model.Input, judge []string) (func(activations.Set) (report.AttackScore, error), error) {
	ex := e.extractorFor(in)
	class, err := e.classIndex(a.Target)
	if err != nil {
		return nil, err
	}
	grads, err := ex.ClassGradients(e.sets[e.classSet(a.Target)], a.Layer, class)
	if err != nil {
		return nil, err
	}
	randoms := make([]*activations.Activations, len(judge))
	for i, r := range judge {
		m, err := ex.Extract(e.sets[r], []string{a.Layer})
		if err != nil {
			return nil, err
		}
		randoms[i] = m[a.Layer]
	}
	return func(set activations.Set) (report.AttackScore, error) {
		m, err := ex.Extract(set, []string{a.Layer})
		if err != nil {
			return report.AttackScore{}, err
		}
		defer e.fitter.Release(m[a.Layer])
		return e.judge(a, m[a.Layer], randoms, grads, e.method)
	}, nil
}

// judgeJPEG re-encodes set's files as JPEG and judges them.
func (e *experiment) judgeJPEG(a config.Attack, set activations.Set, randoms []*activations.Activations,
	grads *activations.Activations, st cav.Method) (report.AttackScore, error) {
	dir, err := os.MkdirTemp(e.dir, ".jpeg-")
	if err != nil {
		return report.AttackScore{}, err
	}
	defer os.RemoveAll(dir)
	files, err := images.ReencodeJPEG(set.Files, dir, jpegQuality)
	if err != nil {
		return report.AttackScore{}, err
	}
	hash, err := images.ListHash(dir, files)
	if err != nil {
		return report.AttackScore{}, err
	}
	m, err := e.extract.Extract(activations.Set{Name: set.Name, Files: files, Hash: hash}, []string{a.Layer})
	if err != nil {
		return report.AttackScore{}, err
	}
	defer e.fitter.Release(m[a.Layer])
	return e.judge(a, m[a.Layer], randoms, grads, st)
}

// attackDir is the run-relative folder of an attack's images at one budget.
func attackDir(a config.Attack, eps float64) string {
	return filepath.ToSlash(filepath.Join("attack", fmt.Sprintf("%s-%s-%s-eps%s",
		a.Concept, a.Target, a.Layer, strconv.FormatFloat(eps, 'g', -1, 64))))
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
	grads *activations.Activations, st cav.Method) (report.AttackScore, error) {
	// Corrected as the TCAV stage corrects the same concept, so that the
	// "before" verdict is the one the TCAV table shows.
	sig := e.significance(len(e.cfg.TCAV.Concepts))
	l, err := tcav.FitLayer(e.fitter, []*activations.Activations{concept}, randoms, st, sig)
	if err != nil {
		return report.AttackScore{}, err
	}
	l.Target, l.Grads = a.Target, grads
	entries, err := tcav.Entries(e.device, *l, sig)
	if err != nil {
		return report.AttackScore{}, err
	}
	x := entries[0]
	rm := stats.Mean(x.RandomScores)
	return report.AttackScore{Mean: x.Mean, Std: x.Std, PValue: x.PValue, Significant: x.Significant,
		Direction: x.Direction, Resolution: x.Resolution, RandomMean: &rm}, nil
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

// adaptiveOf is the attack's adaptive option, nil when it is off.
func adaptiveOf(c config.Adaptive) *attack.Adaptive {
	if len(c.Purifications) == 0 {
		return nil
	}
	a := &attack.Adaptive{ShiftWeight: c.ShiftWeight, AlignmentWeight: c.AlignmentWeight}
	for _, name := range c.Purifications {
		p, _ := audit.ByName(name) // validated
		a.Purifications = append(a.Purifications, p)
	}
	return a
}

func stealthForm(st config.Stealth) string {
	if st.Weight <= 0 {
		return ""
	}
	return st.Form
}
