// Package run orders the stages of an experiment, caches what they compute,
// records timings and writes the run directory. Each stage lives in its own
// package; this one only wires them together.
package run

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/atomicfile"
	"github.com/cavforge/cavforge/pipeline/cache"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/model"
	"github.com/cavforge/cavforge/pipeline/progress"
	"github.com/cavforge/cavforge/pipeline/report"
)

// Options are the command line's part of a run.
type Options struct {
	Out     string // the run directory itself; default runs/<name>/<run-id>
	Force   bool   // recompute instead of reading the cache
	Log     *logrus.Logger
	Version string // cavforge version and commit, for the manifest
	Commit  string
	// Progress draws bars for long stages; nil draws none.
	Progress *progress.Bars
	// Stages limits the run to some of tcav, attack, facets; empty runs all.
	Stages []string
}

// Manifest is manifest.json: what is needed to reproduce and audit a run.
type Manifest struct {
	Name       string             `json:"name"` // experiment and run directory
	Cavforge   string             `json:"cavforge"`
	Commit     string             `json:"commit"`
	Go         string             `json:"go"`
	Libtorch   string             `json:"libtorch"`
	CUDA       bool               `json:"cuda"`
	Device     string             `json:"device"`
	DeviceName string             `json:"device_name"`
	Seed       int64              `json:"seed"`
	ConfigHash string             `json:"config_hash"`
	ModelHash  string             `json:"model_hash"`
	ImageLists map[string]string  `json:"image_lists"`
	Start      time.Time          `json:"start"`
	End        time.Time          `json:"end"`
	Stages     map[string]float64 `json:"stage_seconds"`
	CacheHits  int                `json:"cache_hits"`
}

// experiment is the state one run shares between its stages.
type experiment struct {
	cfg     *config.Config
	opts    Options
	dir     string // the run directory being written
	log     *logrus.Logger
	device  string
	model   *model.Model
	labels  []string
	classes int
	sets    map[string]activations.Set
	effects map[string]string // set → what preprocessing does to it
	extract *activations.Extractor
	// extractors are every extractor made, e.extract first, closed at the end.
	extractors []*activations.Extractor
	cast       torch.Autocast
	cache      cache.Cache
	onDevice   map[string]*cav.Examples // activations uploaded for CAV fitting
	freshCAVs  map[string]bool          // CAV cache keys written by this run
	manifest   Manifest
	results    report.Results
}

// PartialPrefix is how the temporary directory of an unfinished run at out
// begins (it sits beside out); a leftover one is an interrupted run.
func PartialPrefix(out string) string { return "." + filepath.Base(out) + ".partial-" }

// Run executes cfg and returns the run directory. Nothing is left at the
// final path unless the run succeeds: it is built in a sibling temporary
// directory and renamed into place.
func Run(cfg *config.Config, opts Options) (string, error) {
	log := opts.Log
	if log == nil {
		log = logrus.StandardLogger()
	}
	start := time.Now().UTC()
	cfgYAML, err := cfg.Marshal()
	if err != nil {
		return "", err
	}
	cfgHash, err := cfg.Hash()
	if err != nil {
		return "", err
	}
	out := opts.Out
	if out == "" {
		out = filepath.Join("runs", cfg.Name, start.Format("20060102-150405")+"-"+cfgHash[:8])
	}
	if entries, err := os.ReadDir(out); err == nil && len(entries) > 0 {
		return "", fmt.Errorf("run directory %s exists and is not empty", out)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), PartialPrefix(out))
	if err != nil {
		return "", err
	}
	// MkdirTemp makes it private; a run directory is for the whole group.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)

	logFile, err := os.Create(filepath.Join(tmp, "log.jsonl"))
	if err != nil {
		return "", err
	}
	defer logFile.Close()
	hook := &fileHook{w: logFile, f: &logrus.JSONFormatter{}}
	log.AddHook(hook)
	defer removeHook(log, hook)

	e := &experiment{cfg: cfg, opts: opts, log: log, sets: setsMap(), effects: map[string]string{}, dir: tmp}
	e.manifest = Manifest{Name: cfg.Name + " (" + filepath.Base(out) + ")", Cavforge: opts.Version, Commit: opts.Commit, Go: runtime.Version(), Libtorch: torch.Version(),
		CUDA: torch.CUDAAvailable(), Seed: cfg.Seed, ConfigHash: cfgHash, Start: start,
		Stages: map[string]float64{}, ImageLists: map[string]string{}}
	if err := e.run(); err != nil {
		return "", err
	}
	if e.extract != nil {
		e.manifest.CacheHits += e.extract.Hits
	}
	e.manifest.End = time.Now().UTC()
	if err := atomicfile.Write(filepath.Join(tmp, "config.yaml"), cfgYAML); err != nil {
		return "", err
	}
	mj, err := json.MarshalIndent(e.manifest, "", "  ")
	if err != nil {
		return "", err
	}
	if err := atomicfile.Write(filepath.Join(tmp, "manifest.json"), append(mj, '\n')); err != nil {
		return "", err
	}
	if err := e.timed("report", func() error { return report.Write(tmp, &e.results) }); err != nil {
		return "", err
	}
	if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	return out, nil
}

func (e *experiment) run() error {
	defer func() {
		for _, ex := range e.extractors {
			ex.Close()
		}
		for _, x := range e.onDevice {
			x.Close()
		}
		if e.model != nil {
			e.model.Close()
		}
	}()
	steps := []struct {
		name string
		f    func() error
	}{
		{"load model", e.loadModel},
		{"list images", e.listImages},
		{"tcav", e.tcav},
		{"attack", e.attacks},
		{"facets", e.facets},
	}
	for _, st := range steps {
		if !e.wants(st.name) {
			continue
		}
		if err := e.timed(st.name, st.f); err != nil {
			return err
		}
	}
	return nil
}

// wants reports whether a step runs: the set-up steps always do.
func (e *experiment) wants(step string) bool {
	switch step {
	case "tcav", "attack", "facets":
	default:
		return true
	}
	if len(e.opts.Stages) == 0 {
		return true
	}
	for _, s := range e.opts.Stages {
		if s == step {
			return true
		}
	}
	return false
}

func (e *experiment) timed(name string, f func() error) error {
	t := time.Now()
	err := f()
	e.manifest.Stages[name] += time.Since(t).Seconds()
	if err == nil {
		e.log.WithFields(logrus.Fields{"stage": name, "seconds": time.Since(t).Seconds()}).Info("stage done")
	}
	return err
}

func (e *experiment) loadModel() error {
	cfg := e.cfg
	dev, fellBack, err := torch.ResolveDevice(cfg.Device)
	if err != nil {
		return err
	}
	if fellBack {
		e.log.Warn("device auto: no CUDA device found, running on the CPU")
	}
	e.device = dev
	e.manifest.Device = dev
	e.manifest.DeviceName = deviceName(dev)
	cast := torch.FP32
	if strings.HasPrefix(dev, "cuda") {
		cast = map[string]torch.Autocast{"bf16": torch.BF16, "fp16": torch.FP16}[cfg.Precision]
	} else if cfg.Precision != "fp32" {
		e.log.Warnf("precision %s applies on CUDA only; the CPU runs fp32", cfg.Precision)
	}
	in := cfg.Model.Input
	m, err := model.Load(cfg.Model.Path, dev, model.Input{Size: in.Size, Resize: in.Resize, Crop: in.Crop,
		Mean: in.Mean, Std: in.Std, PixelRange: in.PixelRange})
	if err != nil {
		return err
	}
	e.model = m
	if err := m.CheckLayers(e.layers()); err != nil {
		return err
	}
	if e.classes, err = m.Classes(e.layers()); err != nil {
		return err
	}
	if cfg.Model.Labels != "" {
		if e.labels, err = readLabels(cfg.Model.Labels); err != nil {
			return err
		}
		if len(e.labels) != e.classes {
			return fmt.Errorf("model.labels %s has %d names but the model has %d outputs", cfg.Model.Labels, len(e.labels), e.classes)
		}
	}
	for _, t := range e.targets() {
		if _, err := e.classIndex(t); err != nil {
			return err
		}
	}
	hash, err := FileHash(cfg.Model.Path)
	if err != nil {
		return err
	}
	e.manifest.ModelHash = hash
	e.cache = cache.Cache{Dir: cfg.CacheDir, Log: e.log}
	e.cast = cast
	e.extract = e.extractorFor(m.Input)
	return nil
}

// extractorFor is the run's extractor for the model seen through in; the
// preprocessing is part of every cache key.
func (e *experiment) extractorFor(in model.Input) *activations.Extractor {
	spec, _ := json.Marshal(in)
	ex := &activations.Extractor{Model: e.model.WithInput(in), Cache: e.cache, BatchSize: e.cfg.Data.BatchSize,
		SkipBad: e.cfg.Data.SkipBadImages, Cast: e.cast, Log: e.log, Force: e.opts.Force, Progress: e.opts.Progress,
		ModelKey: cache.Key("model", e.manifest.ModelHash, string(spec), e.cfg.Precision, deviceKind(e.device))}
	e.extractors = append(e.extractors, ex)
	return ex
}

// targets are every class any stage explains or attacks.
func (e *experiment) targets() []string {
	out := append([]string(nil), e.cfg.TCAV.Targets...)
	for _, a := range e.cfg.Attack {
		out = append(out, a.Target)
	}
	for _, f := range e.cfg.Facets {
		if f.Target.Class != "" {
			out = append(out, f.Target.Class)
		}
	}
	return out
}

// layers are every layer any stage asks for.
func (e *experiment) layers() []string {
	seen := map[string]bool{}
	var out []string
	add := func(ls ...string) {
		for _, l := range ls {
			if !seen[l] {
				seen[l] = true
				out = append(out, l)
			}
		}
	}
	add(e.cfg.TCAV.Layers...)
	for _, a := range e.cfg.Attack {
		add(a.Layer)
	}
	for _, f := range e.cfg.Facets {
		add(f.FacetLayers...)
		if f.Target.Layer != "" {
			add(f.Target.Layer)
		}
	}
	return out
}

// listImages chooses every set's images and hashes the lists.
func (e *experiment) listImages() error {
	cfg := e.cfg
	names := append(append([]string(nil), cfg.TCAV.Concepts...), cfg.TCAV.Random.Sets...)
	for _, t := range e.targets() {
		names = append(names, e.classSet(t))
	}
	for _, a := range cfg.Attack {
		names = append(names, a.Concept)
		if a.Toward != "" && a.Toward != "random" {
			names = append(names, a.Toward)
		}
	}
	for _, f := range cfg.Facets {
		names = append(names, f.Facet)
	}
	for _, n := range names {
		if _, err := e.imageSet(n); err != nil {
			return err
		}
	}
	return e.checkSplits()
}

func (e *experiment) classSet(target string) string {
	if s, ok := e.cfg.TCAV.ClassSets[target]; ok && s != "" {
		return s
	}
	return target
}

// classIndex resolves a target written as a label name or an index.
func (e *experiment) classIndex(target string) (int, error) {
	for i, l := range e.labels {
		if l == target {
			return i, nil
		}
	}
	if i, err := strconv.Atoi(target); err == nil {
		if i < 0 || i >= e.classes {
			return 0, fmt.Errorf("target %d is out of range: the model has %d outputs", i, e.classes)
		}
		return i, nil
	}
	if e.labels == nil {
		return 0, fmt.Errorf("target %q is not a class index and model.labels is not set", target)
	}
	return 0, fmt.Errorf("target %q is not in the labels file %s", target, e.cfg.Model.Labels)
}

func readLabels(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model.labels: %w", err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		out = append(out, strings.TrimSpace(line))
	}
	if len(out) == 0 || (len(out) == 1 && out[0] == "") {
		return nil, fmt.Errorf("model.labels %s is empty", path)
	}
	return out, nil
}

// FileHash is the SHA-256 of a file, as the manifest records the model.
func FileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func deviceKind(dev string) string {
	if strings.HasPrefix(dev, "cuda") {
		return "cuda"
	}
	return "cpu"
}

func deviceName(dev string) string {
	if idx, ok := strings.CutPrefix(dev, "cuda:"); ok {
		names, _ := torch.CUDADevices()
		if i, err := strconv.Atoi(idx); err == nil && i < len(names) {
			return names[i]
		}
	}
	return "cpu"
}

// fileHook copies log entries to the run's log.jsonl.
type fileHook struct {
	w io.Writer
	f logrus.Formatter
}

func (h *fileHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h *fileHook) Fire(entry *logrus.Entry) error {
	b, err := h.f.Format(entry)
	if err != nil {
		return err
	}
	_, err = h.w.Write(b)
	return err
}

func removeHook(log *logrus.Logger, hook logrus.Hook) {
	hooks := logrus.LevelHooks{}
	for lvl, hs := range log.Hooks {
		for _, h := range hs {
			if h != hook {
				hooks[lvl] = append(hooks[lvl], h)
			}
		}
	}
	log.ReplaceHooks(hooks)
}

func setsMap() map[string]activations.Set { return map[string]activations.Set{} }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
