package testdemo

import (
	"os"
	"testing"
)

// A wrong Dir would make every demo test fail with a missing model; this
// says so once, by name.
func TestDirHoldsTheDemoModelLabelsAndData(t *testing.T) {
	for _, p := range []string{Path("model.pt"), Path("labels.txt"), Path("data", "striped")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("testdemo.Dir %s: %v", Dir, err)
		}
	}
}
