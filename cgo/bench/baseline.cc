// The baseline for `cavforge bench`: the forward + capture + gradient work of
// one TCAV gradient pass, as a plain libtorch C++ loop with no Go in it.
//
//   bench_baseline MODEL.pt LAYER C,H,W BATCH ITERS DEVICE
//
// Prints one line: "images_per_s <value>".
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <chrono>
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

int main(int argc, char **argv) {
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
