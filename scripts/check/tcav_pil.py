#!/usr/bin/env python3
"""TCAV the way an analyst's own Python pipeline computes it, to check that
poisoned sets written by cavforge hold up outside cavforge.

Images are opened with PIL, converted to RGB and resized with PIL's bilinear
filter straight to the model's input size; activations and class gradients
come from PyTorch autograd on the TorchScript model; CAVs are L2-regularised
logistic regressions fitted with numpy. Nothing here shares code with
cavforge.

The model must run its named children in order (block1 -> ... -> a global
pool -> flatten -> a head), as the bundled demo model does: TorchScript
modules take no forward hooks, so the layer is reached by calling children.

Usage:
  /usr/bin/python3 scripts/check/tcav_pil.py --model M.pt --size 64 \
      --mean 0.5 0.5 0.5 --std 0.25 0.25 0.25 --layer block3 --target 0 \
      --class-dir data/zebra --concept clean=data/striped \
      --concept poisoned=run/attack/X --random data/random500_5 ...
Prints one JSON object: per concept, the TCAV score against each random set.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from PIL import Image


def load_set(folder, size, mean, std):
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".png", ".jpg", ".jpeg")))
    xs = []
    for n in names:
        im = Image.open(os.path.join(folder, n)).convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
        xs.append(np.asarray(im, dtype=np.float32) / 255.0)
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def split(model, layer):
    children = list(model.named_children())
    names = [n for n, _ in children]
    if layer not in names:
        sys.exit("layer %s is not a top-level child (%s)" % (layer, ", ".join(names)))
    k = names.index(layer) + 1

    def head_in(x):
        for _, c in children[:k]:
            x = c(x)
        return x

    def tail(a):
        for i, (_, c) in enumerate(children[k:]):
            if i == len(children[k:]) - 1:
                a = torch.flatten(a, 1)
            a = c(a)
        return a

    return head_in, tail


def fit_cav(pos, neg, alpha=0.01, steps=500, lr=0.5, seed=0):
    """Unit weight vector of an L2-regularised logistic regression, concept = 1."""
    n = min(len(pos), len(neg))
    rng = np.random.default_rng(seed)
    pos, neg = pos[rng.permutation(len(pos))[:n]], neg[rng.permutation(len(neg))[:n]]
    x = np.concatenate([pos, neg]).astype(np.float64)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    scale = np.abs(x).mean() + 1e-12
    x = x / scale
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(x @ w + b, -50, 50)))
        g = x.T @ (p - y) / len(y) + alpha * w
        w -= lr * g
        b -= lr * float(np.mean(p - y))
    return w / (np.linalg.norm(w) + 1e-12)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, nargs="+", required=True)
    ap.add_argument("--mean", type=float, nargs=3, default=[0.485, 0.456, 0.406])
    ap.add_argument("--std", type=float, nargs=3, default=[0.229, 0.224, 0.225])
    ap.add_argument("--layer", required=True)
    ap.add_argument("--target", type=int, required=True)
    ap.add_argument("--class-dir", required=True)
    ap.add_argument("--concept", action="append", required=True, help="NAME=DIR")
    ap.add_argument("--random", nargs="+", required=True)
    a = ap.parse_args()
    size = a.size if len(a.size) == 2 else a.size * 2
    torch.set_grad_enabled(True)
    model = torch.jit.load(a.model).eval()
    head_in, tail = split(model, a.layer)

    def acts(folder):
        with torch.no_grad():
            return head_in(load_set(folder, size, a.mean, a.std)).flatten(1).numpy()

    act = head_in(load_set(a.class_dir, size, a.mean, a.std)).detach().requires_grad_(True)
    logit = tail(act)[:, a.target].sum()
    grads = torch.autograd.grad(logit, act)[0].flatten(1).numpy()
    randoms = [acts(r) for r in a.random]
    out = {}
    for spec in a.concept:
        name, folder = spec.split("=", 1)
        c = acts(folder)
        scores = [float(np.mean(grads @ fit_cav(c, r, seed=i) > 0)) for i, r in enumerate(randoms)]
        out[name] = {"scores": scores, "mean": float(np.mean(scores))}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
