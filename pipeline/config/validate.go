package config

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Validate checks everything that can be checked without reading files or
// running the model. The error is one line that names the key; its type is
// *Error.
func (c *Config) Validate() error {
	v := &validator{}
	c.validate(v)
	if v.err != nil {
		return v.err
	}
	return nil
}

// validator keeps the first failed check; the checks run in the order of the
// file, so the error points at the first problem a reader would meet.
type validator struct{ err *Error }

func (v *validator) check(ok bool, key, format string, args ...any) bool {
	if !ok && v.err == nil {
		v.err = keyError(key, format, args...)
	}
	return ok
}

func (v *validator) oneOf(key, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	v.check(false, key, "%q is not one of %s", got, strings.Join(allowed, ", "))
}

func (v *validator) required(key, got string) bool {
	return v.check(strings.TrimSpace(got) != "", key, "required")
}

func (v *validator) positive(key string, got float64) {
	v.check(got > 0 && !math.IsInf(got, 0), key, "%v must be > 0", got)
}

func (v *validator) positiveInt(key string, got int) {
	v.check(got > 0, key, "%d must be > 0", got)
}

// unique checks that a list names no folder or layer twice.
func (v *validator) unique(key string, items []string) {
	seen := map[string]bool{}
	for i, s := range items {
		v.required(fmt.Sprintf("%s.%d", key, i), s)
		v.check(!seen[s], key, "%q is listed twice", s)
		seen[s] = true
	}
}

func (c *Config) validate(v *validator) {
	if v.required("name", c.Name) {
		v.check(c.Name != "." && c.Name != ".." && !strings.ContainsAny(c.Name, `/\`), "name",
			"%q cannot name a run directory", c.Name)
	}
	v.check(validDevice(c.Device), "device", "%q is not one of auto, cpu, cuda, cuda:N", c.Device)
	v.oneOf("precision", c.Precision, FP32, BF16, FP16)
	v.required("cache_dir", c.CacheDir)

	v.required("model.path", c.Model.Path)
	in := c.Model.Input
	v.check(in.Size[0] > 0 && in.Size[1] > 0, "model.input.size", "%v must be two sizes > 0", in.Size)
	v.oneOf("model.input.crop", in.Crop, CropCenter, CropNone)
	switch {
	case in.Resize < 0:
		v.check(false, "model.input.resize", "%d must be > 0 (or left out: images are then scaled straight to model.input.size)", in.Resize)
	case in.Crop == CropCenter && in.Resize == 0:
		v.check(false, "model.input.crop", "center needs model.input.resize, the shorter side before the crop (e.g. resize: %d for size %v)",
			int(math.Round(float64(max(in.Size[0], in.Size[1]))/0.875)), in.Size)
	case in.Crop == CropCenter:
		v.check(in.Resize >= max(in.Size[0], in.Size[1]), "model.input.resize",
			"%d is smaller than model.input.size %v: a center crop needs resize >= the larger side", in.Resize, in.Size)
	case in.Resize > 0:
		v.check(false, "model.input.resize", "%d is only used with crop: center (set it, or leave resize out to scale images straight to model.input.size)", in.Resize)
	}
	for i := range 3 {
		v.check(finite(in.Mean[i]), "model.input.mean", "%v must be finite", in.Mean)
		v.check(in.Std[i] > 0 && finite(in.Std[i]), "model.input.std", "%v must all be > 0", in.Std)
	}
	v.check(finite(in.PixelRange[0]) && finite(in.PixelRange[1]) && in.PixelRange[0] < in.PixelRange[1],
		"model.input.pixel_range", "%v must be [low, high] with low < high", in.PixelRange)

	v.required("data.root", c.Data.Root)
	v.positiveInt("data.max_images", c.Data.MaxImages)
	v.positiveInt("data.batch_size", c.Data.BatchSize)

	c.validateTCAV(v)
	for i := range c.Attack {
		c.validateAttack(v, i)
	}
	c.validateAudit(v)
	for i := range c.Facets {
		c.validateFacet(v, i)
	}
	v.check(len(c.TCAV.Targets) > 0 || len(c.Attack) > 0 || len(c.Facets) > 0, "tcav.targets",
		"nothing to do: no targets, attacks or facets")
}

func (c *Config) validateTCAV(v *validator) {
	t := &c.TCAV
	v.unique("tcav.targets", t.Targets)
	v.unique("tcav.concepts", t.Concepts)
	v.unique("tcav.layers", t.Layers)
	if len(t.Targets) > 0 {
		v.check(len(t.Concepts) > 0, "tcav.concepts", "required when tcav.targets is set")
		v.check(len(t.Layers) > 0, "tcav.layers", "required when tcav.targets is set")
	}
	targets := c.targets()
	for _, k := range sortedKeys(t.ClassSets) {
		v.required("tcav.class_sets."+k, t.ClassSets[k])
		// A key mapped to itself is a default derived from an earlier target
		// list (Set keeps those); any other key must be a target, or it is a
		// typo that leaves the real target on its default folder.
		v.check(targets[k] || t.ClassSets[k] == k, "tcav.class_sets."+k,
			"%q is not a target (targets: %s)", k, strings.Join(slices.Sorted(maps.Keys(targets)), ", "))
	}

	r := t.Random
	if r.From != "" {
		v.check(r.Count >= 2, "tcav.random.count", "%d random sets; need at least 2", r.Count)
		v.check(r.Count <= maxRandomSetsByName, "tcav.random.count", "%d random sets is more than %d", r.Count, maxRandomSetsByName)
	} else if r.Prefix != "" {
		v.check(r.Count >= 2, "tcav.random.count", "%d random sets; need at least 2", r.Count)
		v.check(r.Count <= maxRandomSetsByName, "tcav.random.count", "%d random sets is more than %d", r.Count, maxRandomSetsByName)
	} else {
		v.check(len(r.Sets) >= 2, "tcav.random", "%d random sets; need at least 2", len(r.Sets))
		v.unique("tcav.random", r.Sets)
	}
	concept := map[string]bool{}
	for _, s := range t.Concepts {
		concept[s] = true
	}
	for _, s := range r.Sets {
		v.check(!concept[s], "tcav.random", "%q is also a concept", s)
	}

	cav := t.CAV
	v.oneOf("tcav.cav.classifier", cav.Classifier, Classifiers...)
	v.oneOf("tcav.cav.transfer_classifier", cav.TransferClassifier, Classifiers...)
	v.check(cav.Alpha >= 0 && finite(cav.Alpha), "tcav.cav.alpha", "%v must be >= 0", cav.Alpha)
	if cav.Classifier != ClassifierMeanDiff && cav.LR == 0 {
		v.check(cav.Alpha > 0, "tcav.cav.alpha", "must be > 0 with lr 0 (the optimal schedule divides by alpha)")
	}
	v.positiveInt("tcav.cav.epochs", cav.Epochs)
	v.check(cav.TestFraction > 0 && cav.TestFraction < 1, "tcav.cav.test_fraction", "%v must be > 0 and < 1", cav.TestFraction)
	v.check(cav.LR >= 0 && finite(cav.LR), "tcav.cav.lr", "%v must be >= 0", cav.LR)

	sig := t.Significance
	v.check(sig.Alpha > 0 && sig.Alpha < 1, "tcav.significance.alpha", "%v must be > 0 and < 1", sig.Alpha)
	v.oneOf("tcav.significance.test", sig.Test, TestCalibrated, TestTwoSample, TestOneSample)
	v.check(sig.Negatives >= 0, "tcav.significance.negatives", "%d must be >= 0 (0: all)", sig.Negatives)
}

func (c *Config) validateAttack(v *validator, i int) {
	a := c.Attack[i]
	key := func(name string) string { return fmt.Sprintf("attack.%d.%s", i, name) }
	v.required(key("concept"), a.Concept)
	v.required(key("target"), a.Target)
	v.required(key("layer"), a.Layer)
	v.oneOf(key("goal"), a.Goal, GoalSuppress, GoalPromote)
	v.oneOf(key("objective"), a.Objective, ObjectiveSurrogate, ObjectiveCollision)
	if v.required(key("toward"), a.Toward) {
		switch {
		case a.Objective == ObjectiveSurrogate:
			v.check(a.Toward == TowardRandom, key("toward"), "%q is only used by objective %s", a.Toward, ObjectiveCollision)
		case a.Toward == a.Concept:
			v.check(false, key("toward"), "%q is the attacked concept itself", a.Toward)
		case a.Goal == GoalPromote:
			v.check(a.Toward != TowardRandom, key("toward"),
				"goal promote with %s needs a concept the class relies on, not random", ObjectiveCollision)
		}
	}
	v.oneOf(key("norm"), a.Norm, NormLinf, NormL2)
	v.check(len(a.Eps) > 0, key("eps"), "needs at least one budget")
	seen := map[float64]bool{}
	for _, e := range a.Eps {
		if a.Norm == NormL2 {
			// An image's L2 norm on the pixel scale reaches √(3·H·W).
			v.check(e > 0 && finite(e), key("eps"), "%v is out of range: want eps > 0 (L2 norm per image, pixel scale [0, 1])", e)
		} else {
			v.check(e > 0 && e < 1, key("eps"), "%v is out of range: want 0 < eps < 1 (pixel scale [0, 1])", e)
		}
		v.check(!seen[e], key("eps"), "%v is listed twice", e)
		seen[e] = true
	}
	v.positive(key("step"), a.Step)
	v.positiveInt(key("steps"), a.Steps)
	v.check(a.Momentum >= 0 && finite(a.Momentum), key("momentum"), "%v must be >= 0", a.Momentum)
	v.positive(key("tau"), a.Tau)
	v.check(a.Stealth.Weight >= 0 && finite(a.Stealth.Weight), key("stealth.weight"), "%v must be >= 0 (0 turns stealth off)", a.Stealth.Weight)
	v.oneOf(key("stealth.form"), a.Stealth.Form, StealthMargin, StealthKL)
	v.check(a.Stealth.Margin >= 0 && finite(a.Stealth.Margin), key("stealth.margin"), "%v must be >= 0", a.Stealth.Margin)
	purs := map[string]bool{}
	for _, p := range a.Adaptive.Purifications {
		v.oneOf(key("adaptive.purifications"), p, AuditPurifications...)
		v.check(!purs[p], key("adaptive.purifications"), "%q is listed twice", p)
		purs[p] = true
	}
	v.check(a.Adaptive.ShiftWeight >= 0 && finite(a.Adaptive.ShiftWeight), key("adaptive.shift_weight"), "%v must be >= 0 (0 turns the penalty off)", a.Adaptive.ShiftWeight)
	v.check(a.Adaptive.ShiftWeight == 0 || len(a.Adaptive.Purifications) > 0, key("adaptive.shift_weight"),
		"%v needs adaptive.purifications: the shift is measured under them", a.Adaptive.ShiftWeight)
	if v.check(a.Adaptive.AlignmentWeight >= 0 && finite(a.Adaptive.AlignmentWeight), key("adaptive.alignment_weight"),
		"%v must be >= 0 (0 turns the penalty off)", a.Adaptive.AlignmentWeight) && a.Adaptive.AlignmentWeight > 0 {
		v.check(len(a.Adaptive.Purifications) > 0, key("adaptive.alignment_weight"),
			"%v needs adaptive.purifications: the shift is measured under them", a.Adaptive.AlignmentWeight)
		v.check(a.Objective == ObjectiveSurrogate, key("adaptive.alignment_weight"),
			"needs objective %s (the alignment is with its class gradients)", ObjectiveSurrogate)
	}
	n := len(c.TCAV.Random.Sets)
	if v.check(a.JudgeRandom >= 2, key("judge_random"), "%d: judging needs at least 2 random sets", a.JudgeRandom) {
		v.check(a.JudgeRandom < n, key("judge_random"),
			"holding out %d of %d random sets leaves none for the attack; tcav.random needs more sets", a.JudgeRandom, n)
	}
}

// targets are the classes any stage explains or attacks, by name or index.
func (c *Config) targets() map[string]bool {
	out := map[string]bool{}
	for _, t := range c.TCAV.Targets {
		out[t] = true
	}
	for _, a := range c.Attack {
		out[a.Target] = true
	}
	for _, f := range c.Facets {
		if f.Target.Class != "" {
			out[f.Target.Class] = true
		}
	}
	return out
}

func (c *Config) validateFacet(v *validator, i int) {
	f := c.Facets[i]
	key := func(name string) string { return fmt.Sprintf("facets.%d.%s", i, name) }
	switch {
	case f.Target.Class == "" && f.Target.Layer == "":
		v.check(false, key("target"), "required: a class name or index, or {layer: L, channel: C}")
	case f.Target.Class == "":
		v.check(f.Target.Channel >= 0, key("target.channel"), "%d must be >= 0", f.Target.Channel)
	}
	v.required(key("facet"), f.Facet)
	v.check(len(f.FacetLayers) > 0, key("facet_layers"), "required")
	v.unique(key("facet_layers"), f.FacetLayers)
	s := f.Strength
	v.check(finite(s[0]) && finite(s[1]) && s[0] <= s[1], key("strength"), "%v must be [first, last] with first <= last", s)
	v.positiveInt(key("batch"), f.Batch)
	v.positiveInt(key("size"), f.Size)
	v.positiveInt(key("steps"), f.Steps)
	v.positive(key("lr"), f.LR)
	if f.PoisonedFrom != "" {
		v.check(f.CompareAttack, key("poisoned_from"), "is used by compare_attack, which is false")
	}
	if f.CompareAttack && f.PoisonedFrom == "" {
		attacked := false
		for _, a := range c.Attack {
			attacked = attacked || a.Concept == f.Facet
		}
		v.check(attacked, key("compare_attack"), "no attack on concept %q to compare with (add one, or set %s to an earlier run directory)", f.Facet, key("poisoned_from"))
	}
}

func validDevice(d string) bool {
	switch d {
	case DeviceAuto, DeviceCPU, DeviceCUDA:
		return true
	}
	n, ok := strings.CutPrefix(d, DeviceCUDA+":")
	if !ok || !isIndex(n) {
		return false
	}
	_, err := strconv.Atoi(n)
	return err == nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
