package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/report"
	"github.com/cavforge/cavforge/pipeline/run"
)

const rerunUsage = "cavforge rerun RUN_DIR [--out DIR] [--device auto|cpu|cuda|cuda:N] [--force] [--log-format json]"

func runRerun(args []string) error {
	fs := flag.NewFlagSet("rerun", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	out := fs.String("out", "", "run directory (default runs/<name>/<run-id>)")
	device := fs.String("device", "", "auto|cpu|cuda|cuda:N (overrides the recorded config)")
	force := fs.Bool("force", false, "recompute cached values")
	logFormat := fs.String("log-format", "", "text|json")
	runDir, rest := splitPositional(args)
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if runDir == "" || fs.NArg() > 0 {
		return fmt.Errorf("usage: %s", rerunUsage)
	}
	log, err := newLogger(*logFormat)
	if err != nil {
		return err
	}
	res, err := rerun(runDir, rerunOptions{Out: *out, Device: *device, Force: *force, Log: log})
	if err != nil {
		return err
	}
	fmt.Printf("run directory: %s\nreport: %s/report.html\n", res.Dir, res.Dir)
	if res.Identical {
		fmt.Printf("results.json is byte-identical to %s's\n", runDir)
	} else {
		fmt.Printf("results.json differs from %s's\n", runDir)
	}
	return nil
}

type rerunOptions struct {
	Out, Device string
	Force       bool
	Log         *logrus.Logger
}

type rerunResult struct {
	Dir       string
	Identical bool     // results.json has the original's bytes
	Warnings  []string // what differs from the original run's manifest
}

// rerun runs RUN_DIR/config.yaml (the resolved config: every default and
// absolute path in it) again, and warns about everything that can make the
// result differ from the recorded one: another model file, image lists,
// cavforge commit, libtorch version or device, or an edited config.yaml.
func rerun(runDir string, o rerunOptions) (*rerunResult, error) {
	log := o.Log
	var warnings []string
	warn := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		warnings = append(warnings, msg)
		log.Warn(msg)
	}
	cfg, err := config.Load(filepath.Join(runDir, "config.yaml"), nil)
	if err != nil {
		return nil, fmt.Errorf("rerun: %w", err)
	}
	old, err := readRunManifest(runDir)
	if err != nil {
		return nil, fmt.Errorf("rerun: %w", err)
	}
	if h, err := cfg.Hash(); err == nil && h != old.ConfigHash {
		warn("config: %s/config.yaml does not hash to the manifest's config_hash: it was edited after the run", runDir)
	}
	if o.Device != "" {
		if err := cfg.Set("device=" + o.Device); err != nil {
			return nil, err
		}
	}
	commit := Commit()
	switch {
	case commit != old.Commit:
		warn("cavforge commit: this binary is %s, the run was made by %s", commit, old.Commit)
	case strings.HasSuffix(commit, "+dirty"):
		warn("cavforge commit: %s has uncommitted changes, so the same commit does not pin the same code", commit)
	}
	if v := torch.Version(); v != old.Libtorch {
		warn("libtorch: this build uses %s, the run used %s", v, old.Libtorch)
	}
	if h, err := run.FileHash(cfg.Model.Path); err == nil && h != old.ModelHash {
		warn("model: %s has changed since the run (sha256 %s…, manifest %s…)", cfg.Model.Path, short(h), short(old.ModelHash))
	}

	// config.yaml holds the values of the original --set overrides already
	// (resolved, paths absolute); they are carried into the new manifest,
	// and the stages the original was limited to are run again.
	overrides := old.Overrides
	if o.Device != "" {
		overrides = append(slices.Clone(overrides), "device="+o.Device)
	}
	if len(old.Selected) > 0 {
		log.Infof("rerun: stages %s, as the original run", strings.Join(old.Selected, ","))
	}
	dir, err := run.Run(cfg, run.Options{Out: o.Out, Force: o.Force, Log: log, Version: Version, Commit: commit,
		Stages: old.Selected, Overrides: overrides})
	if err != nil {
		return nil, err
	}
	now, err := readRunManifest(dir)
	if err != nil {
		return nil, err
	}
	union := maps.Clone(old.ImageLists)
	maps.Copy(union, now.ImageLists)
	sets := slices.Sorted(maps.Keys(union))
	for _, s := range sets {
		a, inOld := old.ImageLists[s]
		b, inNow := now.ImageLists[s]
		switch {
		case !inOld:
			warn("images: set %s was not in the original run", s)
		case !inNow:
			warn("images: set %s of the original run was not used", s)
		case a != b:
			warn("images: the image list of set %s differs from the original run's (files added, removed or changed)", s)
		}
	}
	if now.Device != old.Device {
		warn("device: the run used %s, the rerun %s; results are reproducible on the same kind of device only", old.Device, now.Device)
	}
	a, errA := os.ReadFile(filepath.Join(runDir, report.ResultsFile))
	b, errB := os.ReadFile(filepath.Join(dir, report.ResultsFile))
	same := errA == nil && errB == nil && bytes.Equal(a, b)
	if same {
		log.Infof("results.json is byte-identical to %s's", runDir)
	} else {
		log.Warnf("results.json differs from %s's", runDir)
	}
	return &rerunResult{Dir: dir, Identical: same, Warnings: warnings}, nil
}

func readRunManifest(dir string) (*run.Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, report.ManifestFile))
	if err != nil {
		return nil, err
	}
	var m run.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, report.ManifestFile), err)
	}
	return &m, nil
}

func short(h string) string { return h[:min(12, len(h))] }
