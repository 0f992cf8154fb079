package activations

import (
	"runtime"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/images"
)

// pixelBatch is one batch of a set at the model's input size: a [1,3,H,W]
// tensor per image that decoded, owned by the batch until a scope takes it.
type pixelBatch struct {
	files  []string
	pixels []*torch.Tensor
	tried  int // files attempted, decoded or skipped
	err    error
}

func (b *pixelBatch) free() {
	for _, p := range b.pixels {
		p.Close()
	}
	b.pixels = nil
}

// loader decodes a set batch by batch, one batch ahead of whoever reads
// batches: host memory holds at most the images being decoded at their own
// size, and two batches at the input size.
type loader struct {
	batches chan *pixelBatch
	quit    chan struct{}
	once    sync.Once
}

func (e *Extractor) startLoad(set Set) *loader {
	l := &loader{batches: make(chan *pixelBatch), quit: make(chan struct{})}
	bs := max(e.BatchSize, 1)
	go func() {
		defer close(l.batches)
		for start := 0; start < len(set.Files); start += bs {
			b := e.decodeBatch(set.Files[start:min(start+bs, len(set.Files))])
			select {
			case l.batches <- b:
				if b.err != nil {
					return
				}
			case <-l.quit:
				b.free()
				return
			}
		}
	}()
	return l
}

func (e *Extractor) log() *logrus.Logger {
	if e.Log == nil {
		return logrus.StandardLogger()
	}
	return e.Log
}

// stop ends the loader early and frees the batches it still holds.
func (l *loader) stop() {
	l.once.Do(func() { close(l.quit) })
	for b := range l.batches {
		b.free()
	}
}

// decodeBatch decodes files in parallel, each brought to the input size on
// the device as soon as it is decoded. A file that fails to decode is an
// error naming it (the first in file order), or with SkipBad a warning.
func (e *Extractor) decodeBatch(files []string) *pixelBatch {
	px := make([]*torch.Tensor, len(files))
	errs := make([]error, len(files))
	bad := make([]bool, len(files))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(files)) {
		wg.Go(func() {
			for i := range next {
				im, err := images.DecodeStored(files[i])
				if err != nil {
					errs[i], bad[i] = err, true
					continue
				}
				s := torch.NewScope()
				t := e.Model.Pixels(s, []images.Image{im})
				errs[i] = s.Err()
				px[i] = s.Keep(t)
				s.Close()
			}
		})
	}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()

	b := &pixelBatch{tried: len(files)}
	for i, f := range files {
		switch {
		case errs[i] == nil:
			b.files = append(b.files, f)
			b.pixels = append(b.pixels, px[i])
		case bad[i] && e.SkipBad:
			e.log().WithField("file", f).Warnf("skipping image: %v", errs[i])
		case b.err == nil:
			b.err = errs[i]
		}
	}
	if b.err != nil {
		b.free()
	}
	return b
}
