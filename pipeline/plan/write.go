package plan

import (
	"fmt"
	"io"
	"sort"

	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/stats"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// Print writes the plan validate shows: the model on device, the sets and
// what preprocessing does to each, the work of the TCAV stage and its test,
// and a warning for each verdict the calibrated test cannot reach.
func (p *Plan) Print(w io.Writer, device string) {
	cfg := p.cfg
	t := cfg.TCAV
	r := len(t.Random.Sets)
	in := cfg.Model.Input
	fmt.Fprintf(w, "model    %s on %s, %d classes, input 3x%dx%d\n", cfg.Model.Path, device, p.Classes.N, in.Size[0], in.Size[1])
	prep := fmt.Sprintf("resized straight to %dx%d", in.Size[1], in.Size[0])
	if in.Crop == config.CropCenter {
		prep = fmt.Sprintf("shorter side resized to %d, center %dx%d cut out", in.Resize, in.Size[1], in.Size[0])
	}
	fmt.Fprintf(w, "data     %s: %d sets, up to %d images each; images are %s\n", cfg.Data.Root, len(p.Sets), cfg.Data.MaxImages, prep)
	names := make([]string, 0, len(p.Sets))
	for name := range p.Sets {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-20s %s\n", name, p.effects[name])
	}
	sig := p.Significance()
	th, reachable := p.reachable(r)
	calibrated := sig.Method == stats.Calibrated
	if len(t.Targets) > 0 {
		pairs, _ := tcav.LayerPairs(len(t.Concepts), r, sig)
		fmt.Fprintf(w, "tcav     %d targets × %d concepts × %d layers, %d random sets: %d CAVs (%s), %d gradient passes\n",
			len(t.Targets), len(t.Concepts), len(t.Layers), r, len(t.Layers)*len(pairs),
			t.CAV.Classifier, len(t.Targets)*len(t.Layers))
		fmt.Fprintf(w, "         significance: %s test, alpha %.3g per test", sig.Method, th)
		if calibrated {
			fmt.Fprintf(w, ", each set scored against %d others; smallest p with %d random sets 1/%d",
				tcav.NewDesign(r, sig.Negatives).Negatives(), r, r+1)
		}
		fmt.Fprintln(w)
		if !reachable {
			fmt.Fprintf(w, "         warning: %s (alpha %.3g): no concept can be significant; it needs %d random sets (tcav.random.count, or tcav.random.from a pool folder)\n",
				stats.Resolution(r), th, stats.RandomSetsNeeded(th))
		}
	}
	for i, a := range cfg.Attack {
		if _, ok := p.reachable(a.JudgeRandom); !ok {
			fmt.Fprintf(w, "attack.%d  warning: judged on %d held-out random sets, the calibrated test %s (alpha %.3g): its verdicts cannot be significant; it needs judge_random %d\n",
				i, a.JudgeRandom, stats.Resolution(a.JudgeRandom), th, stats.RandomSetsNeeded(th))
		}
	}
}
