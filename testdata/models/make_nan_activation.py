#!/usr/bin/env python3
"""Write nan_activation.pt: a model whose activations at `root` are NaN.

    /usr/bin/python3 testdata/models/make_nan_activation.py    # from the repository root

`feat` is conv(x) without a ReLU, so some of its values are negative; `root`
is sqrt(feat), NaN there. Input [N, 3, 16, 16], 4 classes, traced;
deterministic (seed 7, one thread).
"""
import os

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))


class Root(nn.Module):
    def forward(self, a):
        return torch.sqrt(a)


class NaNActivation(nn.Module):
    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(3, 4, 3, padding=1)
        self.root = Root()
        self.head = nn.Linear(4 * 16 * 16, 4)

    def forward(self, x):
        return self.head(torch.flatten(self.root(self.feat(x)), 1))


torch.manual_seed(7)
torch.set_num_threads(1)
m = NaNActivation().eval()
traced = torch.jit.trace(m, torch.rand(2, 3, 16, 16))
traced.save(os.path.join(HERE, "nan_activation.pt"))
