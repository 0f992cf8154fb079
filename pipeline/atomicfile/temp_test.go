package atomicfile

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// deadPID is the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	return c.Process.Pid
}

// Only what a gone process of this host made is a leftover: never a live
// process's work, another host's (a shared directory), or the user's files.
func TestLeftoverIsOnlyADeadOwnersTempFileOrPartialDirectory(t *testing.T) {
	_, host, _ := strings.Cut(owner, ".")
	dead := strconv.Itoa(deadPID(t))
	cases := []struct {
		name string
		want bool
	}{
		{".results.json.tmp-" + dead + "." + host + "-123", true},
		{".run.partial-" + dead + "." + host + "-456", true},
		{".ab.f32.tmp-" + owner + "-1", false},                      // this process
		{".ab.f32.tmp-" + dead + ".0badc0de-1", host == "0badc0de"}, // another host
		{".run.partial-123456789", false},                           // no owner
		{"results.json.tmp-" + dead + "." + host + "-1", false},     // not hidden
		{".notes.txt", false},
		{".x.tmp-0." + host + "-1", false},
	}
	for _, c := range cases {
		if _, got := Leftover(c.name); got != c.want {
			t.Errorf("Leftover(%q) = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestRemoveLeftoversKeepsLiveWork(t *testing.T) {
	dir := t.TempDir()
	_, host, _ := strings.Cut(owner, ".")
	dead := strconv.Itoa(deadPID(t))
	gone := filepath.Join(dir, ".run.partial-"+dead+"."+host+"-1")
	os.MkdirAll(filepath.Join(gone, "plots"), 0o755)
	os.WriteFile(filepath.Join(gone, "plots", "a.png"), []byte("x"), 0o644)
	live, undo, err := MkdirTemp(dir, "other")
	if err != nil {
		t.Fatal(err)
	}
	defer undo.Now()
	removed, err := RemoveLeftovers(dir)
	if err != nil || len(removed) != 1 || removed[0] != gone {
		t.Errorf("removed %v (%v), want only %s", removed, err, gone)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live partial directory was removed: %v", err)
	}
	undo.Now()
	if _, err := os.Stat(live); err == nil {
		t.Error("Undo.Now left the partial directory")
	}
}
