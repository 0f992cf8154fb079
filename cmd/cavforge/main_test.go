package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// asMainEnv makes this test binary, run as a child, be the cavforge command:
// the tests below run the real command line (flags, signals, exit codes) on
// the real library, as a user would.
const asMainEnv = "CAVFORGE_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		main() // exits
	}
	os.Exit(m.Run())
}

// cli is one cavforge process started by a test, in dir.
type cli struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	stdout bytes.Buffer
	done   chan struct{}
	err    error
	ended  time.Time
}

func (c *cli) Write(p []byte) (int, error) { // stderr
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.Write(p)
}

func startCLI(t *testing.T, dir string, args ...string) *cli {
	t.Helper()
	c := &cli{cmd: exec.Command(os.Args[0], args...), done: make(chan struct{})}
	c.cmd.Dir = dir
	// OMP_WAIT_POLICY set: main does not re-exec itself.
	c.cmd.Env = append(os.Environ(), asMainEnv+"=1", "OMP_WAIT_POLICY=passive")
	c.cmd.Stdout = &c.stdout
	c.cmd.Stderr = c
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		c.ended = time.Now()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

// runCLI runs cavforge to the end and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	c := startCLI(t, dir, args...)
	return c.wait(t, 3*time.Minute), c.stdout.String(), c.errText()
}

func (c *cli) errText() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

func (c *cli) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(limit):
		c.cmd.Process.Kill()
		<-c.done
		t.Fatalf("cavforge %v still running after %v; stderr:\n%s", c.cmd.Args[1:], limit, c.errText())
	}
	var ee *exec.ExitError
	if errors.As(c.err, &ee) {
		return ee.ExitCode()
	}
	if c.err != nil {
		t.Fatal(c.err)
	}
	return 0
}

// waitFor waits until stderr contains s (true) or the process ends.
func (c *cli) waitFor(s string) bool {
	for {
		if strings.Contains(c.errText(), s) {
			return true
		}
		select {
		case <-c.done:
			return strings.Contains(c.errText(), s)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// waitForFile waits until a file matches pattern (true) or the process ends.
func (c *cli) waitForFile(pattern string) bool {
	for {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return true
		}
		select {
		case <-c.done:
			return false
		case <-time.After(time.Millisecond):
		}
	}
}

// litter lists every temp file and partial run directory under the roots.
func litter(t *testing.T, roots ...string) []string {
	t.Helper()
	var found []string
	for _, root := range roots {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if n := d.Name(); strings.Contains(n, ".partial-") || strings.Contains(n, ".tmp-") {
				found = append(found, p)
			}
			return nil
		})
	}
	return found
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
