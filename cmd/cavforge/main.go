// Command cavforge runs concept-based explanations (TCAV, faceted feature
// visualization) on image classifiers, and attacks them.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/interrupt"
	"github.com/cavforge/cavforge/pipeline/progress"
)

// command is one subcommand: its usage line and what it does with its args.
type command struct {
	usage string
	run   func(args []string) error
	// stops: SIGINT and SIGTERM stop it at a safe point and undo what it
	// was writing (package interrupt); the others write nothing and die.
	stops bool
}

var commands = map[string]command{
	"version":  {"cavforge version", runVersion, false},
	"layers":   {"cavforge layers MODEL.pt [--input C,H,W] [--device D] [--json]", runLayers, false},
	"bench":    {benchUsage, runBench, false},
	"run":      {"cavforge run CONFIG.yaml [--out DIR] [--device auto|cpu|cuda|cuda:N] [--set key.path=value ...] [--stages tcav,attack,audit,facets] [--force] [--log-format text|json]", runRun, true},
	"report":   {"cavforge report RUN_DIR", runReport, true},
	"audit":    {"cavforge audit CONFIG.yaml [--out DIR] [--device auto|cpu|cuda|cuda:N] [--set key.path=value ...] [--force] [--log-format text|json]", runAudit, true},
	"validate": {"cavforge validate CONFIG.yaml [--set key.path=value ...] [--stages tcav,attack,audit,facets] [--log-format text|json]", runValidate, true},
	"sweep":    {sweepUsage, runSweep, true},
	"rerun":    {rerunUsage, runRerun, true},
}

func main() {
	passiveOpenMP()
	if path := os.Getenv("CAVFORGE_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			code := dispatch(os.Args[1:])
			pprof.StopCPUProfile()
			f.Close()
			os.Exit(code)
		}
	}
	os.Exit(dispatch(os.Args[1:]))
}

// passiveOpenMP restarts the process with OMP_WAIT_POLICY=passive unless the
// user chose a policy. OpenMP reads it once, when libtorch is loaded, which
// is before any Go code runs. With the default active spinning, libtorch's
// worker threads and the Go runtime's own threads compete for the cores on
// every parallel region; on a loaded machine cavforge then ran 20–50× slower
// than the same work in plain C++ (see cavforge bench), and with passive
// waiting it does not.
func passiveOpenMP() {
	if os.Getenv("OMP_WAIT_POLICY") != "" {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	os.Setenv("OMP_WAIT_POLICY", "passive")
	// On success Exec does not return; on failure carry on as we are.
	_ = syscall.Exec(exe, os.Args, os.Environ())
}

func dispatch(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "cavforge: unknown command %q (run cavforge help)\n", args[0])
		return 2
	}
	if cmd.stops {
		interrupt.Catch("cavforge " + args[0])
	}
	if err := cmd.run(args[1:]); err != nil {
		line := fmt.Sprintf("cavforge %s: %s", args[0], oneLine(err.Error()))
		if ie := interrupt.As(err); ie != nil {
			// Printed and exited in one step, so that a forced stop racing
			// this return does not print a second line.
			interrupt.Exit(line, ie.Code())
		}
		fmt.Fprintln(os.Stderr, line)
		return 1
	}
	return 0
}

func usage(w *os.File) {
	fmt.Fprintln(w, "cavforge: concept-based explanations on image classifiers, and attacks on them")
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %s\n", commands[n].usage)
	}
}

// oneLine keeps errors to the single line the CLI promises.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// newLogger logs to stderr: text on a terminal, JSON otherwise or when asked
// (--log-format text|json).
func newLogger(format string) (*logrus.Logger, error) {
	log := logrus.New()
	log.SetOutput(os.Stderr)
	switch format {
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{})
	case "text":
	case "":
		if !isTerminal(os.Stderr) {
			log.SetFormatter(&logrus.JSONFormatter{})
		}
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	return log, nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressBars draws on stderr when it is a terminal.
func progressBars() *progress.Bars {
	if !isTerminal(os.Stderr) {
		return nil
	}
	return &progress.Bars{W: os.Stderr}
}
