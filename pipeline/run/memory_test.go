package run_test

import (
	"fmt"
	"image"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/internal/testdemo"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/run"
)

const memoryChildEnv = "CAVFORGE_MEMORY_CHILD_CONFIG"

// TestMemoryChild is the process TestCameraPhotosRunInBoundedMemory
// measures; it does nothing in a normal test run.
func TestMemoryChild(t *testing.T) {
	path := os.Getenv(memoryChildEnv)
	if path == "" {
		t.Skip("helper process of the memory test")
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	if _, err := run.Run(cfg, run.Options{Out: filepath.Join(filepath.Dir(path), "run"), Log: log}); err != nil {
		t.Fatal(err)
	}
}

// cameraJPEG writes a w×h JPEG with smooth colour and some texture, the
// size of a camera photo.
func cameraJPEG(t *testing.T, path string, w, h, seed int) {
	t.Helper()
	m := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	for y := range h {
		for x := range w {
			m.Y[y*m.YStride+x] = uint8((x/7 + y/5 + seed*31 + (x*y/97)%23) % 256)
		}
	}
	for i := range m.Cb {
		m.Cb[i] = uint8(96 + (i/1000+seed*17)%64)
		m.Cr[i] = uint8(112 + (i/3000)%48)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := jpeg.Encode(f, m, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
}

// A concept set of 6000×4000 JPEGs for a 64×64 model: host memory is bounded
// by the images being decoded and the batch at the input size, not by the
// photos' resolution or the set's size (the first version decoded every
// photo to float32 at full size and held the next set too: 10.8 GB for 12).
func TestCameraPhotosRunInBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and decodes 24-megapixel JPEGs")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(data, "photos"), 0o755); err != nil {
		t.Fatal(err)
	}
	const photos = 8
	for i := range photos {
		cameraJPEG(t, filepath.Join(data, "photos", fmt.Sprintf("IMG_%04d.jpg", i)), 6000, 4000, i)
	}
	for _, set := range []string{"random500_0", "random500_1", "random500_2", "zebra"} {
		if err := os.Symlink(testdemo.Path("data", set), filepath.Join(data, set)); err != nil {
			t.Fatal(err)
		}
	}
	yaml := testdemo.Config{Name: "photos", CacheDir: filepath.Join(dir, "cache"), DataRoot: data, MaxImages: 12, BatchSize: 32}.YAML() + `tcav:
  targets: [zebra]
  concepts: [photos]
  random: {prefix: random500_, count: 3}
  layers: [block3]
`
	cfgPath := testdemo.WriteFile(t, dir, "photos.yaml", yaml)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestMemoryChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), memoryChildEnv+"="+cfgPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run on camera photos: %v\n%s", err, out)
	}
	peak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10 // KiB on Linux
	t.Logf("peak RSS %.0f MiB for %d photos of 6000x4000 (%.0f MiB as float32 at full size)",
		float64(peak)/(1<<20), photos, float64(photos*6000*4000*3*4)/(1<<20))
	if peak > 2<<30 {
		t.Errorf("peak RSS %.2f GiB for a TCAV run on %d camera photos, want under 2 GiB", float64(peak)/(1<<30), photos)
	}
}
