#!/usr/bin/python3
"""Checks of tfjs_to_torchscript.py on variants of the real COCO-SSD graph.

    /usr/bin/python3 scripts/models/converter_selftest.py MODEL_DIR

MODEL_DIR is package/models/coco-ssd from the npm tarball. Each check writes
a modified copy of the model to a temp dir and converts it:
  unknown-op   one Relu6 renamed to an op the converter does not know: the
               error must name the op and the node
  quantized    the weights rewritten the way the TF.js converter quantizes
               them (float16 for most, uint8 and uint16 affine for some): the
               dequantized values must be q*scale+min exactly, and the model
               must give the logits of the same graph with those values
               stored as float32
Prints one line per check; exits 1 if any fails.
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tfjs_to_torchscript as conv  # noqa: E402


def copy_model(src, dst, model_json, weights=None):
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(dst, "model.json"), "w") as f:
        json.dump(model_json, f)
    if weights is None:
        for g in model_json["weightsManifest"]:
            for p in g["paths"]:
                shutil.copyfile(os.path.join(src, p), os.path.join(dst, p))
    else:
        with open(os.path.join(dst, "weights.bin"), "wb") as f:
            f.write(weights)


def check_unknown_op(src, work):
    with open(os.path.join(src, "model.json")) as f:
        mj = json.load(f)
    node = "FeatureExtractor/MobilenetV2/expanded_conv_5/depthwise/Relu6"
    for n in mj["modelTopology"]["node"]:
        if n["name"] == node:
            n["op"] = "Elu"
    d = os.path.join(work, "unknown-op")
    copy_model(src, d, mj)
    try:
        conv.convert(d)
    except conv.ConversionError as e:
        msg = str(e)
        if "Elu" in msg and node in msg:
            return True, "error names the op and the node: %s" % msg
        return False, "error does not name op Elu and node %s: %s" % (node, msg)
    return False, "converted a graph with an unknown op"


def check_quantized(src, work):
    with open(os.path.join(src, "model.json")) as f:
        mj = json.load(f)
    weights = conv.read_weights(src, mj["weightsManifest"])
    blob = bytearray()
    specs = []
    expect = {}
    rng = np.random.default_rng(0)
    for g in mj["weightsManifest"]:
        for w in g["weights"]:
            v = weights[w["name"]]
            spec = dict(w)
            if w["dtype"] == "float32" and v.size >= 64:
                kind = ["float16", "uint8", "uint16"][int(rng.integers(3))] if v.size < 5000 else "float16"
                if kind == "float16":
                    q = v.astype(np.float16)
                    expect[w["name"]] = q.astype(np.float32)
                    spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
                else:
                    levels = 255 if kind == "uint8" else 65535
                    lo, hi = float(v.min()), float(v.max())
                    scale = (hi - lo) / levels if hi > lo else 1.0
                    q = np.round((v - lo) / scale).astype(np.uint8 if kind == "uint8" else np.uint16)
                    expect[w["name"]] = q.astype(np.float32) * np.float32(scale) + np.float32(lo)
                    spec["quantization"] = {"dtype": kind, "scale": scale, "min": lo, "original_dtype": "float32"}
                blob += q.tobytes()
            else:
                blob += v.astype(v.dtype).tobytes()
                expect[w["name"]] = v
            specs.append(spec)
    mj["weightsManifest"] = [{"paths": ["weights.bin"], "weights": specs}]
    d = os.path.join(work, "quantized")
    copy_model(src, d, mj, bytes(blob))
    got = conv.read_weights(d, mj["weightsManifest"])
    for name, want in expect.items():
        if got[name].shape != want.shape or not np.array_equal(got[name], want):
            return False, "weight %s dequantized wrong" % name
    kinds = sorted({s["quantization"]["dtype"] for s in specs if "quantization" in s})
    # The same graph with the dequantized values stored as float32: the
    # quantized model must compute exactly what it computes.
    fblob = bytearray()
    fspecs = []
    for spec in specs:
        fblob += expect[spec["name"]].tobytes()
        fspecs.append({k: v for k, v in spec.items() if k != "quantization"})
    mj["weightsManifest"] = [{"paths": ["weights.bin"], "weights": fspecs}]
    f = os.path.join(work, "dequantized")
    copy_model(src, f, mj, bytes(fblob))
    qmodel, _ = conv.convert(d)
    fmodel, _ = conv.convert(f)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 300, 300)
    with torch.no_grad():
        delta = float((qmodel(x) - fmodel(x)).abs().max())
    if delta > 1e-6:
        return False, "quantized model's logits differ from its dequantized float twin's by %.3g" % delta
    return True, "%s weights dequantized to q*scale+min exactly; logits equal the dequantized twin's" % "/".join(kinds)


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    ok = True
    with tempfile.TemporaryDirectory(prefix="converter-selftest-") as work:
        for name, fn in (("unknown-op", check_unknown_op), ("quantized", check_quantized)):
            passed, msg = fn(argv[0], work)
            print("%s %s: %s" % ("PASS" if passed else "FAIL", name, msg))
            ok = ok and passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
