#!/usr/bin/env python3
"""Write nan_gradient.pt: a model whose class gradients at `feat` are not
finite while its activations there are.

    /usr/bin/python3 testdata/models/make_nan_gradient.py    # from the repository root

`feat` is relu(conv(x)), so it holds exact zeros; the logits are sums of
sqrt(feat), whose gradient 1/(2 sqrt(feat)) is +Inf at those zeros. Input
[N, 3, 16, 16], 4 classes, traced; deterministic (seed 7, one thread).
"""
import os

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))


class Root(nn.Module):
    def forward(self, a):
        return torch.sqrt(a)


class NaNGradient(nn.Module):
    def __init__(self):
        super().__init__()
        self.feat = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.root = Root()
        self.head = nn.Linear(4 * 16 * 16, 4)

    def forward(self, x):
        return self.head(torch.flatten(self.root(self.feat(x)), 1))


torch.manual_seed(7)
torch.set_num_threads(1)
m = NaNGradient().eval()
traced = torch.jit.trace(m, torch.rand(2, 3, 16, 16))
traced.save(os.path.join(HERE, "nan_gradient.pt"))
