package cav

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cache"
)

// Method is how a CAV is fitted: the classifier and the held-out share its
// accuracy is measured on. Name says which classifier in cavs/index.json;
// key is everything about the method that goes into a cache key.
type Method struct {
	Name         string
	Classifier   Classifier
	TestFraction float64
	key          string
}

// Method resolves the classifier the settings name. Its cache key holds
// only the settings the classifier reads: mean-diff's CAVs do not depend on
// the SGD settings, so changing those does not refit them.
func (st Settings) Method() (Method, error) {
	clf, err := ClassifierFor(st)
	if err != nil {
		return Method{}, err
	}
	keyed := st
	if _, sgd := clf.(SGD); !sgd {
		keyed.Alpha, keyed.Epochs, keyed.LR = 0, 0, 0
	}
	return Method{Name: st.Classifier, Classifier: clf, TestFraction: st.TestFraction, key: fmt.Sprintf("%+v", keyed)}, nil
}

// Pair is one CAV to fit: Concept against Random, at their (common) layer.
type Pair struct{ Concept, Random *activations.Activations }

// Against pairs every concept with every random set, concept by concept.
func Against(concepts, randoms []*activations.Activations) []Pair {
	var out []Pair
	for _, c := range concepts {
		for _, r := range randoms {
			out = append(out, Pair{c, r})
		}
	}
	return out
}

// Baseline pairs random i with random i+1 (the last with the first): the
// random-vs-random CAVs a concept's scores are compared with.
func Baseline(randoms []*activations.Activations) []Pair {
	out := make([]Pair, len(randoms))
	for i, r := range randoms {
		out[i] = Pair{r, randoms[(i+1)%len(randoms)]}
	}
	return out
}

// Fitter fits CAVs on one device, or reads them from the cache. It keeps
// every set it uploads until Close (or Release), hands each distinct CAV it
// returns to Record once (a Writer's Add, for cavs/), and counts cache
// hits. With Force it recomputes what the cache holds, except what this
// Fitter wrote itself.
type Fitter struct {
	Device string
	Cache  cache.Cache
	// ModelKey is the run's model and preprocessing: the key of
	// activations that carry none, and the only CAVs handed to Record.
	ModelKey string
	Seed     int64 // the run's; each CAV's own is derived from it (Seed)
	Force    bool
	Hits     int
	// Record, when set, receives each distinct CAV returned, in the order
	// first asked for.
	Record func(*CAV) error

	fresh    map[string]bool // cache keys written by this Fitter
	returned map[string]bool // cache keys of the CAVs given to Record
	onDevice map[string]*Examples
}

// Fit fits (or reads from the cache) the CAV of concept against random.
func (f *Fitter) Fit(concept, random *activations.Activations, m Method) (*CAV, error) {
	cs, err := f.FitAll([]Pair{{concept, random}}, m)
	if err != nil {
		return nil, err
	}
	return cs[0], nil
}

// Against fits every concept against every random set: out[i][j] is
// concept i against random j.
func (f *Fitter) Against(concepts, randoms []*activations.Activations, m Method) ([][]*CAV, error) {
	cs, err := f.FitAll(Against(concepts, randoms), m)
	if err != nil {
		return nil, err
	}
	out := make([][]*CAV, len(concepts))
	for i := range out {
		out[i] = cs[i*len(randoms) : (i+1)*len(randoms)]
	}
	return out, nil
}

// Baseline fits the random-vs-random CAVs of Baseline(randoms).
func (f *Fitter) Baseline(randoms []*activations.Activations, m Method) ([]*CAV, error) {
	return f.FitAll(Baseline(randoms), m)
}

// FitAll fits (or reads from the cache) every pair's CAV, in order. Cache
// lookups and writes run in order; the fits themselves, each a pure
// function of its two sets and its own seed, run side by side, which
// matters when a calibrated test needs hundreds of them and the BLAS is
// single-threaded.
func (f *Fitter) FitAll(pairs []Pair, m Method) ([]*CAV, error) {
	type miss struct {
		key    string
		seed   uint64
		ce, re *Examples
		c      *CAV
		err    error
		outs   []int
	}
	out := make([]*CAV, len(pairs))
	keys := make([]string, len(pairs))
	other := map[string]bool{} // keys of CAVs seen through other preprocessing: not the run's
	var misses []*miss
	byKey := map[string]*miss{}
	for i, p := range pairs {
		concept, random := p.Concept, p.Random
		seed := Seed(f.Seed, concept.Set, random.Set, concept.Layer)
		through := f.through(concept, random)
		key := cache.Key("cav/v2", through, concept.Layer, concept.Hash, random.Hash, m.key, fmt.Sprint(seed))
		keys[i] = key
		if through != f.ModelKey {
			other[key] = true
		}
		if mm, dup := byKey[key]; dup {
			mm.outs = append(mm.outs, i)
			continue
		}
		if !f.Force || f.fresh[key] {
			_, data, ok, err := f.Cache.Get(key)
			if err != nil {
				return nil, err
			}
			if d := concept.Dim(); ok && len(data) == d+3 {
				f.Hits++
				correct, tested := int(data[d+1]), int(data[d+2])
				out[i] = &CAV{Concept: concept.Set, Random: random.Set, Layer: concept.Layer,
					Vector: data[:d], Bias: float64(data[d]), Correct: correct, Tested: tested,
					Accuracy: float64(correct) / float64(tested)}
				continue
			}
		}
		ce, err := f.examples(concept)
		if err != nil {
			return nil, err
		}
		re, err := f.examples(random)
		if err != nil {
			return nil, err
		}
		mm := &miss{key: key, seed: seed, ce: ce, re: re, outs: []int{i}}
		byKey[key] = mm
		misses = append(misses, mm)
	}
	work := make(chan *miss)
	var wg sync.WaitGroup
	for w := 0; w < min(len(misses), runtime.GOMAXPROCS(0), 4); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for mm := range work {
				mm.c, mm.err = Fit(mm.ce, mm.re, m, mm.seed)
			}
		}()
	}
	for _, mm := range misses {
		work <- mm
	}
	close(work)
	wg.Wait()
	if f.fresh == nil {
		f.fresh, f.returned = map[string]bool{}, map[string]bool{}
	}
	for _, mm := range misses {
		if mm.err != nil {
			return nil, mm.err
		}
		// Counts, not the ratio: they survive float32 storage exactly.
		c := mm.c
		data := append(append([]float32(nil), c.Vector...), float32(c.Bias), float32(c.Correct), float32(c.Tested))
		f.fresh[mm.key] = true
		if err := f.Cache.Put(mm.key, []int64{int64(len(data))}, data); err != nil {
			return nil, err
		}
		for _, i := range mm.outs {
			out[i] = c
		}
	}
	for i, p := range pairs {
		if out[i].Shape == nil {
			out[i].Shape = p.Concept.Shape
			out[i].Classifier = m.Name
			out[i].Seed = Seed(f.Seed, p.Concept.Set, p.Random.Set, p.Concept.Layer)
			out[i].ConceptImages, out[i].RandomImages = p.Concept.Hash, p.Random.Hash
		}
		if !other[keys[i]] && !f.returned[keys[i]] {
			f.returned[keys[i]] = true
			if f.Record != nil {
				if err := f.Record(out[i]); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// through is the model key of a pair's activations: the run's, unless they
// were extracted through other preprocessing (the attack's transfer check),
// whose CAVs must not be read for the run's or the other way round.
func (f *Fitter) through(concept, random *activations.Activations) string {
	k := f.ModelKey
	if concept.Model != "" {
		k = concept.Model
	}
	if random.Model != "" && random.Model != k {
		k += "\x00" + random.Model
	}
	return k
}

// deviceKey names a's device copy: the same images through another
// preprocessing are other values.
func deviceKey(a *activations.Activations) string {
	return a.Model + "\x00" + a.Hash + "\x00" + a.Layer
}

// examples returns a's device copy, uploading it on first use.
func (f *Fitter) examples(a *activations.Activations) (*Examples, error) {
	key := deviceKey(a)
	if x, ok := f.onDevice[key]; ok {
		return x, nil
	}
	x, err := Upload(f.Device, a)
	if err != nil {
		return nil, err
	}
	if f.onDevice == nil {
		f.onDevice = map[string]*Examples{}
	}
	f.onDevice[key] = x
	return x, nil
}

// Release frees a's device copy now, for sets used once (a perturbed set).
func (f *Fitter) Release(a *activations.Activations) {
	key := deviceKey(a)
	if x, ok := f.onDevice[key]; ok {
		x.Close()
		delete(f.onDevice, key)
	}
}

// Close frees every device copy.
func (f *Fitter) Close() {
	for k, x := range f.onDevice {
		x.Close()
		delete(f.onDevice, k)
	}
}
