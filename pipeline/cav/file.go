package cav

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/cavforge/cavforge/pipeline/atomicfile"
)

// Dir is the folder of a run directory that holds its CAVs, IndexFile
// (in it) what each file is.
const (
	Dir       = "cavs"
	IndexFile = "index.json"
)

// Index is cavs/index.json: every CAV a run fitted, with what it was fitted
// from, for numpy.load and for a later run's tcav.cavs_from.
type Index struct {
	// ModelHash is the SHA-256 of the model file the CAVs are directions of.
	ModelHash string `json:"model_hash"`
	// ImageLists are the hashes of the run's named image sets: the entry
	// whose concept_images and random_images they give is the CAV of the
	// named sets (a perturbed set keeps its concept's name).
	ImageLists map[string]string `json:"image_lists"`
	CAVs       []Entry           `json:"cavs"`
}

// Entry is one CAV; File (relative to cavs/) holds its vector as a float32
// .npy array of Shape (the layer's activation shape, C order), unit L2 norm
// over all of it.
type Entry struct {
	Concept       string  `json:"concept"`
	Random        string  `json:"random"`
	Layer         string  `json:"layer"`
	Shape         []int64 `json:"shape"`
	File          string  `json:"file"`
	Bias          float64 `json:"bias"`
	Accuracy      float64 `json:"accuracy"`
	Correct       int     `json:"correct"`
	Tested        int     `json:"tested"`
	Classifier    string  `json:"classifier"`
	Seed          uint64  `json:"seed"`
	ConceptImages string  `json:"concept_images"`
	RandomImages  string  `json:"random_images"`
}

// Writer writes CAVs into runDir/cavs as they come, one .npy each, and
// cavs/index.json on Close; it keeps no vectors.
type Writer struct {
	dir string
	idx Index
}

// NewWriter makes runDir/cavs for the CAVs of the model whose file hash is
// modelHash.
func NewWriter(runDir, modelHash string) (*Writer, error) {
	dir := filepath.Join(runDir, Dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &Writer{dir: dir, idx: Index{ModelHash: modelHash, CAVs: []Entry{}}}, nil
}

// Add writes c's vector and lists it.
func (w *Writer) Add(c *CAV) error {
	name := fmt.Sprintf("%04d-%s-vs-%s-%s-%s.npy", len(w.idx.CAVs), fileName(c.Concept), fileName(c.Random), fileName(c.Layer), fileName(c.Classifier))
	if err := WriteNPY(filepath.Join(w.dir, name), c.Shape, c.Vector); err != nil {
		return err
	}
	w.idx.CAVs = append(w.idx.CAVs, Entry{Concept: c.Concept, Random: c.Random, Layer: c.Layer, Shape: c.Shape, File: name,
		Bias: c.Bias, Accuracy: c.Accuracy, Correct: c.Correct, Tested: c.Tested, Classifier: c.Classifier, Seed: c.Seed,
		ConceptImages: c.ConceptImages, RandomImages: c.RandomImages})
	return nil
}

// Close writes cavs/index.json; lists are the hashes of the run's named
// image sets.
func (w *Writer) Close(lists map[string]string) error {
	w.idx.ImageLists = lists
	b, err := json.MarshalIndent(w.idx, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(w.dir, IndexFile), append(b, '\n'))
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

func fileName(s string) string { return unsafeChars.ReplaceAllString(s, "_") }

// Store is a run's saved CAVs, read back for scoring.
type Store struct {
	Dir   string // the cavs folder
	Index Index
}

// Open reads runDir/cavs/index.json and checks that its CAVs are of the
// model whose file hash is modelHash.
func Open(runDir, modelHash string) (*Store, error) {
	dir := filepath.Join(runDir, Dir)
	path := filepath.Join(dir, IndexFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := &Store{Dir: dir}
	if err := json.Unmarshal(b, &s.Index); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if s.Index.ModelHash != modelHash {
		return nil, fmt.Errorf("%s: model_hash %.12s… is not this run's model (%.12s…): its CAVs are directions of another model",
			path, s.Index.ModelHash, modelHash)
	}
	return s, nil
}

// Find reads the CAV of the named sets concept against random at layer,
// fitted with classifier, and checks it against the layer's shape.
func (s *Store) Find(concept, random, layer, classifier string, shape []int64) (*CAV, error) {
	idx := filepath.Join(s.Dir, IndexFile)
	lists := s.Index.ImageLists
	for _, e := range s.Index.CAVs {
		if e.Concept != concept || e.Random != random || e.Layer != layer || e.Classifier != classifier ||
			e.ConceptImages != lists[concept] || e.RandomImages != lists[random] {
			continue
		}
		path := filepath.Join(s.Dir, e.File)
		if !slices.Equal(e.Shape, shape) {
			return nil, fmt.Errorf("%s: CAV %s vs %s at %s has shape %v, this model's %s is %v", path, concept, random, layer, e.Shape, layer, shape)
		}
		fshape, v, err := ReadNPY(path)
		if err != nil {
			return nil, err
		}
		if !slices.Equal(fshape, shape) {
			return nil, fmt.Errorf("%s: shape %v, %s says %v", path, fshape, idx, e.Shape)
		}
		return &CAV{Concept: concept, Random: random, Layer: layer, Vector: v, Bias: e.Bias, Correct: e.Correct, Tested: e.Tested,
			Accuracy: e.Accuracy, Shape: e.Shape, Classifier: e.Classifier, Seed: e.Seed,
			ConceptImages: e.ConceptImages, RandomImages: e.RandomImages}, nil
	}
	return nil, fmt.Errorf("%s: no %s CAV of %s against %s at %s", idx, classifier, concept, random, layer)
}

const npyMagic = "\x93NUMPY"

// WriteNPY writes data as a little-endian float32 NumPy array of shape
// (format version 1.0, C order).
func WriteNPY(path string, shape []int64, data []float32) error {
	n := int64(1)
	dims := make([]string, len(shape))
	for i, d := range shape {
		n *= d
		dims[i] = strconv.FormatInt(d, 10)
	}
	if n != int64(len(data)) {
		return fmt.Errorf("%s: shape %v holds %d values, got %d", path, shape, n, len(data))
	}
	tuple := strings.Join(dims, ", ")
	if len(dims) == 1 {
		tuple += ","
	}
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", tuple)
	// The header ends with a newline and pads the data to 64 bytes.
	pad := 64 - (len(npyMagic)+4+len(header)+1)%64
	header += strings.Repeat(" ", pad%64) + "\n"
	var b bytes.Buffer
	b.WriteString(npyMagic)
	b.Write([]byte{1, 0})
	binary.Write(&b, binary.LittleEndian, uint16(len(header)))
	b.WriteString(header)
	for _, v := range data {
		binary.Write(&b, binary.LittleEndian, math.Float32bits(v))
	}
	return atomicfile.Write(path, b.Bytes())
}

var npyHeader = regexp.MustCompile(`^\{'descr': '<f4', 'fortran_order': False, 'shape': \(([0-9, ]*)\), \} *\n$`)

// ReadNPY reads a float32 array that WriteNPY wrote (or numpy.save, for a
// little-endian float32 C-order array).
func ReadNPY(path string) (shape []int64, data []float32, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	bad := func(why string) error { return fmt.Errorf("%s: not a float32 .npy array (%s)", path, why) }
	if len(b) < 10 || string(b[:6]) != npyMagic || b[6] != 1 {
		return nil, nil, bad("want format version 1.0")
	}
	hlen := int(binary.LittleEndian.Uint16(b[8:10]))
	if len(b) < 10+hlen {
		return nil, nil, bad("short header")
	}
	m := npyHeader.FindStringSubmatch(string(b[10 : 10+hlen]))
	if m == nil {
		return nil, nil, bad("want descr '<f4', C order")
	}
	n := int64(1)
	for _, f := range strings.Split(m[1], ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		d, err := strconv.ParseInt(f, 10, 64)
		if err != nil || d < 0 {
			return nil, nil, bad("bad shape")
		}
		shape = append(shape, d)
		n *= d
	}
	body := b[10+hlen:]
	if int64(len(body)) != 4*n {
		return nil, nil, bad(fmt.Sprintf("shape %v wants %d bytes of data, the file has %d", shape, 4*n, len(body)))
	}
	data = make([]float32, n)
	for i := range data {
		data[i] = math.Float32frombits(binary.LittleEndian.Uint32(body[4*i:]))
	}
	return shape, data, nil
}
