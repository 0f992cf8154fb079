#!/usr/bin/env python3
"""Record intermediate activations of tiny_traced.pt, as PyTorch computes
them, for pipeline/model's TestIntermediateActivationsMatchPyTorch.

    /usr/bin/python3 testdata/models/record_activations.py   # from the repository root

Runs the loaded TorchScript module's submodules one after another in the
order of its forward (checked: the composition gives the module's own
logits bit for bit) on the reference input of make_models.py, and writes
activations.json: per layer its shape [C,H,W] and every 5th value of the
flattened [2,C,H,W] batch (stride 5), rounded to 7 significant digits.
"""
import json
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
STRIDE = 5


def reference_input(n=2):
    b, c, h, w = torch.meshgrid(torch.arange(n), torch.arange(3), torch.arange(16), torch.arange(16), indexing="ij")
    return ((b * 7 + c * 5 + h * 3 + w) % 17).float() / 8 - 1


def main():
    torch.set_num_threads(1)
    m = torch.jit.load(os.path.join(HERE, "tiny_traced.pt")).eval()
    x = reference_input()
    out = {}
    with torch.no_grad():
        a = m.features(x)
        out["features"] = a
        a = m.block1.conv(a)
        out["block1.conv"] = a
        a = m.block1.relu(a)
        a = m.block1.pool(a)
        out["block1.pool"] = a
        a = m.block2.conv(a)
        a = getattr(m.block2.inner, "0")(a)
        out["block2.inner.0"] = a
        a = getattr(m.block2.inner, "1")(a)
        out["block2"] = a
        logits = m.head(torch.flatten(a, 1))
        if not torch.equal(logits, m(x)):
            raise SystemExit("the composed submodules do not give the module's logits")
    rec = {"model": "tiny_traced.pt", "stride": STRIDE, "layers": {}}
    for path, t in out.items():
        flat = t.reshape(-1)[::STRIDE].tolist()
        rec["layers"][path] = {"shape": list(t.shape[1:]), "values": [float("%.7g" % v) for v in flat]}
    with open(os.path.join(HERE, "activations.json"), "w") as f:
        json.dump(rec, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
