package rundir

import (
	"encoding/json"
	"path/filepath"
	"time"

	"github.com/cavforge/cavforge/pipeline/atomicfile"
	"github.com/cavforge/cavforge/pipeline/model"
)

// ManifestFile is where a run records what reproduces it.
const ManifestFile = "manifest.json"

// Manifest is manifest.json: what is needed to reproduce and audit a run.
type Manifest struct {
	Name       string             `json:"name"` // experiment and run directory
	Cavforge   string             `json:"cavforge"`
	Commit     string             `json:"commit"`
	Go         string             `json:"go"`
	Libtorch   string             `json:"libtorch"`
	CUDA       bool               `json:"cuda"`
	Device     string             `json:"device"`
	DeviceName string             `json:"device_name"`
	Seed       int64              `json:"seed"`
	ConfigHash string             `json:"config_hash"`
	ModelHash  string             `json:"model_hash"`
	ImageLists map[string]string  `json:"image_lists"`
	Start      time.Time          `json:"start"`
	End        time.Time          `json:"end"`
	Stages     map[string]float64 `json:"stage_seconds"`
	CacheHits  int                `json:"cache_hits"`
	// Selected are the stages the run was limited to (--stages); none: all.
	Selected []string `json:"stages,omitempty"`
	// Overrides are the --set overrides of the command line, in order.
	Overrides []string `json:"overrides,omitempty"`
	// ActivationPass is how the activation pass ran (batch size, memory
	// format, graph) and how that was chosen; absent when every value came
	// from the cache.
	ActivationPass *model.BatchChoice `json:"activation_pass,omitempty"`
	// GradientPass is the same for the class-gradient pass when its batch
	// size was measured (data.batch_size not set).
	GradientPass *model.BatchChoice `json:"gradient_pass,omitempty"`
}

// WriteManifest writes m as the directory's manifest.json.
func (d *Dir) WriteManifest(m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(d.Tmp, ManifestFile), append(b, '\n'))
}
