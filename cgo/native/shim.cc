// One translation unit on purpose: each file that includes torch headers costs
// half a minute to compile.
#include "shim.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <torch/version.h>

#ifdef CF_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/cuda.h>
#endif

#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

char *dup(const std::string &s) {
  char *p = static_cast<char *>(std::malloc(s.size() + 1));
  std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

// The first line of an exception message: libtorch appends C++ backtraces
// that mean nothing to a user.
char *error_of(const std::exception &e) {
  std::string msg;
  if (auto *c = dynamic_cast<const c10::Error *>(&e)) {
    msg = c->what_without_backtrace();
  } else {
    msg = e.what();
  }
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  // TorchScript interpreter errors carry a script traceback; the cause is
  // the last "XxxError: ..." line.
  if (msg.rfind("The following operation failed in the TorchScript interpreter", 0) == 0) {
    auto nl = msg.rfind('\n');
    if (nl != std::string::npos) msg = msg.substr(nl + 1);
  }
  return dup(msg.empty() ? std::string("libtorch error") : msg);
}

#define CF_TRY try {
#define CF_CATCH                             \
  }                                          \
  catch (const std::exception &e) {          \
    return error_of(e);                      \
  }                                          \
  catch (...) {                              \
    return dup("unknown C++ exception");     \
  }                                          \
  return nullptr;

at::Tensor &T(cf_tensor t) {
  if (t == nullptr) throw std::invalid_argument("nil tensor");
  return *static_cast<at::Tensor *>(t);
}

cf_tensor wrap(at::Tensor t) { return new at::Tensor(std::move(t)); }

c10::Device parse_device(const std::string &s) {
  if (s.empty() || s == "auto") {
    return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0)
                                       : c10::Device(c10::kCPU);
  }
  c10::Device d(s);
  if (d.is_cuda()) {
    if (!torch::cuda::is_available()) {
      throw std::runtime_error("device " + s + " requested but CUDA is not available");
    }
    if (d.has_index() && d.index() >= static_cast<int>(torch::cuda::device_count())) {
      throw std::runtime_error("device " + s + " does not exist (" +
                               std::to_string(torch::cuda::device_count()) + " CUDA devices)");
    }
  }
  return d;
}

std::vector<int64_t> ints(const int64_t *p, int n) { return std::vector<int64_t>(p, p + n); }

// Sets grad mode / inference mode / autocast for the duration of one call.
// These are thread-local in libtorch, so they are scoped to a C call rather
// than left to Go code that may move between threads.
struct ModeGuard {
  c10::optional<c10::InferenceMode> inference;
  c10::optional<torch::AutoGradMode> grad;
  bool autocast = false;
  ModeGuard(int mode, int cast, const c10::Device &dev) {
    if (mode == CF_INFERENCE) {
      inference.emplace(true);
    } else {
      grad.emplace(mode == CF_GRAD);
    }
    if (cast != 0 && dev.is_cuda()) {
      autocast = true;
      set_autocast(true, cast == 1 ? at::kBFloat16 : at::kHalf);
    }
  }
  ~ModeGuard() {
    if (autocast) {
      at::autocast::clear_cache();
      set_autocast(false, at::kHalf);
    }
  }
  // The device-generic autocast calls replaced the CUDA-only ones in 2.4.
  static void set_autocast(bool on, at::ScalarType dtype) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, on);
    if (on) at::autocast::set_autocast_dtype(at::kCUDA, dtype);
#else
    at::autocast::set_enabled(on);
    if (on) at::autocast::set_autocast_gpu_dtype(dtype);
#endif
  }
};

// ---------------------------------------------------------------------------
// Named operations. Each takes the tensors, floats and ints given to cf_op.

struct Args {
  const cf_tensor *in;
  int nin;
  const double *f;
  int nf;
  const int64_t *i;
  int ni;
  at::Tensor &t(int k) const {
    if (k >= nin) throw std::invalid_argument("missing tensor argument " + std::to_string(k));
    return T(in[k]);
  }
  double fl(int k) const {
    if (k >= nf) throw std::invalid_argument("missing float argument " + std::to_string(k));
    return f[k];
  }
  int64_t in_(int k) const {
    if (k >= ni) throw std::invalid_argument("missing int argument " + std::to_string(k));
    return i[k];
  }
  std::vector<int64_t> all_ints() const { return ints(i, ni); }
  std::vector<at::Tensor> all_tensors() const {
    std::vector<at::Tensor> v;
    for (int k = 0; k < nin; k++) v.push_back(T(in[k]));
    return v;
  }
};

using Op = std::function<at::Tensor(const Args &)>;

const std::unordered_map<std::string, Op> &ops() {
  static const std::unordered_map<std::string, Op> table = {
      // elementwise and arithmetic
      {"add", [](const Args &a) { return a.t(0) + a.t(1); }},
      {"sub", [](const Args &a) { return a.t(0) - a.t(1); }},
      {"mul", [](const Args &a) { return a.t(0) * a.t(1); }},
      {"div", [](const Args &a) { return a.t(0) / a.t(1); }},
      {"add_scalar", [](const Args &a) { return a.t(0) + a.fl(0); }},
      {"mul_scalar", [](const Args &a) { return a.t(0) * a.fl(0); }},
      {"pow_scalar", [](const Args &a) { return a.t(0).pow(a.fl(0)); }},
      {"neg", [](const Args &a) { return -a.t(0); }},
      {"abs", [](const Args &a) { return a.t(0).abs(); }},
      {"sign", [](const Args &a) { return a.t(0).sign(); }},
      {"sqrt", [](const Args &a) { return a.t(0).sqrt(); }},
      {"exp", [](const Args &a) { return a.t(0).exp(); }},
      {"log", [](const Args &a) { return a.t(0).log(); }},
      {"sigmoid", [](const Args &a) { return a.t(0).sigmoid(); }},
      {"logsigmoid", [](const Args &a) { return torch::log_sigmoid(a.t(0)); }},
      {"relu", [](const Args &a) { return a.t(0).relu(); }},
      {"clamp", [](const Args &a) { return a.t(0).clamp(a.fl(0), a.fl(1)); }},
      {"clamp_tensor", [](const Args &a) { return torch::max(torch::min(a.t(0), a.t(2)), a.t(1)); }},
      {"maximum", [](const Args &a) { return torch::maximum(a.t(0), a.t(1)); }},
      {"minimum", [](const Args &a) { return torch::minimum(a.t(0), a.t(1)); }},
      {"gt_scalar", [](const Args &a) { return a.t(0).gt(a.fl(0)).to(a.t(0).scalar_type()); }},
      {"round", [](const Args &a) { return a.t(0).round(); }},
      {"trunc", [](const Args &a) { return a.t(0).trunc(); }},
      {"isfinite_all", [](const Args &a) { return a.t(0).isfinite().all(); }},
      // reductions; ints are the dims, float 0/1 is keepdim
      {"sum", [](const Args &a) { return a.t(0).sum(); }},
      {"mean", [](const Args &a) { return a.t(0).mean(); }},
      {"sum_dims", [](const Args &a) { return a.t(0).sum(a.all_ints(), a.nf > 0 && a.f[0] != 0); }},
      {"mean_dims", [](const Args &a) { return a.t(0).mean(a.all_ints(), a.nf > 0 && a.f[0] != 0); }},
      {"norm_dims", [](const Args &a) { return at::norm(a.t(0), 2, a.all_ints(), a.nf > 0 && a.f[0] != 0); }},
      {"amax_dims", [](const Args &a) { return a.t(0).amax(a.all_ints(), a.nf > 0 && a.f[0] != 0); }},
      {"argmax", [](const Args &a) { return a.t(0).argmax(a.in_(0)); }},
      {"softmax", [](const Args &a) { return a.t(0).softmax(a.in_(0)); }},
      {"log_softmax", [](const Args &a) { return a.t(0).log_softmax(a.in_(0)); }},
      // linear algebra
      {"mm", [](const Args &a) { return a.t(0).mm(a.t(1)); }},
      {"matmul", [](const Args &a) { return a.t(0).matmul(a.t(1)); }},
      // shapes and indexing
      {"reshape", [](const Args &a) { return a.t(0).reshape(a.all_ints()); }},
      {"permute", [](const Args &a) { return a.t(0).permute(a.all_ints()); }},
      {"transpose", [](const Args &a) { return a.t(0).transpose(a.in_(0), a.in_(1)); }},
      {"narrow", [](const Args &a) { return a.t(0).narrow(a.in_(0), a.in_(1), a.in_(2)); }},
      {"select", [](const Args &a) { return a.t(0).select(a.in_(0), a.in_(1)); }},
      {"index_select", [](const Args &a) { return a.t(0).index_select(a.in_(0), a.t(1)); }},
      {"cat", [](const Args &a) { return torch::cat(a.all_tensors(), a.in_(0)); }},
      {"stack", [](const Args &a) { return torch::stack(a.all_tensors(), a.in_(0)); }},
      {"unsqueeze", [](const Args &a) { return a.t(0).unsqueeze(a.in_(0)); }},
      {"expand", [](const Args &a) { return a.t(0).expand(a.all_ints()); }},
      {"contiguous", [](const Args &a) { return a.t(0).contiguous(); }},
      {"pad_constant", [](const Args &a) { return at::constant_pad_nd(a.t(0), a.all_ints(), a.nf > 0 ? a.f[0] : 0.0); }},
      {"roll", [](const Args &a) { return a.t(0).roll({a.in_(0), a.in_(1)}, {a.in_(2), a.in_(3)}); }},
      // autograd and copies
      {"detach", [](const Args &a) { return a.t(0).detach(); }},
      {"clone", [](const Args &a) { return a.t(0).clone(); }},
      {"zeros_like", [](const Args &a) { return torch::zeros_like(a.t(0)); }},
      {"to_float", [](const Args &a) { return a.t(0).to(at::kFloat); }},
      {"to_long", [](const Args &a) { return a.t(0).to(at::kLong); }},
      {"to_device_of", [](const Args &a) { return a.t(0).to(a.t(1).device()); }},
      // random numbers from an explicit seed, never a shared global stream:
      // ints are the shape, the last float the seed.
      {"randn_like_seeded",
       [](const Args &a) {
         auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(a.fl(0)));
         auto r = at::randn(a.t(0).sizes(), gen, at::TensorOptions().dtype(at::kFloat));
         return r.to(a.t(0).device());
       }},
      {"rand_like_seeded",
       [](const Args &a) {
         auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(a.fl(0)));
         auto r = at::rand(a.t(0).sizes(), gen, at::TensorOptions().dtype(at::kFloat));
         return r.to(a.t(0).device());
       }},
      // images and signals
      {"rfft2", [](const Args &a) { return torch::fft::rfft2(a.t(0), c10::nullopt, {-2, -1}, "ortho"); }},
      {"irfft2",
       [](const Args &a) {
         return torch::fft::irfft2(a.t(0), std::vector<int64_t>{a.in_(0), a.in_(1)}, {-2, -1}, "ortho");
       }},
      {"complex", [](const Args &a) { return torch::complex(a.t(0), a.t(1)); }},
      {"interpolate_bilinear",
       [](const Args &a) {
         // ints: out h, w, align_corners, antialias
         bool align = a.ni > 2 && a.i[2] != 0;
         bool aa = a.ni > 3 && a.i[3] != 0;
         if (aa) return at::_upsample_bilinear2d_aa(a.t(0), {a.in_(0), a.in_(1)}, align);
         return at::upsample_bilinear2d(a.t(0), {a.in_(0), a.in_(1)}, align);
       }},
      {"affine_sample",
       [](const Args &a) {
         // t0 images [N,C,H,W], t1 theta [N,2,3]; bilinear, border padding.
         auto &x = a.t(0);
         auto grid = at::affine_grid_generator(a.t(1), x.sizes(), false);
         return at::grid_sampler(x, grid, 0, 1, false);
       }},
      {"view_as_real", [](const Args &a) { return torch::view_as_real(a.t(0)); }},
      // optimizers: t0 is a leaf parameter, t1 the value or gradient to give it
      {"set_grad",
       [](const Args &a) {
         a.t(0).mutable_grad() = a.t(1).detach();
         return a.t(0).grad();
       }},
      {"copy_into",
       [](const Args &a) {
         torch::NoGradGuard no_grad;
         a.t(0).copy_(a.t(1));
         return a.t(0);
       }},
  };
  return table;
}

}  // namespace

// ---------------------------------------------------------------------------

extern "C" {

void cf_free(void *p) { std::free(p); }

const char *cf_torch_version(void) { return TORCH_VERSION; }

int cf_cuda_available(void) { return torch::cuda::is_available() ? 1 : 0; }

int cf_cuda_device_count(void) { return static_cast<int>(torch::cuda::device_count()); }

char *cf_cuda_device_name(int index, char **name) {
  CF_TRY
#ifdef CF_WITH_CUDA
  auto *p = at::cuda::getDeviceProperties(index);
  *name = dup(p->name);
#else
  (void)index;
  throw std::runtime_error("this libtorch was built without CUDA");
#endif
  CF_CATCH
}

char *cf_cuda_synchronize(int index) {
  CF_TRY
#ifdef CF_WITH_CUDA
  torch::cuda::synchronize(index);
#else
  (void)index;
#endif
  CF_CATCH
}

char *cf_cuda_memory(int index, int64_t *allocated, int64_t *reserved, int64_t *peak) {
  CF_TRY
  *allocated = *reserved = *peak = 0;
#ifdef CF_WITH_CUDA
  auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
  const size_t agg = 0;  // StatType::AGGREGATE, a name that moved between releases
  *allocated = stats.allocated_bytes[agg].current;
  *reserved = stats.reserved_bytes[agg].current;
  *peak = stats.allocated_bytes[agg].peak;
#else
  (void)index;
#endif
  CF_CATCH
}

void cf_set_num_threads(int n) { at::set_num_threads(n); }
int cf_num_threads(void) { return at::get_num_threads(); }

void cf_tensor_free(cf_tensor t) { delete static_cast<at::Tensor *>(t); }

char *cf_tensor_from_float32(const float *data, const int64_t *shape, int ndim, const char *device,
                             cf_tensor *out) {
  CF_TRY
  auto dev = parse_device(device);
  auto cpu = torch::from_blob(const_cast<float *>(data), ints(shape, ndim), at::kFloat);
  *out = wrap(dev.is_cpu() ? cpu.clone() : cpu.to(dev));
  CF_CATCH
}

char *cf_tensor_to_float32(cf_tensor t, float *dst, int64_t n) {
  CF_TRY
  auto c = T(t).detach().to(at::kCPU, at::kFloat).contiguous();
  if (c.numel() != n) {
    throw std::invalid_argument("tensor has " + std::to_string(c.numel()) + " elements, buffer " +
                                std::to_string(n));
  }
  std::memcpy(dst, c.data_ptr<float>(), sizeof(float) * n);
  CF_CATCH
}

char *cf_tensor_shape(cf_tensor t, int64_t *shape, int cap, int *ndim) {
  CF_TRY
  auto s = T(t).sizes();
  *ndim = static_cast<int>(s.size());
  for (int k = 0; k < *ndim && k < cap; k++) shape[k] = s[k];
  CF_CATCH
}

char *cf_tensor_device(cf_tensor t, char **device) {
  CF_TRY
  *device = dup(T(t).device().str());
  CF_CATCH
}

char *cf_tensor_requires_grad(cf_tensor t, int *flag) {
  CF_TRY
  *flag = T(t).requires_grad() ? 1 : 0;
  CF_CATCH
}

char *cf_tensor_set_requires_grad(cf_tensor t, int flag) {
  CF_TRY
  T(t).requires_grad_(flag != 0);
  CF_CATCH
}

char *cf_op(const char *name, const cf_tensor *in, int nin, const double *f, int nf, const int64_t *i,
            int ni, cf_tensor *out) {
  CF_TRY
  auto it = ops().find(name);
  if (it == ops().end()) throw std::invalid_argument(std::string("unknown op ") + name);
  *out = wrap(it->second(Args{in, nin, f, nf, i, ni}));
  CF_CATCH
}

char *cf_grad(const cf_tensor *outputs, const cf_tensor *grad_outputs, int nout, const cf_tensor *inputs,
              int nin, int retain_graph, int create_graph, cf_tensor *grads) {
  CF_TRY
  std::vector<at::Tensor> outs, gouts, ins;
  for (int k = 0; k < nout; k++) {
    outs.push_back(T(outputs[k]));
    gouts.push_back(grad_outputs && grad_outputs[k] ? T(grad_outputs[k]) : torch::ones_like(T(outputs[k])));
  }
  for (int k = 0; k < nin; k++) {
    ins.push_back(T(inputs[k]));
    if (!ins.back().requires_grad()) {
      throw std::invalid_argument("input " + std::to_string(k) +
                                  " of the gradient is not part of an autograd graph");
    }
  }
  torch::AutoGradMode on(true);
  auto g = torch::autograd::grad(outs, ins, gouts, retain_graph != 0, create_graph != 0, true);
  for (int k = 0; k < nin; k++) grads[k] = wrap(g[k].defined() ? g[k] : torch::zeros_like(ins[k]));
  CF_CATCH
}

}  // extern "C"

// ---------------------------------------------------------------------------
// Pass graphs: for one set of layers, a graph of its own that runs exactly the
// work a pass needs, built once per (module, layer set, kind) from a fresh
// copy of the model file.
//
// The capture rewrite marks each wanted submodule's output with a
// prim::SetAttr; the root forward is then inlined, so every mark sits in one
// graph with its instance's path spelled by the prim::GetAttr chain from self.
// The marked values become the graph's outputs (lifted out of prim::If
// branches as Optional), the model output is dropped and dead code
// elimination removes everything after the deepest layer. The graph is frozen
// (parameters become constants; conv/batch-norm folding) and, for inference,
// optimized further (optimize_for_inference: MKL-DNN layouts on the CPU,
// conv/add/relu fusion on CUDA).
//
// Kinds:
//   inference   activations only, run under c10::InferenceMode
//   input-grad  activations only, autograd back to the input (attack steps)
//   layer-grad  model output and the activation, which is made a leaf
//               (detach + requires_grad_) where it is computed: the rest of
//               the pass records autograd, nothing before it does.
// A model the rewrite cannot express (a layer called inside a loop, called
// twice from different branches, reached through an interface call) keeps
// the full pass; the plan says why.

namespace {
const char *kSiteAttr = "_cavforge_site";
enum PlanKind { kInference = 0, kInputGrad = 1, kLayerGrad = 2 };

torch::jit::Module find_module(torch::jit::Module m, const std::string &p) {
  std::stringstream ss(p);
  std::string part;
  while (std::getline(ss, part, '.')) {
    auto child = m.attr(part, c10::IValue());
    if (!child.isModule()) throw std::invalid_argument("no module at path " + p);
    m = child.toModule();
  }
  return m;
}

// Why a submodule's output cannot be captured, or "" when it can.
std::string uncapturable_module(const torch::jit::Module &m) {
  auto method = m.find_method("forward");
  if (!method) return "has no forward method";
  auto &fn = torch::jit::toGraphFunction(method->function());
  auto g = fn.graph();
  if (g->outputs().size() != 1) return "returns several values";
  auto ty = g->outputs()[0]->type();
  if (!ty->isSubtypeOf(*c10::TensorType::get())) return "returns " + ty->annotation_str() + ", not a tensor";
  return "";
}

struct Plan {
  bool ok = false;
  std::string why;  // when !ok: why the full pass runs instead
  torch::jit::Module mod;
  size_t nodes_full = 0, nodes = 0;
  bool optimized = false;
};

size_t count_nodes(torch::jit::Block *b) {
  size_t n = 0;
  for (auto *node : b->nodes()) {
    n++;
    for (auto *sb : node->blocks()) n += count_nodes(sb);
  }
  return n;
}

// The dotted path of the module instance v stands for, or "" when it is not
// a chain of prim::GetAttr from self.
std::string instance_path(torch::jit::Value *v, torch::jit::Value *self) {
  std::vector<std::string> parts;
  while (v != self) {
    auto *n = v->node();
    if (n->kind() != c10::prim::GetAttr) return "";
    parts.push_back(n->s(c10::attr::name));
    v = n->input(0);
  }
  std::string p;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) p += (p.empty() ? "" : ".") + *it;
  return p;
}

void collect_sites(torch::jit::Block *b, torch::jit::Value *self,
                   std::map<std::string, std::vector<torch::jit::Node *>> &sites) {
  for (auto *n : b->nodes()) {
    if (n->kind() == c10::prim::SetAttr && n->s(c10::attr::name) == kSiteAttr) {
      sites[instance_path(n->input(0), self)].push_back(n);
    }
    for (auto *sb : n->blocks()) collect_sites(sb, self, sites);
  }
}

// v, computed at site, as a value of the graph's top block: through each
// enclosing prim::If as a new Optional output that is None when the branch
// holding the site did not run.
torch::jit::Value *lift(torch::jit::Graph &g, torch::jit::Node *site, torch::jit::Value *v, const std::string &path) {
  auto *b = site->owningBlock();
  while (b != g.block()) {
    auto *owner = b->owningNode();
    if (owner->kind() != c10::prim::If) {
      throw std::runtime_error("layer " + path + " runs inside a " + std::string(owner->kind().toQualString()));
    }
    for (auto *ob : owner->blocks()) {
      if (ob == b) {
        ob->registerOutput(v);
      } else {
        torch::jit::WithInsertPoint at(ob->return_node());
        ob->registerOutput(g.insertConstant(c10::IValue()));
      }
    }
    v = owner->addOutput()->setType(c10::OptionalType::create(c10::TensorType::get()));
    b = owner->owningBlock();
  }
  return v;
}

std::shared_ptr<Plan> build_plan(const std::string &file, const c10::Device &device, int kind,
                                 const std::vector<std::string> &want) {
  auto p = std::make_shared<Plan>();
  auto mod = torch::jit::load(file, device);
  mod.eval();
  for (auto t : mod.parameters()) t.requires_grad_(false);
  // Mark each wanted instance's class type once.
  std::set<const c10::ClassType *> marked;
  for (const auto &path : want) {
    auto sub = find_module(mod, path);
    auto why = uncapturable_module(sub);
    if (!why.empty()) throw std::invalid_argument("layer " + path + " " + why);
    if (!marked.insert(sub.type().get()).second) continue;
    sub.type()->addOrCheckAttribute(kSiteAttr, c10::OptionalType::create(c10::TensorType::get()));
    auto g = torch::jit::toGraphFunction(sub.get_method("forward").function()).graph();
    torch::jit::WithInsertPoint at_return(g->return_node());
    auto *node = g->create(c10::prim::SetAttr, {g->inputs()[0], g->outputs()[0]}, 0);
    node->s_(c10::attr::name, kSiteAttr);
    g->insertNode(node);
  }
  for (const auto &nm : mod.named_modules()) {
    if (marked.count(nm.value.type().get())) nm.value._ivalue()->setAttr(kSiteAttr, c10::IValue());
  }
  auto &fn = torch::jit::toGraphFunction(mod.get_method("forward").function());
  auto args = fn.getSchema().arguments();
  auto g = fn.graph();
  torch::jit::Inline(*g);
  p->nodes_full = count_nodes(g->block());
  auto *self = g->inputs()[0];
  std::map<std::string, std::vector<torch::jit::Node *>> sites;
  collect_sites(g->block(), self, sites);
  std::vector<torch::jit::Value *> outs;
  if (kind == kLayerGrad) outs.push_back(g->outputs()[0]);
  for (const auto &path : want) {
    auto &ss = sites[path];
    if (ss.empty()) throw std::runtime_error("layer " + path + " is not called directly from forward");
    auto *site = ss.front();
    for (auto *s : ss) {
      if (s->owningBlock() != g->block()) {
        if (ss.size() > 1) throw std::runtime_error("layer " + path + " is called more than once under control flow");
      } else if (s->isAfter(site)) {
        site = s;  // called more than once: the last call is the capture
      }
    }
    auto *v = site->input(1);
    if (kind == kLayerGrad) {
      if (site->owningBlock() != g->block()) throw std::runtime_error("layer " + path + " runs under control flow");
      torch::jit::WithInsertPoint after(site->next());
      auto *leaf = g->insert(c10::aten::detach, {v});
      auto *req = g->insert(c10::Symbol::fromQualString("aten::requires_grad_"), {leaf, true});
      v->replaceAllUsesAfterNodeWith(req->node(), req);
      v = req;
    } else {
      v = lift(*g, site, v, path);
    }
    outs.push_back(v);
  }
  for (auto &kv : sites) {
    for (auto *s : kv.second) s->destroy();
  }
  torch::jit::WithInsertPoint at_end(g->return_node());
  auto *tuple = g->insertNode(g->createTuple(outs))->output();
  while (g->outputs().size() > 0) g->eraseOutput(0);
  g->registerOutput(tuple);
  torch::jit::EliminateDeadCode(g);
  fn.setSchema(c10::FunctionSchema("forward", "", args, {c10::Argument("", tuple->type())}));
  auto frozen = torch::jit::freeze(mod, c10::nullopt, true);
  if (kind == kInference) {
    frozen = torch::jit::optimize_for_inference(frozen);
    p->optimized = true;
  }
  auto &ffn = torch::jit::toGraphFunction(frozen.get_method("forward").function());
  // The graph is already optimized: no profiling runs, no respecialization
  // when the batch size changes.
  ffn._set_initial_executor_execution_mode(torch::jit::ExecutorExecutionMode::SIMPLE);
  p->nodes = count_nodes(ffn.graph()->block());
  p->mod = frozen;
  p->ok = true;
  return p;
}

// The outputs of a plan's graph, one per wanted layer after skip of them.
std::vector<at::Tensor> plan_outputs(const c10::IValue &out, const std::vector<std::string> &want, size_t skip) {
  auto elems = out.toTupleRef().elements();
  std::vector<at::Tensor> acts;
  for (size_t k = skip; k < elems.size(); k++) {
    if (!elems[k].isTensor()) throw std::runtime_error("layer " + want[k - skip] + " did not run in this forward pass");
    acts.push_back(elems[k].toTensor());
  }
  return acts;
}
}  // namespace

// ---------------------------------------------------------------------------
// Modules and layer capture.
//
// A submodule's output is captured by a graph rewrite: a prim::SetAttr at the
// end of the submodule's forward stores the returned tensor in a new
// Optional[Tensor] attribute of that instance, which is read after the pass.
// The stored tensor is the one the rest of the graph consumes, so it stays in
// the autograd graph. Instances that share a class type share the rewrite;
// each stores into its own slot, and all slots are cleared after each pass.
//
// TorchScript optimizes (and inlines callees into) a method at its first run,
// so a rewrite after that would go unseen: the module is then reloaded from
// its file and every capture so far is applied to the fresh copy.

namespace {
const char *kCaptureAttr = "_cavforge_capture";
// A one-element CPU tensor per captured instance: 1 lets the forward pass
// go on after the capture, 0 stops it there (aten::_assert_async throws on
// zero, synchronously since the tensor is on the CPU). Activation passes
// stop after the last layer they need instead of running the whole model.
const char *kGoAttr = "_cavforge_go";
at::Tensor go_flag(bool go) { return go ? torch::ones({1}) : torch::zeros({1}); }
}

struct cf_module {
  std::string path;
  c10::Device device{c10::kCPU};
  torch::jit::Module mod;
  std::vector<std::string> paths;
  std::set<std::string> captured;  // paths whose class type is rewritten
  std::vector<torch::jit::Module> slots;  // every instance holding a capture slot
  std::set<const c10::ClassType *> rewritten;
  bool ran = false;
  std::mutex mu;

  void load() {
    mod = torch::jit::load(path, device);
    mod.eval();
    // Gradients are only ever taken with respect to inputs and activations.
    for (auto t : mod.parameters()) t.requires_grad_(false);
    paths.clear();
    for (const auto &nm : mod.named_modules()) {
      if (!nm.name.empty()) paths.push_back(nm.name);
    }
    rewritten.clear();
    slots.clear();
    ran = false;
  }

  torch::jit::Module find(const std::string &p) {
    torch::jit::Module m = mod;
    std::stringstream ss(p);
    std::string part;
    while (std::getline(ss, part, '.')) {
      auto child = m.attr(part, c10::IValue());
      if (!child.isModule()) throw std::invalid_argument("no module at path " + p);
      m = child.toModule();
    }
    return m;
  }

  // Why a path cannot be captured, or "" when it can.
  std::string uncapturable(const torch::jit::Module &m) { return uncapturable_module(m); }

  void rewrite(const std::string &p) {
    auto sub = find(p);
    const c10::ClassType *ty = sub.type().get();
    if (rewritten.count(ty)) return;
    auto why = uncapturable(sub);
    if (!why.empty()) throw std::invalid_argument("layer " + p + " " + why);
    sub.type()->addOrCheckAttribute(kCaptureAttr, c10::OptionalType::create(c10::TensorType::get()));
    sub.type()->addOrCheckAttribute(kGoAttr, c10::TensorType::get());
    for (const auto &nm : mod.named_modules()) {
      if (nm.value.type().get() == ty) {
        nm.value._ivalue()->setAttr(kCaptureAttr, c10::IValue());
        nm.value._ivalue()->setAttr(kGoAttr, go_flag(true));
        slots.push_back(nm.value);
      }
    }
    auto &fn = torch::jit::toGraphFunction(sub.get_method("forward").function());
    auto g = fn.graph();
    torch::jit::WithInsertPoint at_return(g->return_node());
    auto *node = g->create(c10::prim::SetAttr, {g->inputs()[0], g->outputs()[0]}, 0);
    node->s_(c10::attr::name, kCaptureAttr);
    g->insertNode(node);
    auto *go = g->insertGetAttr(g->inputs()[0], kGoAttr);
    g->insert(c10::Symbol::fromQualString("aten::_assert_async"), {go});
    rewritten.insert(ty);
  }

  void ensure_captured(const std::vector<std::string> &want) {
    bool fresh = false;
    for (const auto &p : want) {
      if (!captured.count(p)) {
        captured.insert(p);
        fresh = true;
      }
    }
    if (!fresh) return;
    if (ran) load();
    for (const auto &p : captured) rewrite(p);
  }

  void clear_slots() {
    for (auto &m : slots) m._ivalue()->setAttr(kCaptureAttr, c10::IValue());
  }

  bool all_captured(const std::vector<std::string> &want) {
    for (const auto &p : want) {
      if (find(p).attr(kCaptureAttr).isNone()) return false;
    }
    return true;
  }

  // Runs forward, stopped right after `stop` (empty: the whole pass). A
  // failure after every wanted layer was captured is the stop itself.
  void run_until(const at::Tensor &x, const std::string &stop, const std::vector<std::string> &want) {
    ran = true;
    if (stop.empty()) {
      mod.forward({x});
      return;
    }
    auto holder = find(stop);
    holder._ivalue()->setAttr(kGoAttr, go_flag(false));
    try {
      mod.forward({x});
    } catch (...) {
      holder._ivalue()->setAttr(kGoAttr, go_flag(true));
      if (!all_captured(want)) throw;
      return;
    }
    holder._ivalue()->setAttr(kGoAttr, go_flag(true));
  }

  // Pass graphs by kind and layer set; channels_last feeds inference graphs
  // 4-d inputs in that memory format.
  std::map<std::string, std::shared_ptr<Plan>> plans;
  bool channels_last = false;
  std::shared_ptr<Plan> plan(int kind, const std::vector<std::string> &want) {
    std::string key = std::to_string(kind);
    for (const auto &p : want) key += "\n" + p;
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    std::shared_ptr<Plan> p;
    const char *off = std::getenv("CAVFORGE_FULL_PASS");
    if (off != nullptr && *off != '\0' && std::string(off) != "0") {
      p = std::make_shared<Plan>();
      p->why = "CAVFORGE_FULL_PASS is set";
    } else {
      try {
        p = build_plan(path, device, kind, want);
      } catch (const std::exception &e) {
        p = std::make_shared<Plan>();
        char *msg = error_of(e);
        p->why = msg;
        std::free(msg);
        auto nl = p->why.find('\n');
        if (nl != std::string::npos) p->why.resize(nl);
      }
    }
    plans[key] = p;
    return p;
  }

  // The wanted layer that finishes last, found once per set of layers by
  // trying each on one example; "" when none can stop the pass early.
  std::map<std::string, std::string> last_of;
  std::string last_layer(const at::Tensor &x, const std::vector<std::string> &want) {
    std::string key;
    for (const auto &p : want) key += p + "\n";
    auto it = last_of.find(key);
    if (it != last_of.end()) return it->second;
    std::string last;
    auto one = x.narrow(0, 0, 1);
    for (const auto &p : want) {
      bool ok = false;
      try {
        run_until(one, p, want);
        ok = all_captured(want);
      } catch (...) {
      }
      clear_slots();
      if (ok) {
        last = p;
        break;
      }
    }
    last_of[key] = last;
    return last;
  }
};

extern "C" {

char *cf_module_load(const char *path, const char *device, cf_module **out) {
  CF_TRY
  auto m = std::make_unique<cf_module>();
  m->path = path;
  m->device = parse_device(device);
  m->load();
  *out = m.release();
  CF_CATCH
}

void cf_module_free(cf_module *m) { delete m; }

char *cf_module_paths(cf_module *m, char **paths) {
  CF_TRY
  std::lock_guard<std::mutex> lock(m->mu);
  std::string s;
  for (const auto &p : m->paths) s += p + "\n";
  *paths = dup(s);
  CF_CATCH
}

}  // extern "C"

namespace {

at::Tensor run_forward(cf_module *m, const at::Tensor &x) {
  m->ran = true;
  auto out = m->mod.forward({x});
  if (!out.isTensor()) {
    throw std::runtime_error("model output is " + out.type()->annotation_str() + ", not a tensor [N, classes]");
  }
  return out.toTensor();
}

// with_captures sets the module up for paths, runs pass on the input (on the
// module's device), then hands out the captured outputs and clears every
// capture slot, whether the pass succeeded or not.
template <typename Pass>
void with_captures(cf_module *m, cf_tensor input, const char **paths, int npaths, int mode, int autocast,
                   cf_tensor *captured, Pass pass) {
  std::lock_guard<std::mutex> lock(m->mu);
  std::vector<std::string> want(paths, paths + npaths);
  m->ensure_captured(want);
  ModeGuard guard(mode, autocast, m->device);
  at::Tensor x = T(input);
  if (x.device() != m->device) x = x.to(m->device);
  std::vector<at::Tensor> acts;
  try {
    pass(x, want);
    for (const auto &p : want) {
      auto v = m->find(p).attr(kCaptureAttr);
      if (v.isNone()) throw std::runtime_error("layer " + p + " did not run in this forward pass");
      acts.push_back(v.toTensor());
    }
  } catch (...) {
    m->clear_slots();
    throw;
  }
  m->clear_slots();
  for (size_t k = 0; k < acts.size(); k++) captured[k] = wrap(acts[k]);
}

}  // namespace

extern "C" {

char *cf_module_forward(cf_module *m, cf_tensor input, const char **paths, int npaths, int mode, int autocast,
                        cf_tensor *output, cf_tensor *captured) {
  CF_TRY
  at::Tensor out;
  with_captures(m, input, paths, npaths, mode, autocast, captured,
                [&](at::Tensor x, const std::vector<std::string> &want) {
                  // Frozen models: without a gradient-requiring input the
                  // captured activation would have no autograd history.
                  if (mode == CF_GRAD && !want.empty() && !x.requires_grad()) x = x.detach().requires_grad_(true);
                  out = run_forward(m, x);
                });
  *output = wrap(out);
  CF_CATCH
}

char *cf_module_capture(cf_module *m, cf_tensor input, const char **paths, int npaths, int mode, int autocast,
                        cf_tensor *captured) {
  CF_TRY
  std::vector<std::string> want(paths, paths + npaths);
  {
    std::lock_guard<std::mutex> lock(m->mu);
    auto p = m->plan(mode == CF_GRAD ? kInputGrad : kInference, want);
    if (p->ok) {
      ModeGuard guard(mode, autocast, m->device);
      at::Tensor x = T(input);
      if (x.device() != m->device) x = x.to(m->device);
      if (mode == CF_GRAD && !x.requires_grad()) x = x.detach().requires_grad_(true);
      if (mode != CF_GRAD && m->channels_last && x.dim() == 4) x = x.contiguous(at::MemoryFormat::ChannelsLast);
      auto acts = plan_outputs(p->mod.forward({x}), want, 0);
      for (size_t k = 0; k < acts.size(); k++) captured[k] = wrap(acts[k]);
      return nullptr;
    }
  }
  with_captures(m, input, paths, npaths, mode, autocast, captured,
                [&](at::Tensor x, const std::vector<std::string> &want) {
                  if (mode == CF_GRAD) {
                    if (!x.requires_grad()) x = x.detach().requires_grad_(true);
                    run_forward(m, x);
                  } else {
                    m->run_until(x, m->last_layer(x, want), want);
                  }
                });
  CF_CATCH
}

char *cf_module_forward_leaf(cf_module *m, cf_tensor input, const char *path, int autocast, cf_tensor *output,
                             cf_tensor *captured) {
  CF_TRY
  std::vector<std::string> want{path};
  {
    std::lock_guard<std::mutex> lock(m->mu);
    auto p = m->plan(kLayerGrad, want);
    if (p->ok) {
      ModeGuard guard(CF_GRAD, autocast, m->device);
      at::Tensor x = T(input);
      if (x.device() != m->device) x = x.to(m->device);
      auto res = p->mod.forward({x});
      auto first = res.toTupleRef().elements()[0];
      if (!first.isTensor()) {
        throw std::runtime_error("model output is " + first.type()->annotation_str() +
                                 ", not a tensor [N, classes]");
      }
      auto acts = plan_outputs(res, want, 1);
      *output = wrap(first.toTensor());
      captured[0] = wrap(acts[0]);
      return nullptr;
    }
  }
  return cf_module_forward(m, input, &path, 1, CF_GRAD, autocast, output, captured);
  CF_CATCH
}

char *cf_module_plan(cf_module *m, int kind, const char **paths, int npaths, char **desc) {
  CF_TRY
  std::lock_guard<std::mutex> lock(m->mu);
  auto p = m->plan(kind, std::vector<std::string>(paths, paths + npaths));
  std::string s;
  if (p->ok) {
    s = "pruned graph, " + std::to_string(p->nodes) + " nodes (full pass " + std::to_string(p->nodes_full) +
        "), frozen" + (p->optimized ? ", optimized for inference" : "");
  } else {
    s = "full pass: " + p->why;
  }
  *desc = dup(s);
  CF_CATCH
}

void cf_module_set_channels_last(cf_module *m, int on) {
  std::lock_guard<std::mutex> lock(m->mu);
  m->channels_last = on != 0;
}

char *cf_module_layer_shapes(cf_module *m, const int64_t *shape, int ndim, char **lines) {
  CF_TRY
  std::lock_guard<std::mutex> lock(m->mu);
  std::vector<std::string> want;
  for (const auto &p : m->paths) {
    if (m->uncapturable(m->find(p)).empty()) want.push_back(p);
  }
  m->ensure_captured(want);
  torch::NoGradGuard no_grad;
  auto x = torch::zeros(ints(shape, ndim), at::TensorOptions().device(m->device));
  auto fmt = [](at::IntArrayRef s) {
    std::string r;
    for (size_t k = 0; k < s.size(); k++) r += (k ? "," : "") + std::to_string(s[k]);
    return r;
  };
  at::Tensor out;
  try {
    out = run_forward(m, x);
  } catch (...) {
    m->clear_slots();
    throw;
  }
  std::string s = "\t" + fmt(out.sizes()) + "\n";
  for (const auto &p : want) {
    auto v = m->find(p).attr(kCaptureAttr);
    if (v.isTensor()) s += p + "\t" + fmt(v.toTensor().sizes()) + "\n";
  }
  m->clear_slots();
  *lines = dup(s);
  CF_CATCH
}

}  // extern "C"
