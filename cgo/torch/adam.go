package torch

import (
	"runtime"

	gotorch "github.com/wangkuiyi/gotorch"
)

// Adam is libtorch's Adam optimizer over leaf tensors. Its moment buffers
// are device memory: Close frees them, not Go's garbage collector.
type Adam struct {
	opt   gotorch.Optimizer
	views []gotorch.Tensor // keeps the parameters' handles alive for libtorch
}

// NewAdam makes an optimizer that moves params (leaves that require grad)
// against the gradients left in their .grad.
func NewAdam(params []*Tensor, lr, beta1, beta2, weightDecay float64) *Adam {
	a := &Adam{opt: gotorch.Adam(lr, beta1, beta2, weightDecay)}
	runtime.SetFinalizer(a.opt.Opt, nil)
	for _, p := range params {
		a.views = append(a.views, p.Gotorch())
	}
	a.opt.AddParameters(a.views)
	return a
}

// Step applies one update.
func (a *Adam) Step() { a.opt.Step() }

// Close frees the optimizer's state.
func (a *Adam) Close() {
	a.opt.Close()
	runtime.KeepAlive(a.views)
}
