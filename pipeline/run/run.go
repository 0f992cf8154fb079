// Package run orders the stages of an experiment, caches what they compute,
// records timings and writes the run directory. Each stage lives in its own
// package; this one only wires them together.
package run

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/atomicfile"
	"github.com/cavforge/cavforge/pipeline/cache"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/interrupt"
	"github.com/cavforge/cavforge/pipeline/model"
	"github.com/cavforge/cavforge/pipeline/plan"
	"github.com/cavforge/cavforge/pipeline/progress"
	"github.com/cavforge/cavforge/pipeline/report"
	"github.com/cavforge/cavforge/pipeline/rundir"
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
	// Stages limits the run to some of StageNames; empty runs all.
	Stages []string
	// Overrides are the command line's --set key=value, for the manifest
	// (the resolved config already holds their values).
	Overrides []string
}

// Manifest is manifest.json (see package rundir).
type Manifest = rundir.Manifest

// experiment is the state one run shares between its stages.
type experiment struct {
	cfg    *config.Config
	opts   Options
	dir    string // the run directory being written
	log    *logrus.Logger
	device string
	model  *model.Model
	plan   *plan.Plan // the config resolved against the model: sets and specs
	// extractors are every extractor made, extract first, closed at the end.
	extract    *activations.Extractor
	extractors []*activations.Extractor
	cast       torch.Autocast
	cache      cache.Cache
	fitter     *cav.Fitter // every CAV of the run, and the sets it uploaded
	cavs       *cav.Writer // cavs/ of the run directory
	manifest   Manifest
	results    report.Results
}

// PartialPrefix is how the temporary directory of an unfinished run at out
// begins (it sits beside out); a leftover one is an interrupted run.
func PartialPrefix(out string) string { return rundir.PartialPrefix(out) }

// Run executes cfg and returns the run directory. Nothing is left at the
// final path unless the run succeeds: it is built in a sibling temporary
// directory and renamed into place, and an out that already holds anything
// (a file, a link, a folder that is not empty) is an error before any work.
// On SIGINT or SIGTERM (see package interrupt) it stops at the next stage,
// removes what it wrote and returns an *interrupt.Error.
func Run(cfg *config.Config, opts Options) (dir string, err error) {
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
	if err := CheckStages(cfg, opts.Stages); err != nil {
		return "", err
	}
	out := opts.Out
	if out == "" {
		out = filepath.Join("runs", cfg.Name, rundir.ID(start, cfgHash))
	}
	rd, err := rundir.Create(out, report.ResultsFile, log)
	if err != nil {
		return "", err
	}
	defer rd.Close()
	removed, err := cache.Cache{Dir: cfg.CacheDir}.RemoveLeftovers()
	if len(removed) > 0 {
		log.Warnf("cache %s: removed %d temp files left by runs killed while writing an entry (%s)",
			cfg.CacheDir, len(removed), strings.Join(removed, ", "))
	}
	if err != nil {
		log.Warnf("cache %s: cannot remove what killed runs left: %v", cfg.CacheDir, err)
	}
	interrupt.SetNote("nothing written to " + out)
	defer func() {
		// Interrupted, the note stays true until the process exits: a
		// second signal before the command prints its line says it too.
		if interrupt.Err() == nil {
			interrupt.SetNote("")
		}
	}()
	defer func() {
		if ie := interrupt.Err(); err != nil && ie != nil {
			err = &interrupt.Error{Signal: interrupt.As(ie).Signal, Detail: "nothing written to " + out}
		}
	}()
	if err := rd.CopyLog(); err != nil {
		return "", err
	}
	tmp := rd.Tmp

	e := &experiment{cfg: cfg, opts: opts, log: log, dir: tmp}
	e.manifest = Manifest{Name: cfg.Name + " (" + filepath.Base(out) + ")", Cavforge: opts.Version, Commit: opts.Commit, Go: runtime.Version(), Libtorch: torch.Version(),
		CUDA: torch.CUDAAvailable(), Seed: cfg.Seed, ConfigHash: cfgHash, Start: start,
		Stages:   map[string]float64{},
		Selected: opts.Stages, Overrides: opts.Overrides}
	if err := e.run(); err != nil {
		return "", err
	}
	if e.fitter != nil {
		e.manifest.CacheHits += e.fitter.Hits
	}
	if e.extract != nil {
		e.manifest.CacheHits += e.extract.Hits
		e.manifest.ActivationPass = e.extract.Choice
		e.manifest.GradientPass = e.extract.GradChoice
	}
	e.manifest.ImageLists = e.plan.Hashes()
	if err := e.cavs.Close(e.manifest.ImageLists); err != nil {
		return "", err
	}
	e.manifest.End = time.Now().UTC()
	if err := atomicfile.Write(filepath.Join(tmp, "config.yaml"), cfgYAML); err != nil {
		return "", err
	}
	if err := rd.WriteManifest(&e.manifest); err != nil {
		return "", err
	}
	if err := e.timed("report", func() error { return report.Write(tmp, &e.results) }); err != nil {
		return "", err
	}
	if err := interrupt.Err(); err != nil {
		return "", err
	}
	if err := rd.Publish(); err != nil {
		return "", err
	}
	return out, nil
}

func (e *experiment) run() error {
	defer func() {
		for _, ex := range e.extractors {
			ex.Close()
		}
		if e.fitter != nil {
			e.fitter.Close()
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
		{"list images", func() error { return e.plan.ListImages() }},
		{"tcav", e.tcav},
		{"attack", e.attacks},
		{"audit", e.audit},
		{"facets", e.facets},
	}
	for _, st := range steps {
		if !e.wants(st.name) {
			continue
		}
		if err := interrupt.Err(); err != nil {
			return err
		}
		if err := e.timed(st.name, st.f); err != nil {
			return err
		}
	}
	return nil
}

// wants reports whether a step runs: the set-up steps always do.
func (e *experiment) wants(step string) bool {
	return !slices.Contains(StageNames, step) || len(e.opts.Stages) == 0 || slices.Contains(e.opts.Stages, step)
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
	m, classes, cast, err := model.Open(plan.ModelSpec(cfg), e.log)
	if err != nil {
		return err
	}
	e.model, e.device, e.cast = m, m.Device(), cast
	e.manifest.Device = e.device
	e.manifest.DeviceName = model.DeviceName(e.device)
	hash, err := FileHash(cfg.Model.Path)
	if err != nil {
		return err
	}
	e.manifest.ModelHash = hash
	var stored *cav.Store
	if from := cfg.TCAV.CAVsFrom; from != "" && e.wants("tcav") {
		if stored, err = cav.Open(from, hash); err != nil {
			return fmt.Errorf("tcav.cavs_from: %w", err)
		}
		e.log.Infof("tcav.cavs_from: scoring with the CAVs of %s (%d in %s), fitting none", from, len(stored.Index.CAVs), stored.Dir)
	}
	if e.plan, err = plan.New(cfg, classes, m.Input, stored, e.log); err != nil {
		return err
	}
	e.cache = cache.Cache{Dir: cfg.CacheDir, Log: e.log}
	e.extract = e.extractorFor(m.Input)
	e.fitter = &cav.Fitter{Device: e.device, Cache: e.cache, ModelKey: e.extract.ModelKey, Seed: cfg.Seed, Force: e.opts.Force}
	if e.dir != "" { // not for validate
		if e.cavs, err = cav.NewWriter(e.dir, hash); err != nil {
			return err
		}
		e.fitter.Record = e.cavs.Add
	}
	return nil
}

// extractorFor is the run's extractor for the model seen through in; the
// preprocessing is part of every cache key.
func (e *experiment) extractorFor(in model.Input) *activations.Extractor {
	spec, _ := json.Marshal(in)
	ex := &activations.Extractor{Model: e.model.WithInput(in), Cache: e.cache, BatchSize: e.cfg.Data.BatchSize, AutoBatch: !e.cfg.BatchSizeSet(),
		SkipBad: e.cfg.Data.SkipBadImages, Cast: e.cast, Log: e.log, Force: e.opts.Force, Progress: e.opts.Progress,
		ModelKey: cache.Key("model", e.manifest.ModelHash, string(spec), e.cfg.Precision, deviceKind(e.device))}
	e.extractors = append(e.extractors, ex)
	return ex
}

// FileHash is the SHA-256 of a file, as the manifest records the model.
func FileHash(path string) (string, error) { return images.FileSHA256(path) }

func deviceKind(dev string) string {
	if strings.HasPrefix(dev, "cuda") {
		return "cuda"
	}
	return "cpu"
}
