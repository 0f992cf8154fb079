package rundir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestCheckRefusesWhatHoldsSomething(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("mine"), 0o644)
	link := filepath.Join(dir, "link")
	os.Symlink(file, link)
	full := filepath.Join(dir, "full")
	os.MkdirAll(full, 0o755)
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	done := filepath.Join(dir, "done")
	os.MkdirAll(done, 0o755)
	os.WriteFile(filepath.Join(done, "results.json"), nil, 0o644)
	empty := filepath.Join(dir, "empty")
	os.MkdirAll(empty, 0o755)
	for _, c := range []struct{ out, want string }{
		{filepath.Join(dir, "new"), ""},
		{empty, ""},
		{file, "existing file"},
		{link, "symbolic link"},
		{full, "not empty"},
		{done, "finished run"},
	} {
		err := Check(c.out, "results.json")
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Check(%s) = %v, want %q", filepath.Base(c.out), err, c.want)
		}
	}
}

func TestUnpublishedRunLeavesNothingNotEvenItsParents(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "runs", "exp", "id")
	log := logrus.New()
	d, err := Create(out, "results.json", log)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CopyLog(); err != nil {
		t.Fatal(err)
	}
	log.Info("hello")
	if b, _ := os.ReadFile(filepath.Join(d.Tmp, LogFile)); !strings.Contains(string(b), "hello") {
		t.Errorf("log.jsonl = %q, want the entry", b)
	}
	d.Close()
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("left %v in %s", entries, root)
	}
	log.Info("after close")
	if len(log.Hooks[logrus.InfoLevel]) != 0 {
		t.Error("Close left the log hook in place")
	}
}

func TestPublishedRunIsAtOutAndKeptOnClose(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "runs", "id")
	d, err := Create(out, "results.json", logrus.New())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d.Tmp, "results.json"), []byte("{}"), 0o644)
	if err := d.Publish(); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := os.Stat(filepath.Join(out, "results.json")); err != nil {
		t.Error(err)
	}
	if m, _ := filepath.Glob(filepath.Join(root, "runs", PartialPrefix(out)+"*")); len(m) != 0 {
		t.Errorf("partial left: %v", m)
	}
}

func TestPublishRefusesAFolderFilledMeanwhile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "id")
	d, err := Create(out, "results.json", logrus.New())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	os.MkdirAll(out, 0o755)
	os.WriteFile(filepath.Join(out, "theirs"), []byte("x"), 0o644)
	if err := d.Publish(); err == nil {
		t.Fatal("Publish replaced a folder another process filled")
	}
	if b, _ := os.ReadFile(filepath.Join(out, "theirs")); string(b) != "x" {
		t.Error("their file changed")
	}
}

func TestIDsOfOneConfigStartedTogetherDiffer(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	a, b := ID(now, "0123456789abcdef"), ID(now, "0123456789abcdef")
	if a == b || !strings.HasPrefix(a, "20260102-030405.006-01234567-") {
		t.Errorf("IDs %s, %s", a, b)
	}
}
