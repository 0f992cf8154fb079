package attack

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/atomicfile"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/model"
	"github.com/cavforge/cavforge/pipeline/progress"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// Spec is one attack, resolved from an attack entry of the config: the
// concept set's files perturbed at each budget, to suppress or promote the
// concept's TCAV score for the target.
type Spec struct {
	Concept     activations.Set
	Target      string
	Class       int
	ClassImages activations.Set
	Layer       string
	Goal        string // suppress | promote
	Objective   string // tcav-surrogate | feature-collision
	// Toward is the set feature collision pulls toward; nil: the mean of
	// the random sets the attack may see.
	Toward      *activations.Set
	Norm        string
	Eps         []float64
	Step        float64
	Steps       int
	RandomStart bool
	Momentum    float64
	Tau         float64
	// Stealth, when its weight is above 0, keeps predictions (Clean is
	// filled in by Run).
	Stealth Stealth
	// Adaptive, when set, attacks through the audit's purifications.
	Adaptive *Adaptive
	// Seen are the random sets the attack may use, Judge those it is judged
	// against and never sees.
	Seen, Judge []activations.Set
	// Method is how the judge fits CAVs, Transfer the other classifier it
	// is judged with too.
	Method, Transfer cav.Method
	Seed             int64 // the run's
	// Variant tells this attack's folders from those of an earlier attack
	// on the same concept, target, layer and budget ("" when none is).
	Variant string
}

// Extractor is what the attack needs of the activations.
type Extractor interface {
	Extract(set activations.Set, layers []string) (map[string]*activations.Activations, error)
	ClassGradients(set activations.Set, layer string, class int) (*activations.Activations, error)
}

// Stage is what attacks run with: the model, its activations (and the same
// seen through other preprocessing, for the transfer check), the judge, and
// the run directory the poisoned sets are written to.
type Stage struct {
	Model      *model.Model
	Extract    Extractor
	Preprocess func(model.Input) Extractor
	Judge      tcav.Judge
	Dir        string
	BatchSize  int
	SkipBad    bool
	Log        *logrus.Logger
	Progress   *progress.Bars // may be nil
}

// Run perturbs the concept's files at each budget, writes them as 8-bit PNG
// with poisoned.json, and judges them from the files, as anyone handed them
// would: with the configured classifier against random sets the attack
// never saw, and again with one thing changed (classifier, preprocessing,
// a JPEG round trip).
func (st *Stage) Run(a Spec) ([]Entry, error) {
	grads, err := st.Extract.ClassGradients(a.ClassImages, a.Layer, a.Class)
	if err != nil {
		return nil, err
	}
	actsOf := func(set activations.Set) (*activations.Activations, error) {
		m, err := st.Extract.Extract(set, []string{a.Layer})
		if err != nil {
			return nil, err
		}
		return m[a.Layer], nil
	}
	clean, err := actsOf(a.Concept)
	if err != nil {
		return nil, err
	}
	judgeActs := make([]*activations.Activations, len(a.Judge))
	for i, r := range a.Judge {
		if judgeActs[i], err = actsOf(r); err != nil {
			return nil, err
		}
	}
	seenMean, err := meanActivation(a.Seen, actsOf)
	if err != nil {
		return nil, err
	}
	obj, err := st.objective(a, grads, seenMean, actsOf)
	if err != nil {
		return nil, err
	}
	defer obj.Close()

	settings, other := a.Method, a.Transfer
	judge := func(concept *activations.Activations, m cav.Method) (tcav.SetScore, error) {
		return st.Judge.Score(a.Target, concept, judgeActs, grads, m)
	}
	before, err := judge(clean, settings)
	if err != nil {
		return nil, err
	}
	beforeOther, err := judge(clean, other)
	if err != nil {
		return nil, err
	}

	// Transfer: the analyst's own preprocessing and a JPEG round trip, each
	// judged before and after.
	alt, altDesc := alternativeInput(st.Model.Input)
	altJudge, err := st.transferJudge(a, alt)
	if err != nil {
		return nil, err
	}
	beforeAlt, err := altJudge(a.Concept)
	if err != nil {
		return nil, err
	}
	beforeJPEG, err := st.judgeJPEG(a, a.Concept, judgeActs, grads, settings)
	if err != nil {
		return nil, err
	}

	// The concept files at their own sizes: the attack poisons files.
	set := a.Concept
	imgs, err := images.LoadStored(set.Files, st.SkipBad, st.Log)
	if err != nil {
		return nil, err
	}
	cleanLogits, err := Logits(st.Model, imgs, st.BatchSize)
	if err != nil {
		return nil, err
	}
	cleanPred := Predictions(cleanLogits)
	var stealth *Stealth
	if a.Stealth.Weight > 0 {
		stealth = &Stealth{Weight: a.Stealth.Weight, Form: a.Stealth.Form, Margin: a.Stealth.Margin, Clean: cleanLogits}
	}
	var out []Entry
	for _, eps := range a.Eps {
		if a.Norm == "linf" && Levels(eps) == 0 {
			st.Log.Warnf("attack %s→%s: eps %g is below one 8-bit level (1/255): the written images cannot change", set.Name, a.Target, eps)
		}
		budget := Budget{Norm: a.Norm, Eps: eps, Step: a.Step, Steps: a.Steps, RandomStart: a.RandomStart, Momentum: a.Momentum, Stealth: stealth, Adaptive: a.Adaptive,
			Progress: st.Progress.New(fmt.Sprintf("attack %s→%s eps %g", set.Name, a.Target, eps), a.Steps)}
		seed := cav.Seed(a.Seed, "attack:"+set.Name, a.Target+"/"+a.Goal+"/"+a.Objective, a.Layer) ^ math.Float64bits(eps)
		res, err := Perturb(st.Model, imgs, a.Layer, obj, budget, st.BatchSize, seed)
		if err != nil {
			return nil, err
		}
		rel := Dir(set.Name, a.Target, a.Layer, eps, a.Variant)
		name := filepath.Base(rel)
		written, err := WritePoisoned(filepath.Join(st.Dir, rel), res.Images)
		if err != nil {
			return nil, err
		}
		// Everything below reads the files, as anyone handed them would.
		size, err := WriteManifest(filepath.Join(st.Dir, rel, "poisoned.json"), set.Files, written, eps, a.Norm)
		if err != nil {
			return nil, err
		}
		if err := writeLosses(filepath.Join(st.Dir, rel+".losses.csv"), res.Losses); err != nil {
			return nil, err
		}
		back, err := images.LoadStored(written, false, st.Log)
		if err != nil {
			return nil, err
		}
		grid, err := Grid(st.Model, imgs, back, 4)
		if err != nil {
			return nil, err
		}
		if err := images.WritePNG8(filepath.Join(st.Dir, rel+"-grid.png"), grid); err != nil {
			return nil, err
		}
		advLogits, err := Logits(st.Model, back, st.BatchSize)
		if err != nil {
			return nil, err
		}
		advPred := Predictions(advLogits)
		hash, err := images.ListHash(st.Dir, written)
		if err != nil {
			return nil, err
		}
		poisoned := activations.Set{Name: set.Name, Files: written, Hash: hash}
		acts, err := st.Extract.Extract(poisoned, []string{a.Layer})
		if err != nil {
			return nil, err
		}
		after, err := judge(acts[a.Layer], settings)
		if err != nil {
			return nil, err
		}
		afterOther, err := judge(acts[a.Layer], other)
		if err != nil {
			return nil, err
		}
		st.Judge.Fitter.Release(acts[a.Layer]) // each budget's set is judged once
		afterAlt, err := altJudge(poisoned)
		if err != nil {
			return nil, err
		}
		afterJPEG, err := st.judgeJPEG(a, poisoned, judgeActs, grads, settings)
		if err != nil {
			return nil, err
		}
		changed, logitChange := 0, 0.0
		for i := range advPred {
			if advPred[i] != cleanPred[i] {
				changed++
			}
			logitChange += float64(advLogits[i][a.Class]-cleanLogits[i][a.Class]) / float64(len(advPred))
		}
		st.Log.WithField("attack", name).Infof("score %.3f → %.3f (p %.2g → %.2g), PSNR %.1f dB, %d/%d predictions changed; "+
			"transfer: %s %.3f → %.3f, %s %.3f → %.3f, JPEG q%d %.3f → %.3f",
			before.Mean, after.Mean, before.PValue, after.PValue, size.PSNRMean, changed, len(advPred),
			other.Name, beforeOther.Mean, afterOther.Mean, altDesc, beforeAlt.Mean, afterAlt.Mean,
			jpegQuality, beforeJPEG.Mean, afterJPEG.Mean)
		entry := Entry{
			Concept: set.Name, Target: a.Target, Layer: a.Layer, Goal: a.Goal, Objective: a.Objective,
			Eps: eps, Norm: a.Norm, Before: before, After: after,
			Linf: size.Linf, L2Mean: size.L2Mean, PSNRMean: size.PSNRMean,
			ChangedPrediction: float64(changed) / float64(len(advPred)),
			ClassLogitChange:  logitChange,
			StealthWeight:     a.Stealth.Weight,
			StealthForm:       stealthForm(a.Stealth),
			Images:            rel + "/",
			Transfer: []Transfer{
				{Kind: "classifier", Setting: other.Name, Before: beforeOther, After: afterOther},
				{Kind: "preprocessing", Setting: altDesc, Before: beforeAlt, After: afterAlt},
				{Kind: "jpeg", Setting: fmt.Sprintf("quality %d", jpegQuality), Before: beforeJPEG, After: afterJPEG},
			},
		}
		if ad := a.Adaptive; ad != nil {
			for _, p := range ad.Purifications {
				entry.Adaptive = append(entry.Adaptive, p.Name)
			}
			entry.ShiftWeight, entry.AlignmentWeight = ad.ShiftWeight, ad.AlignmentWeight
		}
		out = append(out, entry)
	}
	return out, nil
}

// Dir is the run-relative folder of an attack's images at one budget;
// variant, when not empty, is appended to tell two attacks apart that
// would otherwise share it (say, with and without stealth).
func Dir(concept, target, layer string, eps float64, variant string) string {
	name := fmt.Sprintf("%s-%s-%s-eps%s", concept, target, layer, strconv.FormatFloat(eps, 'g', -1, 64))
	if variant != "" {
		name += "-" + variant
	}
	return filepath.ToSlash(filepath.Join("attack", name))
}

// jpegQuality is the re-encoding an analyst's pipeline commonly applies.
const jpegQuality = 90

// alternativeInput is the preprocessing a different analyst would use: no
// crop when in crops, otherwise the common 87.5% center crop.
func alternativeInput(in model.Input) (model.Input, string) {
	if in.Resize > 0 && in.Crop == "center" {
		in.Resize, in.Crop = 0, "none"
		return in, "no crop"
	}
	in.Resize = int(math.Round(float64(max(in.Size[0], in.Size[1])) / 0.875))
	in.Crop = "center"
	return in, fmt.Sprintf("center crop 87.5%% (resize %d)", in.Resize)
}

// transferJudge returns a judge that sees every set — concept, held-out
// random sets, class images — through the preprocessing in.
func (st *Stage) transferJudge(a Spec, in model.Input) (func(activations.Set) (tcav.SetScore, error), error) {
	ex := st.Preprocess(in)
	grads, err := ex.ClassGradients(a.ClassImages, a.Layer, a.Class)
	if err != nil {
		return nil, err
	}
	randoms := make([]*activations.Activations, len(a.Judge))
	for i, r := range a.Judge {
		m, err := ex.Extract(r, []string{a.Layer})
		if err != nil {
			return nil, err
		}
		randoms[i] = m[a.Layer]
	}
	return func(set activations.Set) (tcav.SetScore, error) {
		m, err := ex.Extract(set, []string{a.Layer})
		if err != nil {
			return tcav.SetScore{}, err
		}
		defer st.Judge.Fitter.Release(m[a.Layer])
		return st.Judge.Score(a.Target, m[a.Layer], randoms, grads, a.Method)
	}, nil
}

// judgeJPEG re-encodes set's files as JPEG and judges them.
func (st *Stage) judgeJPEG(a Spec, set activations.Set, randoms []*activations.Activations,
	grads *activations.Activations, m cav.Method) (tcav.SetScore, error) {
	dir, err := os.MkdirTemp(st.Dir, ".jpeg-")
	if err != nil {
		return tcav.SetScore{}, err
	}
	defer os.RemoveAll(dir)
	files, err := images.ReencodeJPEG(set.Files, dir, jpegQuality)
	if err != nil {
		return tcav.SetScore{}, err
	}
	hash, err := images.ListHash(dir, files)
	if err != nil {
		return tcav.SetScore{}, err
	}
	acts, err := st.Extract.Extract(activations.Set{Name: set.Name, Files: files, Hash: hash}, []string{a.Layer})
	if err != nil {
		return tcav.SetScore{}, err
	}
	defer st.Judge.Fitter.Release(acts[a.Layer])
	return st.Judge.Score(a.Target, acts[a.Layer], randoms, grads, m)
}

// objective builds the attack's loss from what it may see: the class
// gradients and the random sets it is allowed to use.
func (st *Stage) objective(a Spec, grads *activations.Activations, seenMean []float32,
	actsOf func(activations.Set) (*activations.Activations, error)) (Objective, error) {
	device := st.Judge.Device
	switch a.Objective {
	case "tcav-surrogate":
		return NewSurrogate(device, grads.Data, grads.N, seenMean, a.Tau, a.Goal == "promote")
	case "feature-collision":
		target := seenMean
		if a.Toward != nil {
			t, err := actsOf(*a.Toward)
			if err != nil {
				return nil, err
			}
			target = mean(t)
		}
		return NewCollision(device, target)
	}
	return nil, fmt.Errorf("objective %q: want tcav-surrogate or feature-collision", a.Objective)
}

func writeLosses(path string, losses []float64) error {
	var b strings.Builder
	b.WriteString("step,loss\n")
	for i, l := range losses {
		fmt.Fprintf(&b, "%d,%s\n", i, strconv.FormatFloat(l, 'g', 8, 64))
	}
	return atomicfile.Write(path, []byte(b.String()))
}

func meanActivation(sets []activations.Set, actsOf func(activations.Set) (*activations.Activations, error)) ([]float32, error) {
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
	m, _ := meanActivation([]activations.Set{{}}, func(activations.Set) (*activations.Activations, error) { return a, nil })
	return m
}

func stealthForm(st Stealth) string {
	if st.Weight <= 0 {
		return ""
	}
	return st.Form
}
