// cavforge's C ABI over libtorch: what gotorch lacks. Tensors are at::Tensor*
// handles, the same ones gotorch uses, so tensors flow between the two.
//
// Every call that can fail returns NULL on success or an error message that
// the caller releases with cf_free. C++ exceptions never cross this boundary.
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void *cf_tensor; /* at::Tensor* */
typedef struct cf_module cf_module;

void cf_free(void *p);

/* Library and devices. */
const char *cf_torch_version(void);
int cf_cuda_available(void);
int cf_cuda_device_count(void);
char *cf_cuda_device_name(int index, char **name);
char *cf_cuda_synchronize(int index);
/* Bytes held by the CUDA caching allocator on one device. */
char *cf_cuda_memory(int index, int64_t *allocated, int64_t *reserved,
                     int64_t *peak);
void cf_set_num_threads(int n);
int cf_num_threads(void);

/* Tensors. */
void cf_tensor_free(cf_tensor t);
char *cf_tensor_from_float32(const float *data, const int64_t *shape, int ndim,
                             const char *device, cf_tensor *out);
/* Copies n float32 values (the tensor converted to float32, contiguous, on
 * the CPU) into dst; n must equal the tensor's number of elements. */
char *cf_tensor_to_float32(cf_tensor t, float *dst, int64_t n);
char *cf_tensor_shape(cf_tensor t, int64_t *shape, int cap, int *ndim);
char *cf_tensor_device(cf_tensor t, char **device);
char *cf_tensor_requires_grad(cf_tensor t, int *flag);
char *cf_tensor_set_requires_grad(cf_tensor t, int flag);

/* Named tensor operations (see the table in shim.cc): inputs, float and int
 * arguments in, one tensor out. */
char *cf_op(const char *name, const cf_tensor *in, int nin, const double *f,
            int nf, const int64_t *i, int ni, cf_tensor *out);

/* Gradients of sum(outputs[k] * grad_outputs[k]) with respect to inputs.
 * grad_outputs may be NULL (ones). Inputs that the outputs do not depend on
 * get zeros. */
char *cf_grad(const cf_tensor *outputs, const cf_tensor *grad_outputs,
              int nout, const cf_tensor *inputs, int nin, int retain_graph,
              int create_graph, cf_tensor *grads);

/* TorchScript modules. */
enum cf_mode { CF_GRAD = 0, CF_NO_GRAD = 1, CF_INFERENCE = 2 };

char *cf_module_load(const char *path, const char *device, cf_module **out);
void cf_module_free(cf_module *m);
/* Newline-separated dotted paths of every submodule, in definition order. */
char *cf_module_paths(cf_module *m, char **paths);
/* Runs forward on input. Each of the npaths submodules has its output
 * captured into captured[k]. In CF_GRAD mode the captured tensors stay in the
 * autograd graph, also for frozen models. autocast: 0 off, 1 bf16, 2 fp16. */
char *cf_module_forward(cf_module *m, cf_tensor input, const char **paths,
                        int npaths, int mode, int autocast, cf_tensor *output,
                        cf_tensor *captured);
/* Like cf_module_forward without the model's output: the pass runs only up
 * to the last of the paths. It runs a graph of its own per layer set (see
 * cf_module_plan). CF_INFERENCE / CF_NO_GRAD: no autograd; CF_GRAD: the
 * captured tensors are differentiable with respect to the input (which is
 * copied to a gradient-requiring leaf when it does not require grad). */
char *cf_module_capture(cf_module *m, cf_tensor input, const char **paths,
                        int npaths, int mode, int autocast,
                        cf_tensor *captured);
/* The whole forward in grad mode, with the output of the submodule at path
 * made an autograd leaf where it is computed: gradients of the output with
 * respect to *captured work, and nothing before the layer records autograd
 * (model parameters never require grad). */
char *cf_module_forward_leaf(cf_module *m, cf_tensor input, const char *path,
                             int autocast, cf_tensor *output,
                             cf_tensor *captured);
/* What a pass of kind (0 activations, 1 activations with gradients to the
 * input, 2 forward with a leaf at the layer) runs for paths: a pruned,
 * frozen graph, or the full pass and why. Builds it when needed. */
char *cf_module_plan(cf_module *m, int kind, const char **paths, int npaths,
                     char **desc);
/* Feed 4-d inputs to activation graphs in channels_last memory format. */
void cf_module_set_channels_last(cf_module *m, int on);
/* Captures every submodule whose forward returns a tensor, for one input of
 * the given shape, in no-grad mode. Returns lines "path\td0,d1,..."; the
 * model output's shape comes first with path "". */
char *cf_module_layer_shapes(cf_module *m, const int64_t *shape, int ndim,
                             char **lines);

#ifdef __cplusplus
}
#endif
