#!/usr/bin/env python3
"""Regenerate the tiny TorchScript fixtures in this directory.

    /usr/bin/python3 testdata/models/make_models.py          # from the repository root

Writes (next to this script): tiny_traced.pt, tiny_scripted.pt, frozen.pt,
planted.pt and expected.json (module paths, output shapes and reference
logits for a fixed input; see README.md). Deterministic: fixed seeds, CPU,
one thread. Needs torch (tested with 1.13).
"""
import json
import os
import re
import sys

# TorchScript writes module constants in Python-set order, which depends on string
# hashing: pin the hash seed so that saved files are byte-identical run to run.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
from collections import OrderedDict

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
IN_SHAPE = (3, 16, 16)


def reference_input(n=2):
    """x[b, c, h, w] = ((b*7 + c*5 + h*3 + w) % 17) / 8 - 1   (values in [-1, 1])."""
    b, c, h, w = torch.meshgrid(torch.arange(n), torch.arange(3), torch.arange(16), torch.arange(16), indexing="ij")
    return ((b * 7 + c * 5 + h * 3 + w) % 17).float() / 8 - 1


# (a) traced, nested Sequential paths ----------------------------------------------

class TinyTraced(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())           # [4,16,16]
        self.block1 = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(4, 8, 3, padding=1)),
            ("relu", nn.ReLU()),
            ("pool", nn.MaxPool2d(2)),                                                       # [8,8,8]
        ]))
        self.block2 = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(8, 8, 3, padding=1)),
            ("inner", nn.Sequential(nn.ReLU(), nn.AvgPool2d(2))),                            # [8,4,4]
        ]))
        self.head = nn.Linear(8 * 4 * 4, 3)

    def forward(self, x):
        x = self.block2(self.block1(self.features(x)))
        return self.head(torch.flatten(x, 1))


# (b) scripted, control flow, one submodule class used several times -------------

class ConvReLU(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x))


class TinyScripted(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.blocks = nn.ModuleList([ConvReLU(8), ConvReLU(8)])   # same class as `gate`: one TorchScript type
        self.gate = ConvReLU(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x)
        for blk in self.blocks:             # loop over submodules (unrolled by the compiler)
            x = x + blk(x)                  # residual
        if bool(x.sum() > 0):               # data-dependent branch; true for any input after the ReLUs
            x = self.gate(x)                # unless every activation is 0
        else:
            x = x * 0.5
        return self.fc(torch.flatten(self.pool(x), 1))


# (c) frozen: requires_grad=False everywhere -------------------------------------------

class Frozen(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, 6, 3, padding=1)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),        # [6,8,8]
            ("conv2", nn.Conv2d(6, 8, 3, padding=1)),
            ("relu2", nn.ReLU()),              # [8,8,8]
        ]))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(8, 3)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# (d) planted: an answer a test can derive by hand ----------------------------------------

class Planted(nn.Module):
    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(3, 2, 1)                     # 1x1 conv, linear
        self.head = nn.Sequential(OrderedDict([
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(2, 2)),
        ]))
        with torch.no_grad():
            self.feat.weight.zero_()
            self.feat.bias.zero_()
            self.feat.weight[0, 0, 0, 0] = 1.0   # feat[:,0] = red input channel
            self.feat.weight[1, 2, 0, 0] = 1.0   # feat[:,1] = blue input channel
            self.head.fc.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
            self.head.fc.bias.copy_(torch.tensor([0.5, -0.5]))

    def forward(self, x):
        return self.head(self.feat(x))


def paths_and_shapes(model, x):
    shapes, hooks = {}, []
    for name, mod in model.named_modules():
        if name:
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, name=name: shapes.__setitem__(name, list(o.shape[1:]))))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return OrderedDict((n, shapes.get(n)) for n, _ in model.named_modules() if n)


def main():
    torch.set_num_threads(1)
    x = reference_input()
    expected = OrderedDict()
    expected["reference_input"] = {
        "shape": list(x.shape),
        "formula": "x[b,c,h,w] = ((b*7 + c*5 + h*3 + w) % 17) / 8 - 1",
    }
    for i, (name, cls, mode) in enumerate([
            ("tiny_traced", TinyTraced, "trace"),
            ("tiny_scripted", TinyScripted, "script"),
            ("frozen", Frozen, "trace"),
            ("planted", Planted, "trace")]):
        torch.manual_seed(1000 + i)
        model = cls().eval()
        if name == "frozen":
            for p in model.parameters():
                p.requires_grad_(False)
        with torch.no_grad():
            ts = torch.jit.trace(model, x) if mode == "trace" else torch.jit.script(model)
        path = os.path.join(HERE, name + ".pt")
        ts.save(path)
        loaded = torch.jit.load(path)
        with torch.no_grad():
            out, ref = loaded(x), model(x)
        assert torch.allclose(out, ref, atol=1e-6), name
        grads = sorted({p.requires_grad for p in loaded.parameters()})
        expected[name] = OrderedDict([
            ("file", name + ".pt"),
            ("mode", mode),
            ("input", [1] + list(IN_SHAPE)),
            ("output", list(out.shape[1:])),
            ("parameters_require_grad", grads),
            ("modules", paths_and_shapes(model, x)),
            ("reference_logits", [[round(v, 6) for v in row] for row in out.tolist()]),
        ])
        print("%-18s %6d bytes  %s  output %s  requires_grad %s" % (
            name + ".pt", os.path.getsize(path), mode, list(out.shape), grads))
        print("    " + ", ".join("%s %s" % (k, v) for k, v in expected[name]["modules"].items()))
    text = json.dumps(expected, indent=1)
    # one line per innermost list: shapes and logit rows stay readable
    text = re.sub(r"\[([^\[\]{}]*)\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
