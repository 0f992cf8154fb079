#!/usr/bin/python3
"""Check a converted COCO-SSD TorchScript model against TF.js itself.

    /usr/bin/python3 scripts/models/check_tfjs.py --model model.pt --scopes scopes.json \
        --tfjs-model DIR --node-modules DIR --out check.json IMAGE...

Each image is resized straight to the network's size (bilinear, 8-bit) and
fed to both: to TF.js as the graph's uint8 image_tensor (tfjs_run.js, pure-JS
CPU backend), to the TorchScript model as pixels/255. Compared: the model's
[N,91] output against TF's class logits (concat_1) maxed over the anchors,
and every module against its TF scope, given TF's own input to that scope.
Also writes each module's TF output shape (NHWC) and, per image, the
sigmoid scores of the COCO ids given with --report-ids. Exits 1 when the
logits differ by more than --tol.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def load_pixels(paths, size):
    arrs = []
    for p in paths:
        with Image.open(p) as im:
            arrs.append(np.asarray(im.convert("RGB").resize((size[1], size[0]), Image.BILINEAR), dtype=np.uint8))
    return np.stack(arrs)


def run_tfjs(node_modules, tfjs_model, pixels, nodes, work):
    u8 = os.path.join(work, "images.u8")
    pixels.tofile(u8)
    with open(os.path.join(work, "nodes.json"), "w") as f:
        json.dump(nodes, f)
    env = dict(os.environ, NODE_PATH=node_modules)
    n, h, w, _ = pixels.shape
    r = subprocess.run(["node", os.path.join(HERE, "tfjs_run.js"), tfjs_model, u8, str(n), str(h), str(w),
                        os.path.join(work, "nodes.json"), work], env=env, capture_output=True, text=True)
    if r.returncode != 0:  # TF.js's own banners go to stdout; show them only then
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit("check_tfjs: TF.js run failed (exit %d)" % r.returncode)
    with open(os.path.join(work, "shapes.json")) as f:
        meta = json.load(f)
    out = {}
    for i, (node, shape) in enumerate(zip(meta["nodes"], meta["shapes"])):
        out[node] = np.fromfile(os.path.join(work, "%d.f32" % i), dtype=np.float32).reshape(shape)
    return out, meta


def nchw(a):
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2) if a.ndim == 4 else a))


def submodule(model, path):
    m = model
    for p in path.split("."):
        m = getattr(m, p)
    return m


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--scopes", required=True)
    ap.add_argument("--tfjs-model", required=True)
    ap.add_argument("--node-modules", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--report-ids", default="", help="comma-separated COCO ids to report sigmoid scores for")
    ap.add_argument("images", nargs="+")
    args = ap.parse_args(argv)

    with open(args.scopes) as f:
        info = json.load(f)
    size = info["input_size"]
    pixels = load_pixels(args.images, size)
    scopes = info["scopes"]
    nodes = [info["logits_node"]]
    for s in scopes.values():
        for k in ("input", "output"):
            if s.get(k) and s[k] not in nodes and s[k] != info["placeholder"]:
                nodes.append(s[k])
    with tempfile.TemporaryDirectory(prefix="cocossd-check-") as work:
        tf_out, meta = run_tfjs(args.node_modules, args.tfjs_model, pixels, nodes, work)

    model = torch.jit.load(args.model).eval()
    x = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        got = model(x).numpy()
    want = tf_out[info["logits_node"]].max(axis=1)
    logits_delta = float(np.abs(got - want).max())

    modules = {}
    with torch.no_grad():
        for path, s in sorted(scopes.items()):
            entry = {"tf_node": s.get("output"), "tf_shape": list(tf_out[s["output"]].shape) if s.get("output") in tf_out else None}
            if path == "heads":
                taps = [tf_out[scopes["heads.box_predictor_%d" % i]["input"]] for i in range(6)]
                y = submodule(model, path)([nchw(t) for t in taps]).numpy()
            elif path == "preprocessor":
                y = submodule(model, path)(x).numpy()
            elif s.get("input") and s.get("output"):
                y = submodule(model, path)(nchw(tf_out[s["input"]])).numpy()
            else:
                entry["note"] = "no TF node holds this scope's output (grappler folded it into the block's add)"
                modules[path] = entry
                continue
            ref = tf_out[s["output"]]
            ref = ref.transpose(0, 3, 1, 2) if ref.ndim == 4 else ref
            entry["max_abs_diff"] = float(np.abs(y - ref).max())
            entry["max_abs_ref"] = float(np.abs(ref).max())
            modules[path] = entry

    ids = [int(i) for i in args.report_ids.split(",") if i]
    per_image = []
    for i, p in enumerate(args.images):
        sig = 1.0 / (1.0 + np.exp(-got[i].astype(np.float64)))
        per_image.append({"image": p, "sigmoid": {str(k): float(sig[k]) for k in ids},
                          "top5": [int(k) for k in np.argsort(-got[i])[:5]]})
    worst = max((m for m in modules.values() if "max_abs_diff" in m), key=lambda m: m["max_abs_diff"])
    report = {
        "tfjs_core": meta["tfjs"],
        "tfjs_backend": meta["backend"],
        "images": len(args.images),
        "logits_max_abs_diff": logits_delta,
        "tolerance": args.tol,
        "modules_compared": sum(1 for m in modules.values() if "max_abs_diff" in m),
        "modules_max_abs_diff": worst["max_abs_diff"],
        "modules": modules,
        "per_image": per_image,
        "pass": logits_delta <= args.tol,
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, args.out)
    print("check_tfjs: %d images, TF.js %s (%s): logits max |diff| %.3g (tolerance %g); %d modules, worst |diff| %.3g"
          % (len(args.images), meta["tfjs"], meta["backend"], logits_delta, args.tol, report["modules_compared"], worst["max_abs_diff"]))
    for r in per_image:
        print("check_tfjs: %s: sigmoid %s, top-5 ids %s" % (os.path.basename(r["image"]), r["sigmoid"], r["top5"]))
    if not report["pass"]:
        print("check_tfjs: converted model disagrees with TF.js (logits max |diff| %.3g > %g)" % (logits_delta, args.tol), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
