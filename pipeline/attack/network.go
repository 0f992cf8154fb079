package attack

import (
	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/images"
)

// Network is what the attack needs of a model (a *model.Model is one): its
// preprocessing as differentiable steps, so that gradients reach the
// images' own pixels, and a forward pass that captures a layer.
type Network interface {
	Device() string
	// Pixels is images, each at its own size, as a [n,3,H,W] batch at the
	// input size, in [0,1].
	Pixels(s *torch.Scope, imgs []images.Image) *torch.Tensor
	// Fit resizes (and crops) one image's [1,3,h,w] pixels to the input size.
	Fit(s *torch.Scope, x *torch.Tensor) *torch.Tensor
	// Normalize maps [0,1] pixels to what the model takes.
	Normalize(s *torch.Scope, x *torch.Tensor) *torch.Tensor
	// Forward returns the outputs and the activations at paths.
	Forward(s *torch.Scope, x *torch.Tensor, paths []string, mode torch.Mode, cast torch.Autocast) (*torch.Tensor, []*torch.Tensor)
	// Capture returns the activations at paths only.
	Capture(s *torch.Scope, x *torch.Tensor, paths []string, mode torch.Mode, cast torch.Autocast) []*torch.Tensor
}
