package run

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cache"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/stats"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// tcav runs the TCAV experiment of the config: activations of every concept
// and random set, class gradients once per (target, layer), CAVs of every
// concept against every random set plus the random-vs-random baseline, then
// scores and significance.
func (e *experiment) tcav() error {
	cfg := e.cfg.TCAV
	if len(cfg.Targets) == 0 {
		return nil
	}
	acts := map[string]map[string]*activations.Activations{} // set → layer → values
	err := e.timed("extract activations", func() error {
		names := append(append([]string(nil), cfg.Concepts...), cfg.Random.Sets...)
		for i, name := range names {
			if i+1 < len(names) {
				e.extract.Prefetch(e.sets[names[i+1]], cfg.Layers)
			}
			a, err := e.extract.Extract(e.sets[name], cfg.Layers)
			if err != nil {
				return err
			}
			acts[name] = a
		}
		return nil
	})
	if err != nil {
		return err
	}
	settings := e.cavSettings()
	sig := e.significance(len(cfg.Concepts))
	e.warnResolution(sig, len(cfg.Random.Sets), len(cfg.Concepts), "tcav")
	layers := map[string]*tcav.Layer{}
	err = e.timed("fit CAVs", func() error {
		for _, l := range cfg.Layers {
			concepts := make([]*activations.Activations, len(cfg.Concepts))
			for i, c := range cfg.Concepts {
				concepts[i] = acts[c][l]
			}
			randoms := make([]*activations.Activations, len(cfg.Random.Sets))
			for i, r := range cfg.Random.Sets {
				randoms[i] = acts[r][l]
			}
			tl, err := e.layerCAVs(concepts, randoms, settings, sig)
			if err != nil {
				return err
			}
			layers[l] = tl
		}
		return nil
	})
	if err != nil {
		return err
	}
	return e.timed("score", func() error {
		for _, target := range cfg.Targets {
			class, err := e.classIndex(target)
			if err != nil {
				return err
			}
			for _, l := range cfg.Layers {
				g, err := e.extract.ClassGradients(e.sets[e.classSet(target)], l, class)
				if err != nil {
					return err
				}
				tl := *layers[l]
				tl.Target, tl.Grads = target, g
				entries, err := tcav.Entries(e.device, tl, sig)
				if err != nil {
					return err
				}
				e.results.TCAV = append(e.results.TCAV, entries...)
			}
		}
		return nil
	})
}

// significance is the configured test, with Bonferroni over tests concepts.
func (e *experiment) significance(tests int) tcav.Significance {
	s := e.cfg.TCAV.Significance
	return tcav.Significance{Method: stats.Method(s.Test), Alpha: s.Alpha, Bonferroni: s.Bonferroni,
		Tests: max(1, tests), Negatives: s.Negatives}
}

// warnResolution says up front when the calibrated test cannot reach its
// threshold with r random sets, and how many it needs.
func (e *experiment) warnResolution(sig tcav.Significance, r, concepts int, what string) {
	if sig.Method != stats.Calibrated {
		return
	}
	th := sig.Threshold(concepts)
	if !stats.Reachable(r, th) {
		e.log.Warnf("%s: the calibrated test %s (threshold %.3g): no concept can be called significant; it needs %d random sets (tcav.random, or tcav.random.from a pool folder)",
			what, stats.Resolution(r), th, stats.RandomSetsNeeded(th))
	}
}

// layerCAVs fits what scoring concepts against randoms at one layer needs:
// every concept against every random set, the random-vs-random baseline
// (random i against random i+1), and for the calibrated test the pairs of
// its design.
func (e *experiment) layerCAVs(concepts, randoms []*activations.Activations, st cav.Settings, sig tcav.Significance) (*tcav.Layer, error) {
	tl := &tcav.Layer{CAVs: map[string][]*cav.CAV{}}
	if len(randoms) > 0 {
		tl.Layer = randoms[0].Layer
	}
	for _, r := range randoms {
		tl.Randoms = append(tl.Randoms, r.Set)
	}
	var jobs []cavJob
	tl.Baseline = make([]*cav.CAV, len(randoms))
	for i, r := range randoms {
		jobs = append(jobs, cavJob{r, randoms[(i+1)%len(randoms)], &tl.Baseline[i]})
	}
	for _, concept := range concepts {
		tl.Concepts = append(tl.Concepts, concept.Set)
		cs := make([]*cav.CAV, len(randoms))
		for i, r := range randoms {
			jobs = append(jobs, cavJob{concept, r, &cs[i]})
		}
		tl.CAVs[concept.Set] = cs
	}
	var pairs [][2]int
	var null []*cav.CAV
	if sig.Method == stats.Calibrated {
		baseline := map[[2]int]bool{}
		for i := range randoms {
			baseline[[2]int{i, (i + 1) % len(randoms)}] = true
		}
		for _, p := range tcav.NewDesign(len(randoms), sig.Negatives).Pairs() {
			if !baseline[p] {
				pairs = append(pairs, p)
			}
		}
		null = make([]*cav.CAV, len(pairs))
		for i, p := range pairs {
			jobs = append(jobs, cavJob{randoms[p[0]], randoms[p[1]], &null[i]})
		}
	}
	if err := e.fitCAVs(jobs, st); err != nil {
		return nil, err
	}
	if sig.Method == stats.Calibrated {
		tl.Null = map[[2]int]*cav.CAV{}
		for i, c := range tl.Baseline {
			tl.Null[[2]int{i, (i + 1) % len(randoms)}] = c
		}
		for i, p := range pairs {
			tl.Null[p] = null[i]
		}
	}
	return tl, nil
}

// drawRandomSets fills the sets of tcav.random.from: the pool's images,
// shuffled by a seed from (seed, pool), cut into Count disjoint sets of
// data.max_images.
func (e *experiment) drawRandomSets() error {
	cfg := e.cfg
	r := cfg.TCAV.Random
	if r.From == "" {
		return nil
	}
	files, err := images.ListSet(cfg.Data.Root, r.From, cfg.Data.SkipBadImages, e.log)
	if err != nil {
		return fmt.Errorf("tcav.random.from: %w", err)
	}
	per := cfg.Data.MaxImages
	if need := r.Count * per; len(files) < need {
		return fmt.Errorf("tcav.random.from: data.root/%s has %d images, too few for %d disjoint sets of %d (tcav.random.count × data.max_images = %d)",
			r.From, len(files), r.Count, per, need)
	}
	h := sha256.Sum256([]byte(fmt.Sprintf("%d\x00random.from\x00%s", cfg.Seed, r.From)))
	rng := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(h[0:8]), binary.LittleEndian.Uint64(h[8:16])))
	files = slices.Clone(files)
	rng.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
	for i, name := range r.Sets {
		set := slices.Clone(files[i*per : (i+1)*per])
		slices.Sort(set)
		if _, err := e.addSet(name, set); err != nil {
			return err
		}
	}
	e.log.Infof("tcav.random.from: %d disjoint random sets of %d images drawn from data.root/%s (%d of its %d images)",
		r.Count, per, r.From, r.Count*per, len(files))
	return nil
}

// fitCAV fits (or reads from the cache) the CAV of concept against random.
func (e *experiment) fitCAV(concept, random *activations.Activations, st cav.Settings) (*cav.CAV, error) {
	var c *cav.CAV
	err := e.fitCAVs([]cavJob{{concept, random, &c}}, st)
	return c, err
}

// cavJob is one CAV to fit (or read from the cache) into *out.
type cavJob struct {
	concept, random *activations.Activations
	out             **cav.CAV
}

// fitCAVs fits (or reads from the cache) every job's CAV. Cache lookups and
// writes run in order; the fits themselves, each a pure function of its two
// sets and its own seed, run side by side, which matters when a calibrated
// test needs hundreds of them and the BLAS is single-threaded.
func (e *experiment) fitCAVs(jobs []cavJob, st cav.Settings) error {
	type miss struct {
		key    string
		seed   uint64
		ce, re *cav.Examples
		c      *cav.CAV
		err    error
		outs   []**cav.CAV
	}
	var misses []*miss
	byKey := map[string]*miss{}
	for _, j := range jobs {
		concept, random := j.concept, j.random
		seed := cav.Seed(e.cfg.Seed, concept.Set, random.Set, concept.Layer)
		key := cache.Key("cav/v2", e.extract.ModelKey, concept.Layer, concept.Hash, random.Hash,
			fmt.Sprintf("%+v", st), fmt.Sprint(seed))
		if m, dup := byKey[key]; dup {
			m.outs = append(m.outs, j.out)
			continue
		}
		if !e.opts.Force || e.freshCAVs[key] {
			_, data, ok, err := e.cache.Get(key)
			if err != nil {
				return err
			}
			if d := concept.Dim(); ok && len(data) == d+3 {
				e.manifest.CacheHits++
				correct, tested := int(data[d+1]), int(data[d+2])
				*j.out = &cav.CAV{Concept: concept.Set, Random: random.Set, Layer: concept.Layer,
					Vector: data[:d], Bias: float64(data[d]), Correct: correct, Tested: tested,
					Accuracy: float64(correct) / float64(tested)}
				continue
			}
		}
		ce, err := e.examples(concept)
		if err != nil {
			return err
		}
		re, err := e.examples(random)
		if err != nil {
			return err
		}
		m := &miss{key: key, seed: seed, ce: ce, re: re, outs: []**cav.CAV{j.out}}
		byKey[key] = m
		misses = append(misses, m)
	}
	work := make(chan *miss)
	var wg sync.WaitGroup
	for w := 0; w < min(len(misses), runtime.GOMAXPROCS(0), 4); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range work {
				m.c, m.err = cav.Fit(m.ce, m.re, st, m.seed)
			}
		}()
	}
	for _, m := range misses {
		work <- m
	}
	close(work)
	wg.Wait()
	if e.freshCAVs == nil {
		e.freshCAVs = map[string]bool{}
	}
	for _, m := range misses {
		if m.err != nil {
			return m.err
		}
		// Counts, not the ratio: they survive float32 storage exactly.
		c := m.c
		data := append(append([]float32(nil), c.Vector...), float32(c.Bias), float32(c.Correct), float32(c.Tested))
		e.freshCAVs[m.key] = true
		if err := e.cache.Put(m.key, []int64{int64(len(data))}, data); err != nil {
			return err
		}
		for _, out := range m.outs {
			*out = c
		}
	}
	return nil
}

// release frees a's device copy now, for sets used once (a perturbed set).
func (e *experiment) release(a *activations.Activations) {
	key := a.Hash + "\x00" + a.Layer
	if x, ok := e.onDevice[key]; ok {
		x.Close()
		delete(e.onDevice, key)
	}
}

// examples returns a's device copy, uploading it on first use; the run frees
// them all at its end.
func (e *experiment) examples(a *activations.Activations) (*cav.Examples, error) {
	key := a.Hash + "\x00" + a.Layer
	if x, ok := e.onDevice[key]; ok {
		return x, nil
	}
	x, err := cav.Upload(e.device, a)
	if err != nil {
		return nil, err
	}
	if e.onDevice == nil {
		e.onDevice = map[string]*cav.Examples{}
	}
	e.onDevice[key] = x
	return x, nil
}
