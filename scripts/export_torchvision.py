#!/usr/bin/env python3
"""Export a torchvision image classifier to TorchScript for cavforge.

No downloads, ever: the model is built with random weights from a fixed seed,
or loaded from a state_dict file the user already has (--weights).

Examples:
    python3 scripts/export_torchvision.py --model googlenet --out models/googlenet.pt
    python3 scripts/export_torchvision.py --model resnet18 --weights resnet18.pth \
        --mode script --out models/resnet18.pt

Tracing records one execution path (fine for plain CNNs); scripting keeps
Python control flow. Both load in libtorch with gradients. Preprocessing
(resize, mean/std) is NOT baked into the model: describe it in the config's
model.input section.
"""
import argparse
import os
import sys

# TorchScript writes module constants in Python-set order, which depends on string
# hashing: pin the hash seed so that the same export gives byte-identical files.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import torch
import torchvision


class _GoogLeNetLogits(torchvision.models.GoogLeNet):
    """GoogLeNet whose scripted forward returns the logits tensor only.

    Scripted torchvision GoogLeNet always returns a GoogLeNetOutputs tuple;
    swapping the class keeps every module path (inception4c, ...) unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._transform_input(x)
        x, _, _ = self._forward(x)
        return x


class _Inception3Logits(torchvision.models.Inception3):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._transform_input(x)
        x, _ = self._forward(x)
        return x


def logits_only(model):
    if type(model) is torchvision.models.GoogLeNet:
        model.__class__ = _GoogLeNetLogits
    elif type(model) is torchvision.models.Inception3:
        model.__class__ = _Inception3Logits
    return model


def build(name, weights, seed):
    torch.manual_seed(seed)
    known = sorted(torchvision.models.list_models(module=torchvision.models)) \
        if hasattr(torchvision.models, "list_models") else None
    ctor = getattr(torchvision.models, name, None)
    if ctor is None or not callable(ctor) or (known is not None and name not in known):
        sys.exit("export_torchvision: unknown torchvision classifier %r%s" % (
            name, "; known: " + ", ".join(known) if known else ""))
    kwargs = {}
    if name == "googlenet":
        # No aux heads (they only run in training mode and complicate export);
        # transform_input=False so that normalization is entirely the config's.
        kwargs = dict(aux_logits=False, init_weights=True, transform_input=False)
    elif name.startswith("inception_v3"):
        kwargs = dict(aux_logits=False, init_weights=True, transform_input=False)
    try:
        # torchvision >= 0.13 takes weights=None; never pass pretrained=True.
        model = ctor(weights=None, **kwargs)
    except TypeError:
        model = ctor(pretrained=False, **kwargs)
    if weights:
        state = torch.load(weights, map_location="cpu")
        if isinstance(state, dict) and "state_dict" in state and not any(
                k.endswith(".weight") for k in state):
            state = state["state_dict"]
        if isinstance(state, torch.nn.Module):
            state = state.state_dict()
        # checkpoints saved from DataParallel carry a "module." prefix
        state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
        if name == "googlenet":  # exported without aux heads
            state = {k: v for k, v in state.items() if not k.startswith("aux")}
        elif name.startswith("inception_v3"):
            state = {k: v for k, v in state.items() if not k.startswith("AuxLogits")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            sys.exit("export_torchvision: weights do not match %s: missing %s, unexpected %s"
                     % (name, list(missing)[:5], list(unexpected)[:5]))
    model.eval()
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="torchvision model name, e.g. googlenet, resnet18, vgg16")
    ap.add_argument("--weights", default=None, help="state_dict file (.pth); default: random init")
    ap.add_argument("--mode", choices=["trace", "script"], default="trace")
    ap.add_argument("--size", type=int, default=224, help="square input size used for tracing/checking")
    ap.add_argument("--seed", type=int, default=0, help="seed for random init and the example input")
    ap.add_argument("--out", required=True, help="output .pt file")
    args = ap.parse_args()

    torch.set_grad_enabled(False)
    model = build(args.model, args.weights, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    example = torch.randn(1, 3, args.size, args.size, generator=g)
    if args.mode == "trace":
        ts = torch.jit.trace(model, example, check_trace=False)
    else:
        ts = torch.jit.script(logits_only(model))
    ts.eval()
    ref = model(example)
    if isinstance(ref, tuple):  # GoogLeNetOutputs etc.
        ref = ref[0]
    got = ts(example)
    if ref.dim() != 2 or got.shape != ref.shape:
        sys.exit("export_torchvision: output is %s, want [N, classes]" % (tuple(got.shape),))
    err = (got - ref).abs().max().item()
    if err > 1e-3 * max(1.0, ref.abs().max().item()):
        sys.exit("export_torchvision: exported model disagrees with eager model (max err %g)" % err)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    ts.save(args.out)
    print(args.out)
    names = [n for n, _ in model.named_modules() if n]
    tops = [n for n, _ in model.named_children()]
    print("model: %s (%s, %s), output %s, %d parameters" % (
        args.model, args.mode, "weights " + args.weights if args.weights else "random init seed %d" % args.seed,
        tuple(got.shape), sum(p.numel() for p in model.parameters())))
    print("top-level modules: " + ", ".join(tops))
    nested = [n for n in names if "." in n][:8]
    print("example nested paths: " + ", ".join(nested))
    if args.weights and (args.model == "googlenet" or args.model.startswith("inception_v3")):
        print("note: exported with transform_input=False; torchvision's ImageNet weights for %s expect "
              "(x - 0.5) / 0.5, i.e. mean [0.5, 0.5, 0.5] and std [0.5, 0.5, 0.5] in the config" % args.model)


if __name__ == "__main__":
    main()
