package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/report"
	"github.com/cavforge/cavforge/pipeline/run"
)

// setFlags collects repeated --set key.path=value overrides.
type setFlags []string

func (s *setFlags) String() string     { return strings.Join(*s, " ") }
func (s *setFlags) Set(v string) error { *s = append(*s, v); return nil }

func runRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	out := fs.String("out", "", "run directory (default runs/<name>/<run-id>)")
	device := fs.String("device", "", "auto|cpu|cuda|cuda:N (overrides the config)")
	force := fs.Bool("force", false, "recompute cached values")
	logFormat := fs.String("log-format", "", "text|json")
	stages := fs.String("stages", "", "comma-separated subset of tcav,attack,facets")
	var sets setFlags
	fs.Var(&sets, "set", "key.path=value override (repeatable)")
	path, rest := splitPositional(args)
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if path == "" {
		return fmt.Errorf("usage: cavforge run CONFIG.yaml [--out DIR] [--device D] [--set k=v ...] [--force]")
	}
	if *device != "" {
		sets = append(sets, "device="+*device)
	}
	cfg, err := config.Load(path, sets)
	if err != nil {
		return err
	}
	var only []string
	for _, st := range strings.Split(*stages, ",") {
		switch st = strings.TrimSpace(st); st {
		case "":
		case "tcav", "attack", "facets":
			only = append(only, st)
		default:
			return fmt.Errorf("--stages: unknown stage %q (tcav, attack, facets)", st)
		}
	}
	log := newLogger(*logFormat)
	dir, err := run.Run(cfg, run.Options{Out: *out, Force: *force, Log: log, Version: Version, Commit: Commit(),
		Progress: progressBars(), Stages: only})
	if err != nil {
		return err
	}
	fmt.Printf("run directory: %s\nreport: %s/report.html\n", dir, dir)
	return nil
}

func runReport(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: cavforge report RUN_DIR")
	}
	if err := report.Build(args[0]); err != nil {
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
	path, rest := splitPositional(args)
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if path == "" {
		return fmt.Errorf("usage: cavforge validate CONFIG.yaml [--set k=v ...]")
	}
	cfg, err := config.Load(path, sets)
	if err != nil {
		return err
	}
	if err := run.Validate(cfg, newLogger(""), os.Stdout); err != nil {
		return err
	}
	fmt.Println("ok")
	return nil
}
