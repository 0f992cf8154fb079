package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/interrupt"
	"github.com/cavforge/cavforge/pipeline/report"
	"github.com/cavforge/cavforge/pipeline/run"
)

// setFlags collects repeated --set key.path=value overrides.
type setFlags []string

func (s *setFlags) String() string     { return strings.Join(*s, " ") }
func (s *setFlags) Set(v string) error { *s = append(*s, v); return nil }

func runRun(args []string) error { return runStages(args, false) }

// runAudit is `cavforge audit CONFIG.yaml`: the audit stage alone, with the
// defaults when the config has no audit section.
func runAudit(args []string) error { return runStages(args, true) }

func runStages(args []string, auditOnly bool) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	out := fs.String("out", "", "run directory (default runs/<name>/<run-id>)")
	device := fs.String("device", "", "auto|cpu|cuda|cuda:N (overrides the config)")
	force := fs.Bool("force", false, "recompute cached values")
	logFormat := fs.String("log-format", "", "text|json")
	stages := fs.String("stages", "", "comma-separated subset of tcav,attack,audit,facets")
	var sets setFlags
	fs.Var(&sets, "set", "key.path=value override (repeatable)")
	path, rest := splitPositional(args)
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if path == "" && auditOnly {
		return fmt.Errorf("usage: cavforge audit CONFIG.yaml [--out DIR] [--device D] [--set k=v ...] [--force]")
	}
	if path == "" {
		return fmt.Errorf("usage: cavforge run CONFIG.yaml [--out DIR] [--device D] [--set k=v ...] [--force]")
	}
	if auditOnly {
		if *stages != "" {
			return fmt.Errorf("cavforge audit runs the audit stage only; --stages is for cavforge run")
		}
		*stages = "audit"
	}
	log, err := newLogger(*logFormat)
	if err != nil {
		return err
	}
	if *device != "" {
		sets = append(sets, "device="+*device)
	}
	cfg, err := config.Load(path, sets)
	if err != nil {
		return err
	}
	if auditOnly && !cfg.Audit.Enabled {
		cfg.Audit = config.DefaultAudit()
		cfg.Audit.Enabled = true
		log.Infof("%s has no audit section: auditing with the defaults (audit.random_sets %d, audit.calibration_sets %d, audit.false_alarm %g, audit.min_score %g)",
			path, cfg.Audit.RandomSets, cfg.Audit.CalibrationSets, cfg.Audit.FalseAlarm, cfg.Audit.MinScore)
	}
	only, err := parseStages(*stages)
	if err != nil {
		return err
	}
	dir, err := run.Run(cfg, run.Options{Out: *out, Force: *force, Log: log, Version: Version, Commit: Commit(),
		Progress: progressBars(), Stages: only, Overrides: sets})
	if err != nil {
		return err
	}
	fmt.Printf("run directory: %s\nreport: %s/report.html\n", dir, dir)
	return nil
}

// parseStages reads --stages: a comma-separated subset of run.StageNames.
func parseStages(list string) ([]string, error) {
	var only []string
	for _, st := range strings.Split(list, ",") {
		if st = strings.TrimSpace(st); st == "" {
			continue
		}
		if !slices.Contains(run.StageNames, st) {
			return nil, fmt.Errorf("--stages: unknown stage %q (%s)", st, strings.Join(run.StageNames, ", "))
		}
		if !slices.Contains(only, st) {
			only = append(only, st)
		}
	}
	return only, nil
}

func runReport(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: cavforge report RUN_DIR")
	}
	// Each file is replaced whole (atomicfile), so an interrupted rebuild
	// leaves every file either as it was or rebuilt.
	note := fmt.Sprintf("every file in %s is whole, as it was or rebuilt; run cavforge report %s again", args[0], args[0])
	interrupt.SetNote(note)
	if err := report.Build(args[0]); err != nil {
		if ie := interrupt.As(interrupt.Err()); ie != nil {
			return &interrupt.Error{Signal: ie.Signal, Detail: note}
		}
		return err
	}
	fmt.Printf("report: %s/report.html\n", args[0])
	return nil
}

func runValidate(args []string) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var sets setFlags
	fs.Var(&sets, "set", "key.path=value override (repeatable)")
	stages := fs.String("stages", "", "comma-separated subset of tcav,attack,audit,facets")
	logFormat := fs.String("log-format", "", "text|json")
	path, rest := splitPositional(args)
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if path == "" {
		return fmt.Errorf("usage: cavforge validate CONFIG.yaml [--set k=v ...] [--stages list]")
	}
	log, err := newLogger(*logFormat)
	if err != nil {
		return err
	}
	cfg, err := config.Load(path, sets)
	if err != nil {
		return err
	}
	only, err := parseStages(*stages)
	if err != nil {
		return err
	}
	if err := run.Validate(cfg, log, os.Stdout, only...); err != nil {
		if ie := interrupt.As(interrupt.Err()); ie != nil {
			return &interrupt.Error{Signal: ie.Signal, Detail: "nothing written"}
		}
		return err
	}
	fmt.Println("ok")
	return nil
}
