package activations

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/model"
)

func TestNewSetFindsACorruptFileBeforeComputeAndSkipsItOnlyWhenAsked(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "stripes")
	os.MkdirAll(dir, 0o755)
	good := filepath.Join(dir, "a.png")
	f, _ := os.Create(good)
	png.Encode(f, image.NewRGBA(image.Rect(0, 0, 8, 6)))
	f.Close()
	bad := filepath.Join(dir, "b.png")
	os.WriteFile(bad, []byte("not a png"), 0o644)
	in := model.Input{Size: [2]int{4, 4}, Mean: [3]float64{0, 0, 0}, Std: [3]float64{1, 1, 1}, PixelRange: [2]float64{0, 1}}
	log := logrus.New()
	log.SetOutput(os.Stderr)

	if _, _, err := NewSet(root, "stripes", []string{good, bad}, in, false, log); err == nil || !strings.Contains(err.Error(), "b.png") {
		t.Errorf("corrupt file not named: %v", err)
	}
	s, effect, err := NewSet(root, "stripes", []string{good, bad}, in, true, log)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Files) != 1 || s.Files[0] != good || s.Hash == "" || effect == "" {
		t.Errorf("set %+v, effect %q: want only %s, hashed, with its effect", s, effect, good)
	}
	if _, _, err := NewSet(root, "stripes", []string{bad}, in, true, log); err == nil || !strings.Contains(err.Error(), "none of its 1 images") {
		t.Errorf("no readable image: %v", err)
	}
}
