// Baselines for `make bench`: cavforge's work as plain libtorch C++ loops
// with no Go in them.
//
//   bench_baseline MODEL.pt LAYER C,H,W BATCH ITERS DEVICE
//     one TCAV gradient pass (forward, capture, class-logit gradient at the
//     layer, copy to host), repeated; prints "images_per_s <value>".
//   bench_baseline --serve MODEL.pt LAYER C,H,W DEVICE
//     the floor for `cavforge bench`: builds each pass the fastest way
//     known here, then reads lines "PASS BATCH SECONDS" on stdin (PASS:
//     act, grad, pgd) and answers each with "images N seconds S" for a
//     timed loop of that pass (after warm-up the first time). "quit" ends.
//       act   activations at LAYER: the forward rewritten to return the
//             layer's output (everything after it removed), frozen,
//             optimize_for_inference, channels_last input, InferenceMode;
//             the values copied to host memory.
//       grad  the class-0 logit gradient at LAYER: the forward frozen with
//             the layer's output made an autograd leaf where it is
//             computed, so nothing before it records autograd; the
//             gradient copied to host memory.
//       pgd   one L-inf step on the input for the objective sum(act * d) at
//             LAYER (d fixed): pruned, frozen graph, gradient to the input.
//   bench_baseline --tcav MODEL.pt L1,L2,... C,H,W BATCH N_ACT N_GRAD DEVICE
//     the forward/backward passes of a TCAV experiment: activations of N_ACT
//     images at every layer in one inference pass per batch, then per layer
//     the class gradients of N_GRAD images; prints "activations_s",
//     "gradients_s" and "total_s".
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
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

// The forward of a fresh copy of the model rewritten for one layer: pruned
// to return its output, or (leaf) returning (output, layer output) with the
// layer's output detached into a gradient-requiring leaf. Frozen, and
// optimized for inference when asked.
torch::jit::Module pass_module(const std::string &file, const torch::Device &dev, const std::string &layer,
                               bool leaf, bool for_inference) {
  auto mod = torch::jit::load(file, dev);
  mod.eval();
  for (auto p : mod.parameters()) p.requires_grad_(false);
  auto sub = find(mod, layer);
  sub.type()->addOrCheckAttribute("_floor", c10::OptionalType::create(c10::TensorType::get()));
  for (const auto &nm : mod.named_modules()) {
    if (nm.value.type() == sub.type()) nm.value._ivalue()->setAttr("_floor", c10::IValue());
  }
  auto sg = torch::jit::toGraphFunction(sub.get_method("forward").function()).graph();
  {
    torch::jit::WithInsertPoint at(sg->return_node());
    auto *n = sg->create(c10::prim::SetAttr, {sg->inputs()[0], sg->outputs()[0]}, 0);
    n->s_(c10::attr::name, "_floor");
    sg->insertNode(n);
  }
  auto &fn = torch::jit::toGraphFunction(mod.get_method("forward").function());
  auto args = fn.getSchema().arguments();
  auto g = fn.graph();
  torch::jit::Inline(*g);
  std::vector<torch::jit::Node *> marks;
  torch::jit::Node *site = nullptr;
  for (auto *n : g->nodes()) {
    if (n->kind() != c10::prim::SetAttr || n->s(c10::attr::name) != "_floor") continue;
    marks.push_back(n);
    std::vector<std::string> parts;
    auto *v = n->input(0);
    while (v != g->inputs()[0] && v->node()->kind() == c10::prim::GetAttr) {
      parts.insert(parts.begin(), v->node()->s(c10::attr::name));
      v = v->node()->input(0);
    }
    std::string p;
    for (const auto &s : parts) p += (p.empty() ? "" : ".") + s;
    if (v == g->inputs()[0] && p == layer) site = n;  // the last call wins
  }
  if (site == nullptr) throw std::runtime_error("layer " + layer + " is not called at the top of forward");
  auto *act = site->input(1);
  torch::jit::Value *out;
  torch::jit::WithInsertPoint after(site->next());
  if (leaf) {
    auto *d = g->insert(c10::aten::detach, {act});
    auto *r = g->insert(c10::Symbol::fromQualString("aten::requires_grad_"), {d, true});
    act->replaceAllUsesAfterNodeWith(r->node(), r);
    out = g->insertNode(g->createTuple({g->outputs()[0], r}))->output();
    out->node()->moveBefore(g->return_node());
  } else {
    out = act;
  }
  for (auto *n : marks) n->destroy();
  g->eraseOutput(0);
  g->registerOutput(out);
  torch::jit::EliminateDeadCode(g);
  fn.setSchema(c10::FunctionSchema("forward", "", args, {c10::Argument("", out->type())}));
  auto frozen = torch::jit::freeze(mod);
  if (for_inference) frozen = torch::jit::optimize_for_inference(frozen);
  // The graph is already optimized: the simple executor skips profiling
  // runs and respecialization (faster in every row measured here);
  // BENCH_FLOOR_EXECUTOR=profiling keeps libtorch's default.
  const char *ex = std::getenv("BENCH_FLOOR_EXECUTOR");
  if (ex == nullptr || std::string(ex) != "profiling") {
    torch::jit::toGraphFunction(frozen.get_method("forward").function())
        ._set_initial_executor_execution_mode(torch::jit::ExecutorExecutionMode::SIMPLE);
  }
  return frozen;
}

int serve(int argc, char **argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s --serve MODEL LAYER C,H,W DEVICE\n", argv[0]);
    return 2;
  }
  std::string file = argv[2], layer = argv[3];
  torch::Device dev(argv[5]);
  std::vector<int64_t> chw;
  for (const auto &d : split(argv[4])) chw.push_back(std::atoll(d.c_str()));
  std::map<std::string, torch::jit::Module> mods;
  auto module = [&](const std::string &pass) -> torch::jit::Module & {
    auto it = mods.find(pass);
    if (it == mods.end()) {
      it = mods.emplace(pass, pass_module(file, dev, layer, pass == "grad", pass == "act")).first;
    }
    return it->second;
  };
  std::vector<float> host, sink;
  auto download = [&](const at::Tensor &t) {
    auto c = t.to(torch::kCPU).contiguous();
    sink.resize(c.numel());
    std::memcpy(sink.data(), c.data_ptr<float>(), sizeof(float) * c.numel());
  };
  std::map<std::string, bool> warm;
  std::map<int64_t, bool> channels_last;
  std::printf("ready\n");
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
    std::stringstream ss(line);
    std::string pass;
    int64_t batch = 0;
    double seconds = 0;
    ss >> pass >> batch >> seconds;
    if (pass == "quit") break;
    if (batch <= 0 || (pass != "act" && pass != "grad" && pass != "pgd")) {
      std::printf("error bad command %s\n", line.c_str());
      std::fflush(stdout);
      continue;
    }
    std::vector<int64_t> shape{batch};
    shape.insert(shape.end(), chw.begin(), chw.end());
    int64_t n = batch * chw[0] * chw[1] * chw[2];
    host.resize(n);
    for (int64_t i = 0; i < n; i++) host[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f;
    auto &mod = module(pass);
    at::Tensor x = torch::from_blob(host.data(), shape, torch::kFloat).to(dev, false, true);
    at::Tensor dir;
    std::function<void()> step;
    if (pass == "act") {
      step = [&] {
        c10::InferenceMode guard;
        auto in = torch::from_blob(host.data(), shape, torch::kFloat).to(dev);
        if (channels_last[batch]) in = in.contiguous(at::MemoryFormat::ChannelsLast);
        download(mod.forward({in}).toTensor());
      };
    } else if (pass == "grad") {
      step = [&] {
        auto in = torch::from_blob(host.data(), shape, torch::kFloat).to(dev);
        auto res = mod.forward({in}).toTuple();
        auto logits = res->elements()[0].toTensor(), act = res->elements()[1].toTensor();
        download(torch::autograd::grad({logits.select(1, 0).sum()}, {act})[0]);
      };
    } else {
      x = x.clone();
      step = [&] {
        auto leaf = x.detach().requires_grad_(true);
        auto act = mod.forward({leaf}).toTensor();
        if (!dir.defined()) dir = torch::randn(act.sizes(), act.options().requires_grad(false));
        auto g = torch::autograd::grad({(act * dir).sum()}, {leaf})[0];
        torch::NoGradGuard no_grad;
        x = (x + 0.002 * g.sign()).clamp(0, 1);
      };
    }
    std::string key = pass + std::to_string(batch);
    if (!warm[key]) {
      for (int i = 0; i < 2; i++) step();
      if (pass == "act") {
        // The faster memory format for this batch size, by 3 timed steps each.
        double t[2];
        for (int cl = 0; cl < 2; cl++) {
          channels_last[batch] = cl == 1;
          step();
          auto t1 = std::chrono::steady_clock::now();
          for (int i = 0; i < 3; i++) step();
          t[cl] = seconds_since(t1);
        }
        channels_last[batch] = t[1] < t[0];
        std::fprintf(stderr, "bench_baseline: act batch %lld: channels_last %s (%.3fs vs %.3fs contiguous)\n",
                     static_cast<long long>(batch), t[1] < t[0] ? "on" : "off", t[1], t[0]);
      }
      warm[key] = true;
    }
    if (dev.is_cuda()) torch::cuda::synchronize();
    auto t0 = std::chrono::steady_clock::now();
    int64_t iters = 0;
    while (iters < 1 || seconds_since(t0) < seconds) {
      step();
      iters++;
    }
    if (dev.is_cuda()) torch::cuda::synchronize();
    std::printf("images %lld seconds %.6f\n", static_cast<long long>(iters * batch), seconds_since(t0));
    std::fflush(stdout);
  }
  return 0;
}

int main(int argc, char **argv) {
  // The same intra-op thread count as the cavforge side it is compared with
  // (libtorch's own default may count physical cores only).
  if (const char *n = std::getenv("BENCH_THREADS")) at::set_num_threads(std::atoi(n));
  std::fprintf(stderr, "bench_baseline: %d threads\n", at::get_num_threads());
  if (argc > 1 && std::string(argv[1]) == "--serve") {
    try {
      return serve(argc, argv);
    } catch (const std::exception &e) {
      std::fprintf(stderr, "bench_baseline: %s\n", e.what());
      return 1;
    }
  }
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
