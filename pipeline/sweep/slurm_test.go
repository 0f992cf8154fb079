package sweep

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The demo sweep as a job array on a real single-node Slurm cluster
// (scripts/slurm/sweep-test.sh: starts it, needs root). CI sets
// CAVFORGE_SLURM_TEST=1.
func TestSlurmSweep(t *testing.T) {
	if os.Getenv("CAVFORGE_SLURM_TEST") != "1" {
		t.Skip("set CAVFORGE_SLURM_TEST=1 to run the demo sweep on a local Slurm cluster (as root)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "../../scripts/slurm/sweep-test.sh")
	cmd.Env = append(os.Environ(), "SWEEP_TEST_CLEANUP=1")
	out, err := cmd.CombinedOutput()
	t.Logf("scripts/slurm/sweep-test.sh:\n%s", out)
	if err != nil {
		t.Fatalf("sweep-test.sh: %v", err)
	}
	if !strings.Contains(string(out), "sweep-test: PASS") {
		t.Fatal("sweep-test.sh did not pass")
	}
}
