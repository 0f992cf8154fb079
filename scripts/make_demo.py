#!/usr/bin/env python3
"""Build cavforge's self-contained demo: procedural textures + a small CNN.

Writes, under testdata/demo/ (or --out):
  data/<set>/NNN.png   64x64 RGB images
      classes:  zebra (stripes), dalmatian (dots), honeycomb (hex lattice), plain (smooth)
      concepts: striped, dotted, zigzagged, checkered (drawn unlike the classes:
                other colours, scales and shapes, so the concept is the texture)
      random:   random500_0 .. random500_9 (natural-ish clutter, one seed per set)
      random_pool: 2000 more images from the same generator, one stream, for
                `tcav.random.from` (many disjoint random sets: the calibrated
                significance test needs about 1/alpha of them)
  model.pt     the CNN, torch.jit.trace'd, eval mode, input [N,3,64,64] normalized
               with mean 0.5 / std 0.25 per channel (normalization is NOT in the model)
  labels.txt   class names, one per line, in output-index order

30 images per class and concept set, 30 per random set; pixel levels are
multiples of 4 (+2) to keep the PNGs small (~2.7 MB in all).

The CNN (block1..3 = conv/bn/relu/maxpool, pool = global max, fc = MLP) trains
on separately generated images (never the written ones), on the CPU, in about
a minute: colour-augmented (so classes differ by texture, not colour), with
softmax cross-entropy plus one-vs-rest BCE whose targets give background
clutter (half of the `plain` training images) a prior of 0.3 for each texture
class. That makes each logit an absolute detector of its texture, lower on the
other textures than on clutter, so a logit-gradient TCAV is meaningful:
striped is important for zebra, dotted is not.

At the end an independent TCAV check (written here in PyTorch: activations by
forward hooks, CAVs by mean-diff, logistic regression and an SGD linear SVM as
scikit-learn's, two-sample t-test against random-vs-random, Bonferroni over
the four concepts) runs on the written PNGs with the weights read back from
model.pt, and prints the scores; `--check-only` reruns just that check.

Everything is seeded: two runs write the same PNG bytes and, with the same
torch build and checkout path, a byte-identical model.pt.

Usage:  /usr/bin/python3 scripts/make_demo.py [--out testdata/demo] [--seed 0] [--pool-only]
"""
import argparse
import os
import sys

# TorchScript writes module constants in Python-set order, which depends on string
# hashing: pin the hash seed so that saved files are byte-identical run to run.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
import shutil
import time
import zlib
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

SIZE = 64
CLASSES = ["zebra", "dalmatian", "honeycomb", "plain"]
CONCEPTS = ["striped", "dotted", "zigzagged", "checkered"]
N_RANDOM = 10
MEAN = 0.5
STD = 0.25
N_CLASS_IMAGES = 30
N_CONCEPT_IMAGES = 30
N_RANDOM_IMAGES = 30
N_POOL_IMAGES = 2000
POOL = "random_pool"
N_TRAIN_PER_CLASS = 600
N_VAL_PER_CLASS = 150
CLUTTER_PRIOR = 0.3


# ----------------------------------------------------------------------------
# procedural images (float32 HxWx3 in [0,1])
# ----------------------------------------------------------------------------

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)


def rng_for(seed, name):
    """Independent, order-free stream per (seed, name)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def rotated(rng):
    th = rng.uniform(0, np.pi)
    cx, cy = rng.uniform(0, SIZE, 2)
    x, y = _XX - cx, _YY - cy
    c, s = np.cos(th), np.sin(th)
    return x * c + y * s, -x * s + y * c


def smooth_field(rng, cells, channels=1):
    """Smooth noise: a cells x cells normal grid, bicubically upsampled."""
    g = torch.from_numpy(rng.standard_normal((1, channels, cells + 3, cells + 3)).astype(np.float32))
    up = F.interpolate(g, size=(SIZE * (cells + 3) // cells,) * 2, mode="bicubic", align_corners=False)
    o = (up.shape[-1] - SIZE) // 2
    return up[0, :, o:o + SIZE, o:o + SIZE].permute(1, 2, 0).numpy()


def mix(c0, c1, m):
    m = m[..., None]
    return np.asarray(c0, np.float32) * (1 - m) + np.asarray(c1, np.float32) * m


def sat_colour(rng, s_lo=0.5, v_lo=0.35):
    """A random saturated colour (HSV -> RGB)."""
    h, s, v = rng.uniform(0, 1), rng.uniform(s_lo, 1), rng.uniform(v_lo, 1)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], np.float32)


def colour_pair(rng):
    """Two random colours that differ clearly (so a pattern is visible)."""
    while True:
        a, b = sat_colour(rng), sat_colour(rng, s_lo=0.2, v_lo=0.1)
        if np.abs(a - b).sum() > 0.9:
            return a, b


def finish(rng, img, light=0.12):
    """Uneven lighting + (for half of the images) sensor noise, clipped to [0,1].
    Noise is kept low and rare: it is what makes PNGs big."""
    img = img * (1 + light * smooth_field(rng, 2))
    sigma = rng.uniform(0.004, 0.02) if rng.uniform() < 0.5 else 0.0
    noise = rng.standard_normal(img.shape).astype(np.float32)  # drawn always: stable streams
    return np.clip(img + sigma * noise, 0, 1)


def tri(t):
    """Triangle wave in [-1, 1] with period 1."""
    return 4 * np.abs(t - np.floor(t + 0.5)) - 1


# -- classes -----------------------------------------------------------------

def gen_zebra(rng):
    u, v = rotated(rng)
    period = rng.uniform(5, 18)
    warp = rng.uniform(0, 3.5) * np.sin(2 * np.pi * v / rng.uniform(20, 70) + rng.uniform(0, 6.3))
    s = np.sin(2 * np.pi * (u + warp) / period)
    m = 0.5 + 0.5 * np.tanh(rng.uniform(1.5, 6) * s)
    dark = rng.uniform(0, 0.2) + rng.uniform(-0.05, 0.05, 3)
    lite = rng.uniform(0.75, 1.0) + rng.uniform(-0.1, 0.05, 3)
    return finish(rng, mix(dark, lite, m))


def soft_dots(rng, n, r_lo, r_hi, centres=None):
    """Max over n soft-edged ellipses; returns mask in [0,1]."""
    if centres is None:
        centres = rng.uniform(-4, SIZE + 4, (n, 2))
    n = len(centres)
    r = rng.uniform(r_lo, r_hi, n)
    ecc = rng.uniform(0.75, 1.33, n)
    th = rng.uniform(0, np.pi, n)
    dx = _XX[None] - centres[:, 0, None, None]
    dy = _YY[None] - centres[:, 1, None, None]
    c, s = np.cos(th)[:, None, None], np.sin(th)[:, None, None]
    a = (dx * c + dy * s) * ecc[:, None, None]
    b = (-dx * s + dy * c) / ecc[:, None, None]
    d = np.sqrt(a * a + b * b)
    m = 1 / (1 + np.exp(-2.5 * (r[:, None, None] - d)))
    return m.max(0)


def jittered_grid(rng, step, jitter):
    off = rng.uniform(0, step, 2)
    gx, gy = np.meshgrid(np.arange(-1, SIZE / step + 1), np.arange(-1, SIZE / step + 1))
    c = np.stack([(gx * step + off[0]).ravel(), (gy * step + off[1]).ravel()], 1)
    return c + rng.uniform(-jitter, jitter, c.shape) * step


def gen_dalmatian(rng):
    r_hi = rng.uniform(2.5, 5.5)
    if rng.uniform() < 0.3:  # spots spread evenly (up to a regular grid) rather than at random
        m = soft_dots(rng, 0, r_hi * 0.5, r_hi,
                      centres=jittered_grid(rng, rng.uniform(2.6, 4.5) * r_hi, rng.uniform(0, 0.35)))
    else:
        m = soft_dots(rng, int(rng.uniform(0.6, 1.6) * 2000 / (r_hi * r_hi * 4)), r_hi * 0.45, r_hi)
    bg = rng.uniform(0.8, 1.0) + rng.uniform(-0.06, 0.04, 3)
    dot = rng.uniform(0.0, 0.18) + rng.uniform(-0.04, 0.04, 3)
    return finish(rng, mix(bg, dot, m))


def hex_field(rng, period):
    """Hexagonal distance to the nearest centre of a triangular lattice with
    spacing `period`, scaled so that 1 is on a cell wall (hexagonal Voronoi cells)."""
    u, v = rotated(rng)
    h = period * np.sqrt(3) / 2
    j0 = np.floor(v / h)
    i0 = np.floor((u - j0 * period / 2) / period)
    best = np.full(u.shape, np.inf, np.float32)
    ru, rv = np.zeros_like(u), np.zeros_like(v)
    for di in (-1, 0, 1):
        for dj in (0, 1):
            i, j = i0 + di, j0 + dj
            du, dv = u - (i * period + j * period / 2), v - j * h
            d = du * du + dv * dv
            closer = d < best
            best = np.where(closer, d, best)
            ru, rv = np.where(closer, du, ru), np.where(closer, dv, rv)
    d = 0
    for a in (0, np.pi / 3, 2 * np.pi / 3):  # normals of the hexagon's edges
        d = np.maximum(d, np.abs(ru * np.cos(a) + rv * np.sin(a)))
    return d / (period / 2)


def gen_honeycomb(rng):
    period = rng.uniform(9, 18)
    d = hex_field(rng, period)
    wall_w = rng.uniform(1.0, 2.2) / (period / 2)  # wall half-width, in units of d
    m = 1 / (1 + np.exp(-(d - 1 + wall_w) * period * rng.uniform(1, 2)))  # 1 on walls
    cell = np.array([rng.uniform(0.8, 1.0), rng.uniform(0.5, 0.75), rng.uniform(0.05, 0.3)], np.float32)
    cell_img = cell * (1 - rng.uniform(0, 0.35) * (1 - d[..., None]) ** 2)  # darker honey in the middle
    if rng.uniform() < 0.5:
        wall = cell * rng.uniform(0.25, 0.5)          # dark wax walls
    else:
        wall = np.minimum(cell + rng.uniform(0.2, 0.4), 1)  # pale walls
    m = m[..., None]
    return finish(rng, cell_img * (1 - m) + wall * m)


def gen_plain(rng):
    base = sat_colour(rng, s_lo=0.0, v_lo=0.2)
    img = base + rng.uniform(0.05, 0.3) * smooth_field(rng, int(rng.integers(1, 5)), 3)
    if rng.uniform() < 0.5:
        u, _ = rotated(rng)
        img = img + rng.uniform(0.1, 0.4) * (u / SIZE)[..., None] * (sat_colour(rng) - 0.5)
    return finish(rng, img)


# -- concepts (deliberately unlike the class images) ---------------------------

def gen_striped(rng):
    u, _ = rotated(rng)
    period = rng.uniform(3.5, 24)
    if rng.uniform() < 0.3:  # three-colour stripes
        cols = [sat_colour(rng) for _ in range(3)]
        idx = np.floor(3 * (u / period - np.floor(u / period))).astype(int)
        img = np.stack(cols)[idx]
    else:
        c0, c1 = colour_pair(rng)
        s = np.sin(2 * np.pi * u / period) - rng.uniform(-0.5, 0.5)  # varied duty cycle
        img = mix(c0, c1, 0.5 + 0.5 * np.tanh(rng.uniform(3, 12) * s))
    return finish(rng, img)


def gen_dotted(rng):
    c_bg, c_dot = colour_pair(rng)
    if rng.uniform() < 0.4:  # polka-dot grid
        step = rng.uniform(7, 16)
        off = rng.uniform(0, step, 2)
        gx, gy = np.meshgrid(np.arange(-1, SIZE / step + 1), np.arange(-1, SIZE / step + 1))
        gx = gx * step + off[0] + (gy % 2) * step / 2 * (rng.uniform() < 0.5)
        cent = np.stack([gx.ravel(), (gy * step + off[1]).ravel()], 1)
        r = rng.uniform(1.5, min(6, step / 2.6))
        m = soft_dots(rng, 0, r * 0.9, r * 1.1, centres=cent)
    else:
        m = soft_dots(rng, rng.integers(10, 50), 1.2, rng.uniform(2.5, 7))
    return finish(rng, mix(c_bg, c_dot, m))


def gen_zigzagged(rng):
    u, v = rotated(rng)
    amp, p2 = rng.uniform(2.5, 8), rng.uniform(8, 20)
    period = rng.uniform(6, 18)
    s = np.sin(2 * np.pi * (u + amp * tri(v / p2)) / period)
    c0, c1 = colour_pair(rng)
    return finish(rng, mix(c0, c1, 0.5 + 0.5 * np.tanh(rng.uniform(3, 10) * s)))


def gen_checkered(rng):
    u, v = rotated(rng)
    sq = rng.uniform(4, 14)
    s = np.sin(np.pi * u / sq) * np.sin(np.pi * v / sq)
    c0, c1 = colour_pair(rng)
    return finish(rng, mix(c0, c1, 0.5 + 0.5 * np.tanh(rng.uniform(4, 15) * s)))


# -- random "natural-ish" images --------------------------------------------------

def gen_random(rng):
    k = rng.uniform()
    if k < 0.4:
        img = sat_colour(rng, 0, 0.1) + rng.uniform(0.1, 0.5) * smooth_field(rng, int(rng.integers(2, 12)), 3)
    elif k < 0.7:
        img = np.broadcast_to(sat_colour(rng, 0, 0.1), (SIZE, SIZE, 3)).copy()
    else:
        u, _ = rotated(rng)
        img = mix(sat_colour(rng, 0, 0.1), sat_colour(rng, 0, 0.1), np.clip(u / SIZE + 0.5, 0, 1))
    for _ in range(rng.integers(0, 8)):  # blobs ("objects")
        m = soft_dots(rng, 1, 4, 24)
        if rng.uniform() < 0.5:
            m = np.clip(m * rng.uniform(1, 3), 0, 1) ** rng.uniform(0.3, 1)
        img = img * (1 - m[..., None]) + m[..., None] * sat_colour(rng, 0, 0.1)
    for _ in range(rng.integers(0, 6)):  # hard-edged shapes (rotated rectangles)
        u, v = rotated(rng)
        w, h = rng.uniform(3, 30, 2)
        m = ((np.abs(u) < w) & (np.abs(v) < h)).astype(np.float32)
        img = img * (1 - m[..., None]) + m[..., None] * sat_colour(rng, 0, 0.1)
    if rng.uniform() < 0.6:  # mid-frequency clutter
        img = img + rng.uniform(0.03, 0.15) * smooth_field(rng, int(rng.integers(8, 16)), 3)
    if rng.uniform() < 0.15:  # occasionally a weak texture
        gen = [gen_striped, gen_dotted, gen_zigzagged, gen_checkered, gen_zebra,
               gen_dalmatian, gen_honeycomb][rng.integers(0, 7)]
        a = rng.uniform(0.08, 0.2)
        img = (1 - a) * img + a * gen(rng)
    return finish(rng, img)


GENERATORS = {
    "zebra": gen_zebra, "dalmatian": gen_dalmatian, "honeycomb": gen_honeycomb, "plain": gen_plain,
    "striped": gen_striped, "dotted": gen_dotted, "zigzagged": gen_zigzagged, "checkered": gen_checkered,
}


def generator(set_name):
    return gen_random if set_name.startswith("random500_") or set_name == POOL else GENERATORS[set_name]


def make_set(seed, stream, set_name, n):
    """n uint8 images of a set; stream separates written, train and val images.
    Levels are quantized to 64 (multiples of 4, +2): invisible, and PNGs ~25% smaller."""
    rng = rng_for(seed, stream + "/" + set_name)
    gen = generator(set_name)
    return [(np.minimum(gen(rng) * 255, 255).astype(np.uint8) // 4 * 4 + 2) for _ in range(n)]


def write_data(out, seed):
    data = os.path.join(out, "data")
    if os.path.isdir(data):
        shutil.rmtree(data)
    sets = [(c, N_CLASS_IMAGES) for c in CLASSES] + [(c, N_CONCEPT_IMAGES) for c in CONCEPTS] + \
           [("random500_%d" % i, N_RANDOM_IMAGES) for i in range(N_RANDOM)]
    for name, n in sets:
        write_set(data, seed, name, n)
    write_set(data, seed, POOL, N_POOL_IMAGES)
    return [s for s, _ in sets] + [POOL]


def write_set(data, seed, name, n):
    d = os.path.join(data, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    for i, im in enumerate(make_set(seed, "written", name, n)):
        Image.fromarray(im).save(os.path.join(d, "%04d.png" % i if n > 1000 else "%03d.png" % i), optimize=True)


# ----------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------

def block(cin, cout):
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(cin, cout, 3, padding=1)),
        ("bn", nn.BatchNorm2d(cout)),
        ("relu", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)),
    ]))


class DemoNet(nn.Module):
    """64x64 -> block1 [16,32,32] -> block2 [32,16,16] -> block3 [64,8,8]
    -> pool (global max) [64,1,1] -> fc (hidden 64, relu, out 4)."""

    def __init__(self, n_classes=len(CLASSES)):
        super().__init__()
        self.block1 = block(3, 16)
        self.block2 = block(16, 32)
        self.block3 = block(32, 64)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Sequential(OrderedDict([
            ("hidden", nn.Linear(64, 64)),
            ("relu", nn.ReLU()),
            ("out", nn.Linear(64, n_classes)),
        ]))

    def forward(self, x):
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def to_input(images):
    """uint8 HxWx3 list -> normalized float tensor [N,3,H,W] (what the pipeline does)."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return (x - MEAN) / STD


def dataset(seed, stream, n_per_class):
    """Training/held-out images, from their own streams (never the written ones).
    `plain` doubles as the background class: half of its training images are
    random clutter (gen_random), so that clutter and blobs are not 'dots'."""
    xs, ys = [], []
    for k, c in enumerate(CLASSES):
        if c == "plain":
            xs += make_set(seed, stream, c, n_per_class - n_per_class // 2)
            xs += make_set(seed, stream, "random500_clutter", n_per_class // 2)
        else:
            xs += make_set(seed, stream, c, n_per_class)
        ys += [k] * n_per_class
    # one-vs-rest targets: one-hot, except that clutter gets a small prior for every
    # texture class. A texture class's logit is then lower on another class's texture
    # than on featureless clutter: dots are evidence *against* zebra.
    t = F.one_hot(torch.tensor(ys), len(CLASSES)).float()
    k = CLASSES.index("plain")
    clutter = torch.arange(len(ys)) >= k * n_per_class + n_per_class - n_per_class // 2
    t[clutter, :k] = CLUTTER_PRIOR
    return to_input(xs), torch.tensor(ys), t


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def recolour(xb, g):
    """Training-time colour augmentation on a normalized batch: random channel
    order, and for half of the images a random two-colour palette (grey level
    t -> (1-t)*c0 + t*c1). Classes then differ by texture, not by colour."""
    n = len(xb)
    x = xb * STD + MEAN
    perm = torch.stack([torch.randperm(3, generator=g) for _ in range(n)])
    x = torch.gather(x, 1, perm[:, :, None, None].expand_as(x))
    c0, c1 = torch.rand(n, 3, 1, 1, generator=g), torch.rand(n, 3, 1, 1, generator=g)
    t = x.mean(1, keepdim=True)
    pal = (1 - t) * c0 + t * c1
    use = (torch.rand(n, 1, 1, 1, generator=g) < 0.5)
    x = torch.where(use, pal, x)
    return (x - MEAN) / STD


def train(seed, epochs):
    t0 = time.time()
    xtr, ytr, ttr = dataset(seed, "train", N_TRAIN_PER_CLASS)
    xva, yva, _ = dataset(seed, "val", N_VAL_PER_CLASS)
    print("generated %d train / %d held-out images in %.1fs" % (len(ytr), len(yva), time.time() - t0))
    torch.manual_seed(seed)
    model = DemoNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * ((len(ytr) + 63) // 64))
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(ytr), generator=g)
        tot = 0.0
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            xb = xtr[idx]
            flip = torch.rand(len(idx), generator=g)
            xb = torch.where((flip < 0.5)[:, None, None, None], xb.flip(3), xb)  # textures: flips are free
            xb = recolour(xb, g)
            logits = model(xb)
            # softmax cross-entropy + one-vs-rest BCE: the second term makes each logit an
            # absolute detector of its own texture (low on the others), which is what
            # a logit-gradient TCAV looks at.
            loss = F.cross_entropy(logits, ytr[idx]) + F.binary_cross_entropy_with_logits(logits, ttr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        model.eval()
        print("epoch %d  loss %.4f  held-out acc %.3f  (%.0fs)" % (
            ep + 1, tot / len(ytr), accuracy(model, xva, yva), time.time() - t0))
    model.eval()
    return model, accuracy(model, xtr, ytr), accuracy(model, xva, yva)


# ----------------------------------------------------------------------------
# independent TCAV check (PyTorch), on the written PNGs
# ----------------------------------------------------------------------------

def load_set(out, name, limit=40):
    d = os.path.join(out, "data", name)
    files = sorted(f for f in os.listdir(d) if f.endswith(".png"))[:limit]
    return to_input([np.asarray(Image.open(os.path.join(d, f)).convert("RGB")) for f in files])


def acts_and_grads(model, layer, x, target=None):
    """Activations at `layer` (flattened) and, if target given, d logit[target] / d act."""
    mod = dict(model.named_modules())[layer]
    store = {}

    def hook(m, i, o):
        o.retain_grad()
        store["a"] = o

    h = mod.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(x)
            if target is None:
                return store["a"].detach().flatten(1), None
            logits[:, target].sum().backward()  # per-example grads: examples are independent in eval
            return store["a"].detach().flatten(1), store["a"].grad.flatten(1)
    finally:
        h.remove()


def fit_cav(pos, neg, kind, seed):
    """CAV pointing toward `pos`, unit norm; returns (cav, held-out accuracy)."""
    n = min(len(pos), len(neg))
    g = torch.Generator().manual_seed(seed)
    pos, neg = pos[torch.randperm(len(pos), generator=g)[:n]], neg[torch.randperm(len(neg), generator=g)[:n]]
    nte = max(1, int(round(n * 0.33)))
    xtr = torch.cat([pos[nte:], neg[nte:]])
    ytr = torch.cat([torch.ones(n - nte), -torch.ones(n - nte)])
    xte = torch.cat([pos[:nte], neg[:nte]])
    yte = torch.cat([torch.ones(nte), -torch.ones(nte)])
    if kind == "mean-diff":
        w = pos[nte:].mean(0) - neg[nte:].mean(0)
        b = -(w * (pos[nte:].mean(0) + neg[nte:].mean(0)) / 2).sum()
    elif kind == "sgd-hinge":
        # linear SVM by plain SGD, as scikit-learn's SGDClassifier (the reference):
        # hinge loss, L2 alpha 0.01, "optimal" rate 1/(alpha (t + t0)), 50 epochs
        alpha = 0.01
        X, Y = xtr.double().numpy(), ytr.double().numpy()
        w, b = np.zeros(X.shape[1]), 0.0
        t0 = 1 / (np.sqrt(1 / np.sqrt(alpha)) * alpha)
        t = 1.0
        rng = np.random.default_rng(seed)
        for _ in range(50):
            for i in rng.permutation(len(Y)):
                eta = 1 / (alpha * (t0 + t - 1))
                margin = Y[i] * (X[i] @ w + b)
                w *= 1 - eta * alpha
                if margin < 1:
                    w += eta * Y[i] * X[i]
                    b += eta * Y[i]
                t += 1
        w, b = torch.from_numpy(w).float(), float(b)
    else:
        scale = xtr.abs().mean() + 1e-8
        w = torch.zeros(xtr.shape[1], requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        opt = torch.optim.Adam([w, b], lr=0.05)
        for _ in range(300):
            m = ytr * (xtr / scale @ w + b)
            if kind == "logistic":
                loss = F.softplus(-m).mean() + 0.5 * 1e-2 * (w * w).sum()
            else:  # sgd-hinge-like: linear SVM, L2 alpha 0.01
                loss = F.relu(1 - m).mean() + 0.5 * 1e-2 * (w * w).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        w, b = w.detach() / scale, b.detach()
    acc = ((xte @ w + b).sign() == yte).float().mean().item()
    return w / w.norm(), acc


def tcav_check(out, model, layers, target="zebra", concepts=CONCEPTS, kinds=("mean-diff", "logistic", "sgd-hinge")):
    from scipy import stats
    k = CLASSES.index(target)
    x_cls = load_set(out, target)
    randoms = ["random500_%d" % i for i in range(N_RANDOM)]
    sets = {s: load_set(out, s) for s in list(concepts) + randoms}
    with torch.no_grad():
        print("share of images predicted as each class (%s):" % ", ".join(CLASSES))
        for s in list(CLASSES) + list(concepts) + randoms[:3]:
            xs = load_set(out, s)
            p = torch.bincount(model(xs).argmax(1), minlength=len(CLASSES)).float() / len(xs)
            print("  %-12s %s" % (s, " ".join("%.2f" % v for v in p)))
    results = {}
    for layer in layers:
        _, grads = acts_and_grads(model, layer, x_cls, k)
        acts = {s: acts_and_grads(model, layer, x)[0] for s, x in sets.items()}
        for kind in kinds:
            def score(pos, neg, seed):
                cav, acc = fit_cav(acts[pos], acts[neg], kind, seed)
                d = grads @ cav
                return (d > 0).float().mean().item(), acc
            rr = [score(randoms[i], randoms[(i + 1) % N_RANDOM], 1000 + i)[0] for i in range(N_RANDOM)]
            print("[%s, %s] random-vs-random: mean %.3f std %.3f" % (layer, kind, np.mean(rr), np.std(rr)))
            for ci, c in enumerate(concepts):
                sc = [score(c, r, 100 * ci + i) for i, r in enumerate(randoms)]
                s = [v for v, _ in sc]
                p = stats.ttest_ind(s, rr).pvalue if np.std(s) + np.std(rr) > 0 else (1.0 if np.mean(s) == np.mean(rr) else 0.0)
                sig = p < 0.05 / len(concepts)
                results[(layer, kind, c)] = (np.mean(s), p, sig)
                print("  %-10s TCAV mean %.3f std %.3f  cav acc %.2f  p %.2g  %s" % (
                    c, np.mean(s), np.std(s), np.mean([a for _, a in sc]), p,
                    ("significant " + ("above" if np.mean(s) > np.mean(rr) else "below")) if sig else "not significant"))
    return results


def load_exported(out):
    ts = torch.jit.load(os.path.join(out, "model.pt"))
    model = DemoNet()
    model.load_state_dict(ts.state_dict())
    return model.eval(), ts


def main():
    ap = argparse.ArgumentParser(description="build testdata/demo")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "testdata", "demo"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--check-layers", default="block2,block3")
    ap.add_argument("--check-cav", default="mean-diff,logistic,sgd-hinge")
    ap.add_argument("--check-only", action="store_true", help="only run the TCAV check on an existing demo")
    ap.add_argument("--pool-only", action="store_true",
                    help="only (re)write data/%s, leaving the model and the other sets as they are" % POOL)
    args = ap.parse_args()
    torch.set_num_threads(1)  # reproducible float sums; the model is tiny
    out = os.path.normpath(args.out)

    if args.pool_only:
        t0 = time.time()
        write_set(os.path.join(out, "data"), args.seed, POOL, N_POOL_IMAGES)
        print("wrote %d images to %s in %.1fs" % (N_POOL_IMAGES, os.path.join(out, "data", POOL), time.time() - t0))
        return 0
    if not args.check_only:
        t0 = time.time()
        sets = write_data(out, args.seed)
        print("wrote %d image sets to %s in %.1fs" % (len(sets), os.path.join(out, "data"), time.time() - t0))
        model, acc_tr, acc_va = train(args.seed, args.epochs)
        print("train accuracy %.4f, held-out accuracy %.4f" % (acc_tr, acc_va))
        with torch.no_grad():
            ts = torch.jit.trace(model, torch.zeros(1, 3, SIZE, SIZE))
        ts.save(os.path.join(out, "model.pt"))
        with open(os.path.join(out, "labels.txt"), "w") as f:
            f.write("\n".join(CLASSES) + "\n")
        print("wrote %s (%d bytes), labels.txt" % (os.path.join(out, "model.pt"), os.path.getsize(os.path.join(out, "model.pt"))))

    model, ts = load_exported(out)
    x = torch.cat([load_set(out, c) for c in CLASSES])
    y = torch.cat([torch.full((len(load_set(out, c)),), i) for i, c in enumerate(CLASSES)])
    with torch.no_grad():
        err = (ts(x) - model(x)).abs().max().item()
        print("accuracy on the written class images: %.4f (traced vs eager max |diff| %.2g)" % (
            (ts(x).argmax(1) == y).float().mean().item(), err))
    print("module paths: " + ", ".join(n for n, _ in ts.named_modules() if n))
    tcav_check(out, model, args.check_layers.split(","), kinds=args.check_cav.split(","))


if __name__ == "__main__":
    sys.exit(main())
