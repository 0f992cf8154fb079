// Baselines for `make bench`: cavforge's work as plain libtorch C++ loops
// with no Go in them.
//
//   bench_baseline MODEL.pt LAYER C,H,W BATCH ITERS DEVICE
//     one TCAV gradient pass (forward, capture, class-logit gradient at the
//     layer, copy to host), repeated; prints "images_per_s <value>".
//   bench_baseline --tcav MODEL.pt L1,L2,... C,H,W BATCH N_ACT N_GRAD DEVICE
//     the forward/backward passes of a TCAV experiment: activations of N_ACT
//     images at every layer in one inference pass per batch, then per layer
//     the class gradients of N_GRAD images; prints "activations_s",
//     "gradients_s" and "total_s".
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace {

// Same capture technique as the shim: store the submodule's output in an
// attribute from inside its forward graph.
void capture(torch::jit::Module &root, const std::string &path) {
  torch::jit::Module m = root;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '.')) m = m.attr(part).toModule();
  m.type()->addOrCheckAttribute("_bench", c10::OptionalType::create(c10::TensorType::get()));
  for (const auto &nm : root.named_modules()) {
    if (nm.value.type() == m.type()) nm.value._ivalue()->setAttr("_bench", c10::IValue());
  }
  auto g = torch::jit::toGraphFunction(m.get_method("forward").function()).graph();
  auto *n = g->create(c10::prim::SetAttr, {g->inputs()[0], g->outputs()[0]}, 0);
  n->s_(c10::attr::name, "_bench");
  g->appendNode(n);
}

torch::jit::Module find(torch::jit::Module root, const std::string &path) {
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '.')) root = root.attr(part).toModule();
  return root;
}

}  // namespace

std::vector<std::string> split(const std::string &s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) out.push_back(part);
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int tcav(int argc, char **argv) {
  if (argc != 9) {
    std::fprintf(stderr, "usage: %s --tcav MODEL L1,L2 C,H,W BATCH N_ACT N_GRAD DEVICE\n", argv[0]);
    return 2;
  }
  torch::Device dev(argv[8]);
  auto mod = torch::jit::load(argv[2], dev);
  mod.eval();
  auto layers = split(argv[3]);
  for (const auto &l : layers) capture(mod, l);
  std::vector<int64_t> chw;
  for (const auto &d : split(argv[4])) chw.push_back(std::atoll(d.c_str()));
  int64_t batch = std::atoll(argv[5]), n_act = std::atoll(argv[6]), n_grad = std::atoll(argv[7]);
  int64_t per = chw[0] * chw[1] * chw[2];
  std::vector<float> host(per * batch);
  for (size_t i = 0; i < host.size(); i++) host[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f;
  std::vector<float> sink;
  auto upload = [&](int64_t n) {
    std::vector<int64_t> shape{n};
    shape.insert(shape.end(), chw.begin(), chw.end());
    return torch::from_blob(host.data(), shape, torch::kFloat).to(dev, false, true);
  };
  auto download = [&](const at::Tensor &t) {
    auto c = t.to(torch::kCPU).contiguous();
    sink.resize(c.numel());
    std::memcpy(sink.data(), c.data_ptr<float>(), sizeof(float) * c.numel());
  };
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t start = 0; start < n_act; start += batch) {
    c10::InferenceMode guard;
    auto x = upload(std::min(batch, n_act - start));
    mod.forward({x});
    for (const auto &l : layers) {
      auto holder = find(mod, l);
      download(holder.attr("_bench").toTensor());
      holder._ivalue()->setAttr("_bench", c10::IValue());
    }
  }
  if (dev.is_cuda()) torch::cuda::synchronize();
  double act_s = seconds_since(t0);
  auto t1 = std::chrono::steady_clock::now();
  for (const auto &l : layers) {
    auto holder = find(mod, l);
    for (int64_t start = 0; start < n_grad; start += batch) {
      auto x = upload(std::min(batch, n_grad - start)).requires_grad_(true);
      auto logits = mod.forward({x}).toTensor();
      auto act = holder.attr("_bench").toTensor();
      for (const auto &other : layers) find(mod, other)._ivalue()->setAttr("_bench", c10::IValue());
      download(torch::autograd::grad({logits.select(1, 0).sum()}, {act})[0]);
    }
  }
  if (dev.is_cuda()) torch::cuda::synchronize();
  double grad_s = seconds_since(t1);
  std::printf("activations_s %.3f\ngradients_s %.3f\ntotal_s %.3f\n", act_s, grad_s, act_s + grad_s);
  return 0;
}

int main(int argc, char **argv) {
  // The same intra-op thread count as the cavforge side it is compared with
  // (libtorch's own default may count physical cores only).
  if (const char *n = std::getenv("BENCH_THREADS")) at::set_num_threads(std::atoi(n));
  std::fprintf(stderr, "bench_baseline: %d threads\n", at::get_num_threads());
  if (argc > 1 && std::string(argv[1]) == "--tcav") {
    try {
      return tcav(argc, argv);
    } catch (const std::exception &e) {
      std::fprintf(stderr, "bench_baseline: %s\n", e.what());
      return 1;
    }
  }
  if (argc != 7) {
    std::fprintf(stderr, "usage: %s MODEL LAYER C,H,W BATCH ITERS DEVICE\n", argv[0]);
    return 2;
  }
  try {
    torch::Device dev(argv[6]);
    auto mod = torch::jit::load(argv[1], dev);
    mod.eval();
    std::string layer = argv[2];
    capture(mod, layer);
    auto holder = find(mod, layer);
    std::vector<int64_t> shape{std::atoll(argv[4])};
    std::stringstream ss(argv[3]);
    std::string d;
    while (std::getline(ss, d, ',')) shape.push_back(std::atoll(d.c_str()));
    int iters = std::atoi(argv[5]);
    int64_t n = 1;
    for (auto s : shape) n *= s;
    std::vector<float> host(n);
    for (int64_t i = 0; i < n; i++) host[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f;
    std::vector<float> out;

    auto step = [&]() {
      auto x = torch::from_blob(host.data(), shape, torch::kFloat).to(dev, false, true).requires_grad_(true);
      auto logits = mod.forward({x}).toTensor();
      auto act = holder.attr("_bench").toTensor();
      holder._ivalue()->setAttr("_bench", c10::IValue());
      auto g = torch::autograd::grad({logits.select(1, 0).sum()}, {act})[0];
      auto c = g.to(torch::kCPU).contiguous();
      out.resize(c.numel());
      std::memcpy(out.data(), c.data_ptr<float>(), sizeof(float) * c.numel());
    };
    for (int i = 0; i < 3; i++) step();  // warm-up, as the Go side does
    if (dev.is_cuda()) torch::cuda::synchronize();
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; i++) step();
    if (dev.is_cuda()) torch::cuda::synchronize();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("images_per_s %.3f\n", shape[0] * iters / secs);
  } catch (const std::exception &e) {
    std::fprintf(stderr, "bench_baseline: %s\n", e.what());
    return 1;
  }
  return 0;
}
