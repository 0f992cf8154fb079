// Package config reads, checks and writes cavforge experiment configs.
//
// An experiment config is a YAML file (SPEC §3). Load parses it, applies
// `--set key.path=value` overrides, fills every field that the file leaves out
// with its documented default, resolves relative paths against the file's
// directory and validates the result. Marshal writes the resolved config back
// as YAML that Load reads to an equal Config, and Hash names it.
//
// The defaults live in one place: the doc comment of each field says what it
// is, and Default builds them.
package config

import (
	"fmt"
	"math"
	"reflect"
)

// Config is one experiment: what to explain, with which model and data, and
// which attacks and feature visualizations to run.
type Config struct {
	// Name names the run directory runs/<name>/.
	// Default: the config file's name without its extension.
	Name string `yaml:"name"`
	// Seed determines every random choice of the run (image selection, data
	// splits, classifier initialization, random starts). Default: 0.
	Seed int64 `yaml:"seed"`
	// Device is auto, cpu, cuda or cuda:N. auto uses CUDA when there is a GPU
	// and the CPU otherwise. Default: auto.
	Device string `yaml:"device"`
	// Precision is fp32, bf16 or fp16: autocast on CUDA, fp32 on the CPU.
	// Default: fp32.
	Precision string `yaml:"precision"`
	// CacheDir holds content-addressed activations, gradients and CAVs; tasks
	// of a sweep may share it. Relative to the config file.
	// Default: .cavforge-cache.
	CacheDir string `yaml:"cache_dir"`

	Model  Model    `yaml:"model"`
	Data   Data     `yaml:"data"`
	TCAV   TCAV     `yaml:"tcav"`
	Attack []Attack `yaml:"attack"`
	Facets []Facet  `yaml:"facets"`
	Audit  Audit    `yaml:"audit"`

	// dir is the absolute directory that relative paths given to Set resolve
	// against: the config file's directory, or "" (the working directory).
	dir string
	// batchSizeSet: data.batch_size was written in the file or an override
	// (otherwise the activation pass picks its batch size by measurement).
	batchSizeSet bool
}

// Model is the TorchScript classifier under study.
type Model struct {
	// Path is the TorchScript file (torch.jit.trace or torch.jit.script),
	// relative to the config file. Required.
	Path string `yaml:"path"`
	// Labels is a text file with one class name per line, relative to the
	// config file. Default: "" (no names; targets must be class indices).
	Labels string `yaml:"labels"`
	Input  Input  `yaml:"input"`
}

// Input says how an image becomes the model's input tensor.
type Input struct {
	// Size is the model input's [height, width]. Default: [224, 224].
	Size [2]int `yaml:"size"`
	// Resize is the length the shorter image side is scaled to before a
	// center crop; it needs crop: center. Default: 0 (unset: images are
	// scaled straight to Size, as the reference TCAV does, and an image
	// already at Size reaches the model unchanged).
	Resize int `yaml:"resize"`
	// Crop is center (scale the shorter side to Resize, then cut Size out of
	// the middle; needs Resize) or none (scale the whole image to Size).
	// Default: none.
	Crop string `yaml:"crop"`
	// Mean and Std normalize each RGB channel after scaling pixels to
	// PixelRange: (x - mean) / std. Default: ImageNet's
	// [0.485, 0.456, 0.406] and [0.229, 0.224, 0.225].
	Mean [3]float64 `yaml:"mean"`
	Std  [3]float64 `yaml:"std"`
	// PixelRange is the [low, high] that 8-bit pixels are scaled to before
	// normalization: [0, 1] for torchvision models, [0, 255] for Caffe-style
	// ones. Default: [0, 1].
	PixelRange [2]float64 `yaml:"pixel_range"`
}

// Data is where the image sets are: one folder per set under Root.
type Data struct {
	// Root holds root/<set>/*.{png,jpg,jpeg}, relative to the config file.
	// Default: data.
	Root string `yaml:"root"`
	// MaxImages caps the images used per set; which ones is chosen
	// deterministically from the seed. Default: 100.
	MaxImages int `yaml:"max_images"`
	// BatchSize is the number of images per forward/backward pass.
	// Default: 64; when it is not set, the activation pass picks its own by
	// a short timing probe on the first batch (recorded in the manifest).
	BatchSize int `yaml:"batch_size"`
	// SkipBadImages skips unreadable or corrupt images (with a warning that
	// names them) instead of failing. Default: false.
	SkipBadImages bool `yaml:"skip_bad_images"`
}

// TCAV is the concept-sensitivity experiment (Kim et al. 2018).
type TCAV struct {
	// Targets are the classes to explain, as label names or class indices
	// (kept as written, e.g. "zebra" or "340"). Default: none.
	Targets []string `yaml:"targets"`
	// ClassSets maps a target to the image folder of its class.
	// Default: the folder named like the target, for every target of tcav
	// and of the attacks.
	ClassSets map[string]string `yaml:"class_sets"`
	// Concepts are the concept image folders to test. Default: none.
	Concepts []string `yaml:"concepts"`
	// Random are the random image folders that concepts are tested against.
	// Default: {prefix: random500_, count: 10}, i.e. random500_0 … random500_9.
	Random RandomSets `yaml:"random"`
	// Layers are the dotted module paths to explain at. Default: none.
	Layers       []string     `yaml:"layers"`
	CAV          CAV          `yaml:"cav"`
	Significance Significance `yaml:"significance"`
	// CAVsFrom is an earlier run directory whose cavs/ (every CAV that run
	// fitted, see cavs/index.json) the TCAV stage scores with instead of
	// fitting: the CAVs of these concepts against these random sets at
	// these layers, by tcav.cav.classifier. They must be of this model file
	// and of its layers' shapes. This stage then reads no concept or random
	// images. Default: "" (fit them).
	CAVsFrom string `yaml:"cavs_from,omitempty"`
}

// RandomSets names the random image folders. In YAML it is either
// {prefix: P, count: N}, meaning folders P0 … P(N-1), {from: DIR, count: N},
// meaning N disjoint sets of data.max_images drawn (seeded) from the one
// folder data.root/DIR of random images, or an explicit list of folder
// names. Either way Sets holds the resolved names.
type RandomSets struct {
	// Prefix and Count describe the sets in the {prefix, count} form; Prefix
	// is "" when the sets were listed. Default: random500_ and 10.
	Prefix string `yaml:"prefix"`
	Count  int    `yaml:"count"`
	// From is a pool folder under data.root to draw Count disjoint sets of
	// data.max_images from, named DIR[0] … DIR[Count-1]; the pool needs
	// Count·max_images images. It replaces the folders named by Prefix: an
	// easy way to the many random sets a calibrated test needs. Default: "".
	From string `yaml:"from"`
	// Sets are the folder names, in order.
	Sets []string `yaml:"-"`
}

// CAV says how a concept activation vector is fitted (SPEC §5, CAV).
type CAV struct {
	// Classifier is sgd-hinge (linear SVM by SGD, the reference), logistic
	// (L2-regularized logistic regression) or mean-diff (difference of the
	// class means). Default: sgd-hinge.
	Classifier string `yaml:"classifier"`
	// Alpha is the L2 penalty of sgd-hinge and logistic. Default: 0.01.
	Alpha float64 `yaml:"alpha"`
	// Epochs is the number of passes over the training split. Default: 50.
	Epochs int `yaml:"epochs"`
	// TestFraction is the held-out share of the (stratified) split that the
	// CAV accuracy is measured on. Default: 0.33.
	TestFraction float64 `yaml:"test_fraction"`
	// LR > 0 is a constant SGD learning rate (scikit-learn's "constant"
	// schedule with eta0 = lr, for sgd-hinge and logistic; alpha may then
	// be 0); 0 selects the "optimal" schedule 1/(alpha·(t+t0)) that the
	// reference uses. Default: 0.
	LR float64 `yaml:"lr"`
	// TransferClassifier is the other classifier an attack is judged with
	// (its "classifier" transfer check), one of those of Classifier.
	// Default: logistic for sgd-hinge, sgd-hinge for logistic and mean-diff.
	TransferClassifier string `yaml:"transfer_classifier"`
}

// Significance says how concept scores are tested against the random
// baseline (SPEC §5, Significance).
type Significance struct {
	// Alpha is the significance level. Default: 0.05.
	Alpha float64 `yaml:"alpha"`
	// Test is calibrated (the concept's mean score ranked among the mean
	// scores of the random sets, each scored as if it were a concept against
	// the others: an exact false-alarm rate, but it needs at least
	// 1/alpha − 1 random sets after Bonferroni), two-sample (Student t-test
	// of concept scores against random-vs-random scores, the reference) or
	// one-sample (t-test of the concept scores against 0.5, the paper). The
	// t-tests treat the scores against R random sets as independent, which
	// they are not: they call one null concept in five significant at 0.05.
	// Default: calibrated.
	Test string `yaml:"test"`
	// Bonferroni divides Alpha by the number of concept tests per target and
	// layer. Default: true.
	Bonferroni bool `yaml:"bonferroni"`
	// Negatives is how many other sets each set is scored against in the
	// calibrated test (its neighbours on a ring of the concept and the
	// random sets); 0 means all of them. More costs (R−1)·Negatives/2 CAVs
	// per layer and averages out more of each pair's noise. Default: 20.
	Negatives int `yaml:"negatives"`
}

// Attack poisons one concept set so that TCAV changes its verdict for one
// target at one layer (SPEC §5, Attack).
type Attack struct {
	// Concept is the concept set to perturb. Required.
	Concept string `yaml:"concept"`
	// Target is the class whose score the attack moves. Required.
	Target string `yaml:"target"`
	// Layer is the module path the score is read at. Required.
	Layer string `yaml:"layer"`
	// Goal is suppress (make the concept look unimportant) or promote.
	// Default: suppress.
	Goal string `yaml:"goal"`
	// Objective is tcav-surrogate or feature-collision. Default:
	// tcav-surrogate.
	Objective string `yaml:"objective"`
	// Toward is where feature-collision moves the activations: random (the
	// random sets' mean) or the name of a concept the class relies on.
	// Default: random.
	Toward string `yaml:"toward"`
	// Norm is the perturbation norm, linf or l2. Default: linf.
	Norm string `yaml:"norm"`
	// Eps are the budgets, on the pixel scale [0, 1]; each one is a separate
	// attack. A single number is a list of one. Under linf each is below 1;
	// under l2 it is a norm per image and may exceed 1 (a saturated L∞
	// budget ε has the PSNR of the L2 budget ε·√(3·H·W)).
	// Default: [0.0078, 0.0157, 0.0314] (2/255, 4/255, 8/255).
	Eps []float64 `yaml:"eps"`
	// Step is the PGD step size on the pixel scale. Default: 0.002.
	Step float64 `yaml:"step"`
	// Steps is the number of PGD steps. Default: 200.
	Steps int `yaml:"steps"`
	// RandomStart starts from a uniform random point in the eps ball.
	// Default: true.
	RandomStart bool `yaml:"random_start"`
	// Momentum is the decay of the accumulated gradient (MI-FGSM); 0 is
	// plain PGD. Default: 0.
	Momentum float64 `yaml:"momentum"`
	// Tau is the temperature of the sigmoid that stands in for the step
	// function of the TCAV score in tcav-surrogate. Default: 10.
	Tau float64 `yaml:"tau"`
	// JudgeRandom is how many random sets are held out from the attack and
	// used only to judge it. Default: half the random sets, rounded up, and
	// at least 2.
	JudgeRandom int `yaml:"judge_random"`
	// Stealth keeps each poisoned image's own prediction while the attack
	// moves the explanation, so that an analyst who looks at the concept
	// images' predicted classes sees nothing.
	Stealth Stealth `yaml:"stealth"`
	// Adaptive attacks through the audit's purifications, as an attacker
	// who knows the audit would. Default: off.
	Adaptive Adaptive `yaml:"adaptive"`
}

// Adaptive is the attacker who knows the audit (see package attack): the
// objective is averaged over the concept set and its copies re-encoded by
// each of Purifications (expectation over transforms; blur and resize are
// differentiated exactly, JPEG and bit depth straight through), plus
// ShiftWeight times the mean squared change of the objective under a
// purification — the audit's scored signal, the TCAV shift.
type Adaptive struct {
	// Purifications are audit purification names: jpeg90, jpeg75, blur,
	// resize, bits5. Empty turns the adaptive attack off. Default: [].
	Purifications []string `yaml:"purifications"`
	// ShiftWeight is the weight of the shift penalty; 0 turns it off.
	// Default: 0.
	ShiftWeight float64 `yaml:"shift_weight"`
	// AlignmentWeight is the weight of a penalty on the mean squared change
	// under a purification of the mean cosine between the class gradients
	// and the set's mean-difference direction: the stand-in for the audit's
	// alignment-shift signal. tcav-surrogate only; 0 turns it off.
	// Default: 0.
	AlignmentWeight float64 `yaml:"alignment_weight"`
}

// Stealth is the attack's term for not being noticed: Weight times the mean
// over the concept images of a penalty on how far each image's prediction
// moved from its clean one.
type Stealth struct {
	// Weight of the term; 0 turns it off. Default: 0.
	Weight float64 `yaml:"weight"`
	// Form is margin (a hinge that keeps each image's clean top-1 class
	// ahead of every other class by Margin logits) or kl (the KL divergence
	// of the poisoned image's class probabilities from the clean ones).
	// Default: margin.
	Form string `yaml:"form"`
	// Margin is the logit margin of form margin. Default: 2.
	Margin float64 `yaml:"margin"`
}

// Facet is one faceted feature visualization (SPEC §5).
type Facet struct {
	// Target is what the image maximizes: a class logit or a channel's mean
	// activation. Required.
	Target FacetTarget `yaml:"target"`
	// Facet is the concept set whose probe direction steers the image.
	// Required.
	Facet string `yaml:"facet"`
	// FacetLayers are the intermediate layers the facet probe is fitted and
	// applied at. Required.
	FacetLayers []string `yaml:"facet_layers"`
	// Strength is the [first, last] facet strength; the batch gets evenly
	// spaced strengths between them. Default: [0.1, 5.0].
	Strength [2]float64 `yaml:"strength"`
	// Batch is the number of images rendered together. Default: 4.
	Batch int `yaml:"batch"`
	// Size is the rendered images' side in pixels. Default: 224.
	Size int `yaml:"size"`
	// Steps is the number of Adam steps. Default: 512.
	Steps int `yaml:"steps"`
	// LR is Adam's learning rate. Default: 0.05.
	LR float64 `yaml:"lr"`
	// CompareAttack also renders with the facet probe fitted on the attacked
	// concept set; it needs an attack on the facet concept. Default: false.
	CompareAttack bool `yaml:"compare_attack"`
	// PoisonedFrom is an earlier run directory whose attack on the facet
	// concept gives the attacked set for compare_attack, instead of this
	// run's attack stage (which `--stages facets` leaves out). Default: none.
	PoisonedFrom string `yaml:"poisoned_from,omitempty"`
}

// FacetTarget is a class (YAML: a label name or index) or a channel of a
// layer (YAML: {layer: L, channel: C}).
type FacetTarget struct {
	// Class is the label name or class index; "" when Layer is set.
	Class   string `yaml:"-"`
	Layer   string `yaml:"layer"`
	Channel int    `yaml:"channel"`
}

// Values of the enumerated fields.
const (
	DeviceAuto = "auto"
	DeviceCPU  = "cpu"
	DeviceCUDA = "cuda"

	FP32 = "fp32"
	BF16 = "bf16"
	FP16 = "fp16"

	CropCenter = "center"
	CropNone   = "none"

	ClassifierSGDHinge = "sgd-hinge"
	ClassifierLogistic = "logistic"
	ClassifierMeanDiff = "mean-diff"
	TestTwoSample      = "two-sample"
	TestOneSample      = "one-sample"
	TestCalibrated     = "calibrated"
	GoalSuppress       = "suppress"
	GoalPromote        = "promote"
	ObjectiveSurrogate = "tcav-surrogate"
	ObjectiveCollision = "feature-collision"
	TowardRandom       = "random"
	StealthMargin      = "margin"
	StealthKL          = "kl"
	NormLinf           = "linf"
	NormL2             = "l2"
)

// Classifiers are the CAV classifiers package cav fits (cav.ClassifierFor),
// for tcav.cav.classifier and transfer_classifier.
var Classifiers = []string{ClassifierSGDHinge, ClassifierLogistic, ClassifierMeanDiff}

// maxRandomSetsByName bounds {prefix, count} so that a typo cannot ask for a
// billion folder names.
const maxRandomSetsByName = 100000

// Default returns the config with every default filled in. Fields marked
// required are empty; Name is filled by Load from the file name.
func Default() *Config {
	c := &Config{
		Audit:     DefaultAudit(),
		Device:    DeviceAuto,
		Precision: FP32,
		CacheDir:  ".cavforge-cache",
		Model: Model{Input: Input{
			Size:       [2]int{224, 224},
			Crop:       CropNone,
			Mean:       [3]float64{0.485, 0.456, 0.406},
			Std:        [3]float64{0.229, 0.224, 0.225},
			PixelRange: [2]float64{0, 1},
		}},
		Data: Data{Root: "data", MaxImages: 100, BatchSize: 64},
		TCAV: TCAV{
			ClassSets:    map[string]string{},
			Random:       RandomSets{Prefix: "random500_", Count: 10},
			CAV:          CAV{Classifier: ClassifierSGDHinge, Alpha: 0.01, Epochs: 50, TestFraction: 0.33},
			Significance: Significance{Alpha: 0.05, Test: TestCalibrated, Bonferroni: true, Negatives: 20},
		},
	}
	c.derive()
	return c
}

// PoolSetName names the i-th random set drawn from the pool folder from.
func PoolSetName(from string, i int) string { return fmt.Sprintf("%s[%d]", from, i) }

// DefaultAttack is what an attack list entry holds before the YAML is read.
func DefaultAttack() Attack {
	return Attack{
		Goal:        GoalSuppress,
		Objective:   ObjectiveSurrogate,
		Toward:      TowardRandom,
		Norm:        NormLinf,
		Eps:         []float64{0.0078, 0.0157, 0.0314},
		Step:        0.002,
		Steps:       200,
		RandomStart: true,
		Tau:         10,
		Stealth:     Stealth{Form: StealthMargin, Margin: 2},
	}
}

// DefaultFacet is what a facets list entry holds before the YAML is read.
func DefaultFacet() Facet {
	return Facet{Strength: [2]float64{0.1, 5.0}, Batch: 4, Size: 224, Steps: 512, LR: 0.05}
}

// elementDefaults gives list entries of these types their defaults before
// decoding, so that an entry only needs the keys it changes.
var elementDefaults = map[reflect.Type]func() reflect.Value{
	reflect.TypeFor[Attack](): func() reflect.Value { return reflect.ValueOf(DefaultAttack()) },
	reflect.TypeFor[Facet]():  func() reflect.Value { return reflect.ValueOf(DefaultFacet()) },
}

// derive fills the defaults that depend on other fields.
func (c *Config) derive() {
	r := &c.TCAV.Random
	if r.From != "" {
		r.Sets = nil
		if r.Count > 0 && r.Count <= maxRandomSetsByName {
			r.Sets = make([]string, r.Count)
			for i := range r.Sets {
				r.Sets[i] = PoolSetName(r.From, i)
			}
		}
	} else if r.Prefix != "" {
		r.Sets = nil
		if r.Count > 0 && r.Count <= maxRandomSetsByName {
			r.Sets = make([]string, r.Count)
			for i := range r.Sets {
				r.Sets[i] = fmt.Sprintf("%s%d", r.Prefix, i)
			}
		}
	}
	if cav := &c.TCAV.CAV; cav.TransferClassifier == "" {
		cav.TransferClassifier = ClassifierSGDHinge // the reference's, unless it is the run's own
		if cav.Classifier == ClassifierSGDHinge {
			cav.TransferClassifier = ClassifierLogistic
		}
	}
	if c.TCAV.ClassSets == nil {
		c.TCAV.ClassSets = map[string]string{}
	}
	for _, t := range c.TCAV.Targets {
		if _, ok := c.TCAV.ClassSets[t]; !ok {
			c.TCAV.ClassSets[t] = t
		}
	}
	for i := range c.Attack {
		a := &c.Attack[i]
		if _, ok := c.TCAV.ClassSets[a.Target]; !ok && a.Target != "" {
			c.TCAV.ClassSets[a.Target] = a.Target
		}
		if a.JudgeRandom == 0 {
			a.JudgeRandom = max(2, int(math.Ceil(float64(len(r.Sets))/2)))
		}
	}
}

// BatchSizeSet reports whether data.batch_size was given (in the file or an
// override) rather than left at its default.
func (c *Config) BatchSizeSet() bool { return c.batchSizeSet }
