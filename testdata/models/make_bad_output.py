#!/usr/bin/env python3
"""Write map_output.pt: a model whose output is a feature map [N, 4, 16, 16],
not [N, classes].

    /usr/bin/python3 testdata/models/make_bad_output.py    # from the repository root

Input [N, 3, 16, 16]; one conv `feat`; traced; deterministic (seed 7).
"""
import os

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))


class MapOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.feat(x)


torch.manual_seed(7)
torch.set_num_threads(1)
traced = torch.jit.trace(MapOutput().eval(), torch.rand(2, 3, 16, 16))
traced.save(os.path.join(HERE, "map_output.pt"))
