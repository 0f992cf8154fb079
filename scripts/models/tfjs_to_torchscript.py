#!/usr/bin/python3
"""Convert the TF.js graph model of COCO-SSD (SSDLite, MobileNetV2 backbone)
into a TorchScript image-level classifier.

    /usr/bin/python3 scripts/models/tfjs_to_torchscript.py MODEL_DIR OUT.pt [--scopes OUT.json]

MODEL_DIR holds model.json and its weight shards. The result takes
[N,3,H,W] RGB in [0,1] (300x300 is the network's own size; other sizes are
resized inside, as the TF graph does) and returns [N,91]: for every COCO
category id (column = id, 0 = background) the largest raw class logit over
the 1917 anchors.

Every TF name scope the class logits depend on becomes a nested module,
named in snake_case after the scope (FeatureExtractor/MobilenetV2 ->
backbone, BoxPredictor_i -> heads.box_predictor_i), and every module returns
what its scope outputs in TF, in NCHW instead of NHWC. The converter reads the
graph, not a hand-written copy of the architecture: it walks back from the
class logits, folds each convolution with the per-channel multiply/add (or
FusedBatchNorm) and Relu6 that follow it, and stops with an error naming the
op and node for anything it does not know. --scopes writes, for every module
path, the TF nodes holding its input and output (used by check_tfjs.py).
"""

import argparse
import json
import os
import re
import sys
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

OUTPUT_NODE = "concat_1"  # [N, 1917, 91] raw class logits, before Postprocessor/convert_scores

# TF DataType enum values (types.proto) that appear in graph attributes.
TF_DTYPES = {1: np.float32, 3: np.int32, 4: np.uint8, 9: np.int64, 10: np.bool_}
MANIFEST_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
QUANT_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


class ConversionError(Exception):
    pass


# ---------------------------------------------------------------------------
# Reading model.json and its weights.


def read_weights(model_dir: str, manifest: list) -> dict:
    """Const tensors from the weight manifest, dequantized to float32 where
    the converter quantized them (uint8/uint16: q*scale+min; float16)."""
    out = {}
    for group in manifest:
        blob = b"".join(open(os.path.join(model_dir, p), "rb").read() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            shape = [int(d) for d in w["shape"]]
            count = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q:
                qd = QUANT_DTYPES.get(q["dtype"])
                if qd is None:
                    raise ConversionError("weight %s: unknown quantization dtype %r" % (w["name"], q["dtype"]))
                raw = np.frombuffer(blob, dtype=qd, count=count, offset=off)
                off += raw.nbytes
                if q["dtype"] == "float16":
                    val = raw.astype(np.float32)
                else:
                    val = raw.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
                if w["dtype"] == "int32":
                    val = np.round(val).astype(np.int32)
            else:
                dt = MANIFEST_DTYPES.get(w["dtype"])
                if dt is None:
                    raise ConversionError("weight %s: unsupported dtype %r" % (w["name"], w["dtype"]))
                val = np.frombuffer(blob, dtype=dt, count=count, offset=off)
                off += val.nbytes
            out[w["name"]] = np.array(val).reshape(shape)
        if off != len(blob):
            raise ConversionError("weight shards %s: %d bytes, manifest accounts for %d" % (group["paths"], len(blob), off))
    return out


def inline_const(node: dict) -> np.ndarray:
    t = node["attr"]["value"]["tensor"]
    dt = TF_DTYPES.get(int(t["dtype"]))
    shape = [int(d["size"]) for d in t.get("tensorShape", {}).get("dim", [])]
    vals = t.get("intVal") or t.get("floatVal") or t.get("int64Val") or t.get("boolVal") or []
    if dt is None or not vals:
        raise ConversionError("const node %s: no value in the graph or the weight manifest" % node["name"])
    a = np.array(vals, dtype=dt)
    if a.size == 1 and shape:
        a = np.full(shape, a.item(), dtype=dt)
    return a.reshape(shape)


class Graph:
    def __init__(self, model_dir: str):
        path = os.path.join(model_dir, "model.json")
        with open(path) as f:
            mj = json.load(f)
        topo = mj.get("modelTopology", {})
        if "node" not in topo:
            raise ConversionError("%s: not a TF.js graph model (no modelTopology.node)" % path)
        self.nodes = {n["name"]: n for n in topo["node"]}
        self.order = [n["name"] for n in topo["node"]]
        self.weights = read_weights(model_dir, mj.get("weightsManifest", []))
        self.consumers = {}
        for n in topo["node"]:
            for i in n.get("input", []):
                self.consumers.setdefault(self.ref(i), []).append(n["name"])

    @staticmethod
    def ref(inp: str) -> str:
        """Node name of an input reference ('^ctrl', 'name:1')."""
        return inp.lstrip("^").split(":")[0]

    def node(self, name: str) -> dict:
        if name not in self.nodes:
            raise ConversionError("graph has no node %s" % name)
        return self.nodes[name]

    def inputs(self, name: str) -> List[str]:
        return [i for i in self.node(name).get("input", []) if not i.startswith("^")]

    def is_const(self, name: str) -> bool:
        return self.node(self.ref(name))["op"] == "Const"

    def const(self, name: str) -> np.ndarray:
        name = self.ref(name)
        n = self.node(name)
        if n["op"] != "Const":
            raise ConversionError("node %s (%s) must be a constant here" % (name, n["op"]))
        if name in self.weights:
            return self.weights[name]
        return inline_const(n)

    def attr_ints(self, name: str, key: str) -> List[int]:
        return [int(v) for v in self.node(name)["attr"][key]["list"]["i"]]

    def attr_str(self, name: str, key: str) -> str:
        return bytes(self.node(name)["attr"][key]["s"]).decode()

    def only_consumer(self, name: str) -> Optional[str]:
        c = self.consumers.get(name, [])
        return c[0] if len(c) == 1 else None


# ---------------------------------------------------------------------------
# TorchScript modules. Each returns what its TF scope returns (NCHW).


def same_pad(x: Tensor, k: int, s: int) -> Tensor:
    """TF 'SAME' padding: the extra row/column goes to the bottom/right."""
    h = x.shape[2]
    w = x.shape[3]
    ph = max(((h + s - 1) // s - 1) * s + k - h, 0)
    pw = max(((w + s - 1) // s - 1) * s + k - w, 0)
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


class ConvUnit(nn.Module):
    """Conv2D or DepthwiseConv2dNative with its folded batch norm (or bias)
    and an optional Relu6."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, stride: int, groups: int, relu6: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)), requires_grad=False)
        self.bias = nn.Parameter(torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32)), requires_grad=False)
        self.stride = stride
        self.groups = groups
        self.kernel = int(weight.shape[2])
        self.relu6 = relu6

    def forward(self, x: Tensor) -> Tensor:
        x = same_pad(x, self.kernel, self.stride)
        y = F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)
        if self.relu6:
            y = torch.clamp(y, 0.0, 6.0)
        return y


class ExpandedConv(nn.Module):
    """MobileNetV2 inverted residual: expand (1x1), depthwise (3x3), project
    (1x1), plus the input when the block keeps its shape. keep_expanded
    stores the expand output for a box predictor that reads it."""

    expanded: Optional[Tensor]

    def __init__(self, expand: ConvUnit, depthwise: ConvUnit, project: ConvUnit, residual: bool, keep_expanded: bool):
        super().__init__()
        self.expand = expand
        self.depthwise = depthwise
        self.project = project
        self.residual = residual
        self.keep_expanded = keep_expanded
        self.expanded = None

    def forward(self, x: Tensor) -> Tensor:
        e = self.expand(x)
        if self.keep_expanded:
            self.expanded = e
        y = self.project(self.depthwise(e))
        if self.residual:
            y = y + x
        return y


class ExpandedConvNoExpand(nn.Module):
    """The first inverted residual block: no expand convolution."""

    def __init__(self, depthwise: ConvUnit, project: ConvUnit, residual: bool):
        super().__init__()
        self.depthwise = depthwise
        self.project = project
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(x))
        if self.residual:
            y = y + x
        return y


class Preprocessor(nn.Module):
    """[0,1] RGB -> the graph's pixel scale (0..255, what image_tensor
    holds), resized to the network's size the way TF's ResizeBilinear does
    with align_corners=False and half_pixel_centers=False (identity at that
    size), then Preprocessor/mul and Preprocessor/sub."""

    def __init__(self, height: int, width: int, scale: float, shift: float):
        super().__init__()
        self.height = height
        self.width = width
        self.scale = scale
        self.shift = shift

    def forward(self, x: Tensor) -> Tensor:
        x = x * 255.0
        if x.shape[2] != self.height or x.shape[3] != self.width:
            x = self.resize(x, 2, self.height)
            x = self.resize(x, 3, self.width)
        return x * self.scale - self.shift

    def resize(self, x: Tensor, dim: int, out: int) -> Tensor:
        n = x.shape[dim]
        src = torch.arange(out, dtype=torch.float32, device=x.device) * (float(n) / float(out))
        lo = torch.floor(src)
        frac = src - lo
        i0 = lo.to(torch.long)
        i1 = torch.clamp(i0 + 1, max=n - 1)
        shape = [1, 1, 1, 1]
        shape[dim] = out
        frac = frac.reshape(shape)
        a = torch.index_select(x, dim, i0)
        b = torch.index_select(x, dim, i1)
        return a + (b - a) * frac


class ClassPredictorHead(nn.Module):
    """BoxPredictor_i, class branch: depthwise 3x3 + BN + Relu6, 1x1 conv to
    anchors*classes, reshaped like TF's NHWC reshape to [N, H*W*anchors, classes]."""

    def __init__(self, class_predictor_depthwise: ConvUnit, class_predictor: ConvUnit, classes: int):
        super().__init__()
        self.class_predictor_depthwise = class_predictor_depthwise
        self.class_predictor = class_predictor
        self.classes = classes

    def forward(self, x: Tensor) -> Tensor:
        y = self.class_predictor(self.class_predictor_depthwise(x))
        return y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, self.classes)


class Backbone(nn.Module):
    """FeatureExtractor/MobilenetV2: the feature maps the box predictors read.
    build_backbone writes its forward from the graph's sequence of scopes."""


class Heads(nn.Module):
    """The BoxPredictor_i scopes: class logits of all anchors, [N, anchors,
    classes]. build_heads writes its forward."""


class Classifier(nn.Module):
    """Image-level class logits: the largest anchor logit per class."""

    def __init__(self, preprocessor: Preprocessor, backbone: nn.Module, heads: nn.Module):
        super().__init__()
        self.preprocessor = preprocessor
        self.backbone = backbone
        self.heads = heads

    def forward(self, x: Tensor) -> Tensor:
        features = self.backbone(self.preprocessor(x))
        return torch.amax(self.heads(features), dim=1)


# ---------------------------------------------------------------------------
# From graph to modules.

CONV_OPS = ("Conv2D", "DepthwiseConv2dNative")
# Ops that only compute shapes for the reshapes in the box predictors.
SHAPE_OPS = ("Shape", "StridedSlice", "Pack")


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def scope_of_weight(weight_node: str) -> str:
    """'X/expanded_conv_3/expand/Conv2D/merged_input' -> 'X/expanded_conv_3/expand'."""
    parts = weight_node.split("/")[:-1]
    if parts and parts[-1] == "Conv2D":
        parts = parts[:-1]
    return "/".join(parts)


def module_path(scope: str) -> str:
    parts = scope.split("/")
    if parts[:2] == ["FeatureExtractor", "MobilenetV2"]:
        return ".".join(["backbone"] + [snake(p) for p in parts[2:]])
    if parts[0].startswith("BoxPredictor_"):
        rest = [snake(p) for p in parts[1:]]
        return ".".join(["heads", snake(parts[0])] + rest)
    if parts[0] == "Preprocessor":
        return ".".join(["preprocessor"] + [snake(p) for p in parts[1:]])
    raise ConversionError("scope %s has no module name" % scope)


class Unit:
    """One convolution and what was folded into it."""

    def __init__(self, g: Graph, conv: str):
        self.conv = conv
        self.input = g.ref(g.inputs(conv)[0])
        wname = g.ref(g.inputs(conv)[1])
        w = g.const(wname).astype(np.float32)
        self.scope = scope_of_weight(wname)
        op = g.node(conv)["op"]
        if g.attr_str(conv, "padding") != "SAME":
            raise ConversionError("node %s: padding %s (only SAME is supported)" % (conv, g.attr_str(conv, "padding")))
        if "data_format" in g.node(conv)["attr"] and g.attr_str(conv, "data_format") != "NHWC":
            raise ConversionError("node %s: data_format %s (only NHWC)" % (conv, g.attr_str(conv, "data_format")))
        strides = g.attr_ints(conv, "strides")
        if "dilations" in g.node(conv)["attr"] and g.attr_ints(conv, "dilations") != [1, 1, 1, 1]:
            raise ConversionError("node %s: dilations %s (only 1)" % (conv, g.attr_ints(conv, "dilations")))
        if strides[1] != strides[2] or strides[0] != 1 or strides[3] != 1:
            raise ConversionError("node %s: strides %s (only square spatial strides)" % (conv, strides))
        self.stride = strides[1]
        kh, kw, cin, cout = w.shape
        if kh != kw:
            raise ConversionError("node %s: kernel %dx%d (only square)" % (conv, kh, kw))
        if op == "Conv2D":
            self.weight = w.transpose(3, 2, 0, 1)  # HWIO -> OIHW
            self.groups = 1
        else:  # depthwise: [kh, kw, in, multiplier] -> [in*multiplier, 1, kh, kw]
            self.weight = w.reshape(kh, kw, cin * cout).transpose(2, 0, 1)[:, None, :, :]
            self.groups = cin
        n_out = self.weight.shape[0]
        scale = np.ones(n_out, np.float32)
        shift = np.zeros(n_out, np.float32)
        self.relu6 = False
        self.folded = []
        cur = conv
        while True:
            nxt = g.only_consumer(cur)
            if nxt is None:
                break
            nop = g.node(nxt)["op"]
            ins = g.inputs(nxt)
            other = [i for i in ins if g.ref(i) != cur]
            if nop == "Mul" and len(other) == 1 and g.is_const(other[0]):
                scale, shift = scale * per_channel(g, other[0], n_out, nxt), shift * per_channel(g, other[0], n_out, nxt)
            elif nop in ("Add", "BiasAdd") and len(other) == 1 and g.is_const(other[0]):
                shift = shift + per_channel(g, other[0], n_out, nxt)
            elif nop == "FusedBatchNorm" and g.ref(ins[0]) == cur and all(g.is_const(i) for i in ins[1:]):
                if g.node(nxt)["attr"].get("is_training", {}).get("b", False):
                    raise ConversionError("node %s: FusedBatchNorm in training mode" % nxt)
                gamma, beta, mean, var = (g.const(i).astype(np.float32) for i in ins[1:5])
                eps = np.float32(g.node(nxt)["attr"]["epsilon"]["f"])
                s = gamma / np.sqrt(var + eps)
                scale, shift = scale * s, shift * s + (beta - mean * s)
            elif nop == "Relu6":
                self.relu6 = True
                self.folded.append(nxt)
                cur = nxt
                break
            else:
                break
            self.folded.append(nxt)
            cur = nxt
        self.output = cur
        self.weight = self.weight * scale[:, None, None, None]
        self.bias = shift

    def module(self) -> ConvUnit:
        return ConvUnit(self.weight, self.bias, self.stride, self.groups, self.relu6)


def per_channel(g: Graph, name: str, n: int, node: str) -> np.ndarray:
    v = g.const(name).astype(np.float32)
    if v.size == 1:
        return np.full(n, v.item(), np.float32)
    if v.size != n:
        raise ConversionError("node %s: constant %s has %d values for %d channels" % (node, g.ref(name), v.size, n))
    return v.reshape(n)


def own_project(node: str, ins: List[str], by_output: dict) -> List[str]:
    """The inputs of a residual add that are its own block's project output."""
    return [i for i in ins if i in by_output and node.startswith(by_output[i].scope.rsplit("/", 1)[0] + "/")
            and by_output[i].scope.endswith("/project")]


def needed_nodes(g: Graph, output: str) -> List[str]:
    """Every non-constant node the output depends on, in graph order; the
    preprocessor's map (a while loop) is kept whole and checked apart."""
    seen = set()
    stack = [output]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.startswith("Preprocessor/map/") or g.node(n)["op"] == "Const":
            continue
        stack.extend(g.ref(i) for i in g.inputs(n))
    return [n for n in g.order if n in seen and g.node(n)["op"] != "Const" and not n.startswith("Preprocessor/map/")]


# The ops of Preprocessor/map: tf.map_fn resizing each image of the batch.
MAP_OPS = {
    "Enter", "Exit", "Merge", "Switch", "LoopCond", "NextIteration", "Less", "Identity", "Add", "Range",
    "Shape", "StridedSlice", "TensorArrayV3", "TensorArrayScatterV3", "TensorArrayReadV3",
    "TensorArrayWriteV3", "TensorArraySizeV3", "TensorArrayGatherV3", "ExpandDims", "Squeeze",
    "ResizeBilinear",
}


def read_preprocessor(g: Graph) -> Tuple[Preprocessor, str, str]:
    for name in g.order:
        if name.startswith("Preprocessor/map/") and g.node(name)["op"] not in MAP_OPS | {"Const"}:
            raise ConversionError("unsupported op %s at node %s (in the preprocessor's map)" % (g.node(name)["op"], name))
    resizes = [n for n in g.order if n.startswith("Preprocessor/map/") and g.node(n)["op"] == "ResizeBilinear"]
    if len(resizes) != 1:
        raise ConversionError("Preprocessor/map: expected one ResizeBilinear, found %d" % len(resizes))
    r = resizes[0]
    attr = g.node(r).get("attr", {})
    if attr.get("align_corners", {}).get("b", False) or attr.get("half_pixel_centers", {}).get("b", False):
        raise ConversionError("node %s: only align_corners=False, half_pixel_centers=False is supported" % r)
    size = g.const(g.inputs(r)[1]).tolist()
    mul = g.node("Preprocessor/mul")
    sub = g.node("Preprocessor/sub")
    if mul["op"] != "Mul" or sub["op"] != "Sub" or g.ref(g.inputs("Preprocessor/sub")[0]) != "Preprocessor/mul":
        raise ConversionError("Preprocessor: expected Mul then Sub after the map")
    scale = [i for i in g.inputs("Preprocessor/mul") if g.is_const(i)]
    shift = g.inputs("Preprocessor/sub")[1]
    if len(scale) != 1 or not g.is_const(shift):
        raise ConversionError("Preprocessor: mul/sub must be by constants")
    cast = g.ref(g.inputs("Preprocessor/map/TensorArrayUnstack/Shape")[0]) if "Preprocessor/map/TensorArrayUnstack/Shape" in g.nodes else None
    src = g.node(cast) if cast else None
    if src is None or src["op"] != "Cast" or g.node(g.ref(g.inputs(cast)[0]))["op"] != "Placeholder":
        raise ConversionError("Preprocessor: expected the map to read a Cast of the image placeholder")
    m = Preprocessor(int(size[0]), int(size[1]), float(g.const(scale[0])), float(g.const(shift)))
    return m, g.ref(g.inputs(cast)[0]), "Preprocessor/sub"


def shape_value(g: Graph, name: str):
    """Static value of a shape computation: 'N' is the batch size."""
    name = g.ref(name)
    n = g.node(name)
    op = n["op"]
    if op == "Const":
        return g.const(name).tolist()
    if op == "Shape":
        return ["N", None, None, None]
    if op == "StridedSlice":
        ins = g.inputs(name)
        base = shape_value(g, ins[0])
        begin, end, step = (g.const(i).tolist() for i in ins[1:4])
        shrink = int(n["attr"].get("shrink_axis_mask", {}).get("i", "0"))
        if begin == [0] and end == [1] and step == [1] and shrink == 1:
            return base[0]
        raise ConversionError("node %s: StridedSlice %s:%s:%s of a shape is not supported" % (name, begin, end, step))
    if op == "Pack":
        return [shape_value(g, i) for i in g.inputs(name)]
    raise ConversionError("unsupported op %s at node %s (in a shape computation)" % (op, name))


def convert(model_dir: str):
    g = Graph(model_dir)
    if OUTPUT_NODE not in g.nodes or g.node(OUTPUT_NODE)["op"] != "ConcatV2":
        raise ConversionError("graph has no ConcatV2 node %s (the class logits)" % OUTPUT_NODE)
    needed = needed_nodes(g, OUTPUT_NODE)
    preprocessor, placeholder, pre_out = read_preprocessor(g)

    units = {}  # conv node -> Unit
    owner = {}  # node -> what consumed it
    for n in needed:
        if g.node(n)["op"] in CONV_OPS:
            u = Unit(g, n)
            units[n] = u
            for m in [n] + u.folded:
                owner[m] = u.scope
    by_output = {u.output: u for u in units.values()}
    by_scope = {}
    for u in units.values():
        if u.scope in by_scope:
            raise ConversionError("scope %s has two convolutions (%s, %s)" % (u.scope, by_scope[u.scope].conv, u.conv))
        by_scope[u.scope] = u

    # Residual adds: Add(project, x), or ArithmeticOptimizer's rewrite
    # AddN(project_without_shift, x) + shift, whose shift goes back into
    # project so that project's output is its scope's output again.
    residual_out = {}  # block scope -> (output node, input node)
    for n in needed:
        if n in owner or n == pre_out or n == "Preprocessor/mul":
            continue
        op = g.node(n)["op"]
        ins = [g.ref(i) for i in g.inputs(n)]
        if op == "AddN" and len(ins) == 2:
            nxt = g.only_consumer(n)
            proj = own_project(n, ins, by_output)
            skip = [i for i in ins if i not in proj]
            if len(proj) != 1 or nxt is None or g.node(nxt)["op"] != "Add":
                raise ConversionError("node %s: AddN that is not a residual add" % n)
            shift = [i for i in g.inputs(nxt) if g.ref(i) != n]
            if len(shift) != 1 or not g.is_const(shift[0]):
                raise ConversionError("node %s: residual add without a constant shift" % nxt)
            u = by_output[proj[0]]
            u.bias = u.bias + per_channel(g, shift[0], u.weight.shape[0], nxt)
            u.output = None  # grappler removed the node that held it
            block = u.scope.rsplit("/", 1)[0]
            residual_out[block] = (nxt, skip[0])
            owner[n] = owner[nxt] = block
        elif op == "Add" and n not in owner and len(ins) == 2 and not any(g.is_const(i) for i in ins):
            proj = own_project(n, ins, by_output)
            if len(proj) != 1:
                raise ConversionError("node %s: Add of two tensors that is not a residual add" % n)
            block = by_output[proj[0]].scope.rsplit("/", 1)[0]
            residual_out[block] = (n, [i for i in ins if i != proj[0]][0])
            owner[n] = block

    heads = []  # (index, tap node, reshape node, depthwise unit, conv unit)
    for n in needed:
        if n in owner:
            continue
        op = g.node(n)["op"]
        if op == "Reshape" and n.startswith("BoxPredictor_"):
            src = g.ref(g.inputs(n)[0])
            target = shape_value(g, g.inputs(n)[1])
            if src not in by_output or not by_output[src].scope.endswith("/ClassPredictor"):
                raise ConversionError("node %s: reshape of something other than a class predictor" % n)
            if len(target) != 3 or target[0] != "N":
                raise ConversionError("node %s: reshape to %s, expected [batch, anchors, classes]" % (n, target))
            conv = by_output[src]
            dw = by_output.get(conv.input)
            if dw is None or not dw.scope.endswith("/ClassPredictor_depthwise"):
                raise ConversionError("node %s: class predictor %s is not fed by its depthwise unit" % (n, conv.conv))
            idx = int(n.split("/")[0].split("_")[1])
            heads.append((idx, dw.input, n, dw, conv, int(target[2]), int(target[1])))
            owner[n] = n.split("/")[0]
        elif op in SHAPE_OPS:
            owner[n] = "shape"
        elif n in (OUTPUT_NODE, pre_out, "Preprocessor/mul"):
            pass
        else:
            raise ConversionError("unsupported op %s at node %s" % (op, n))
    concat_inputs = [g.ref(i) for i in g.inputs(OUTPUT_NODE)]
    axis = concat_inputs.pop()
    if g.const(axis).item() != 1:
        raise ConversionError("node %s: concat along axis %s, expected 1" % (OUTPUT_NODE, g.const(axis)))
    heads.sort()
    if [h[2] for h in heads] != concat_inputs:
        raise ConversionError("node %s concatenates %s, expected the class predictor reshapes in order" % (OUTPUT_NODE, concat_inputs))
    classes = {h[5] for h in heads}
    if len(classes) != 1:
        raise ConversionError("box predictors disagree on the number of classes: %s" % sorted(classes))

    # Backbone: its scopes in graph order, each fed by the one before.
    prefix = "FeatureExtractor/MobilenetV2/"
    block_names = []
    for n in needed:
        if n.startswith(prefix):
            b = n[len(prefix):].split("/")[0]
            if b not in block_names and b != "ArithmeticOptimizer":
                block_names.append(b)
    taps = {h[1] for h in heads}
    blocks = []  # (attribute name, module, TF output node, TF input node)
    cur = pre_out
    scopes = {"preprocessor": {"input": placeholder, "output": pre_out, "input_format": "uint8 NHWC"}}
    for b in block_names:
        scope = prefix + b
        path = module_path(scope)
        parts = {k: by_scope.get(scope + "/" + k) for k in ("expand", "depthwise", "project")}
        if parts["depthwise"] and parts["project"]:
            chain = [p for p in (parts["expand"], parts["depthwise"], parts["project"]) if p]
            if chain[0].input != cur:
                raise ConversionError("scope %s reads %s, expected %s" % (scope, chain[0].input, cur))
            for a, b2 in zip(chain, chain[1:]):
                if b2.input != a.output:
                    raise ConversionError("scope %s: %s reads %s, expected %s" % (scope, b2.conv, b2.input, a.output))
            residual = scope in residual_out
            out = residual_out[scope][0] if residual else parts["project"].output
            if residual and residual_out[scope][1] != cur:
                raise ConversionError("scope %s: residual adds %s, expected the block input %s" % (scope, residual_out[scope][1], cur))
            keep = parts["expand"] is not None and parts["expand"].output in taps
            if parts["expand"]:
                mod = ExpandedConv(parts["expand"].module(), parts["depthwise"].module(), parts["project"].module(), residual, keep)
            else:
                mod = ExpandedConvNoExpand(parts["depthwise"].module(), parts["project"].module(), residual)
            for k, u in parts.items():
                if u:
                    scopes[path + "." + k] = {"input": u.input, "output": u.output}
            taps_here = [(parts["expand"].output, "expanded")] if keep else []
        elif scope in by_scope:
            u = by_scope[scope]
            if u.input != cur:
                raise ConversionError("scope %s reads %s, expected %s" % (scope, u.input, cur))
            mod, out, taps_here = u.module(), u.output, []
        else:
            raise ConversionError("scope %s: neither a convolution nor an inverted residual block" % scope)
        scopes[path] = {"input": cur, "output": out}
        blocks.append((snake(b), mod, out, taps_here))
        cur = out

    # The backbone returns the feature maps the box predictors read, in order.
    features = []
    for h in heads:
        where = None
        for name, _, out, taps_here in blocks:
            if out == h[1]:
                where = (name, None)
            for node, attr in taps_here:
                if node == h[1]:
                    where = (name, attr)
        if where is None:
            raise ConversionError("box predictor %d reads %s, which no backbone scope outputs" % (h[0], h[1]))
        features.append(where)

    backbone = build_backbone(blocks, features)
    predictors = []
    for idx, tap, reshape, dw, conv, ncls, anchors in heads:
        name = "box_predictor_%d" % idx
        predictors.append((name, ClassPredictorHead(dw.module(), conv.module(), ncls)))
        scopes["heads." + name] = {"input": tap, "output": reshape}
        scopes["heads.%s.class_predictor_depthwise" % name] = {"input": dw.input, "output": dw.output}
        scopes["heads.%s.class_predictor" % name] = {"input": conv.input, "output": conv.output}
    heads_mod = build_heads(predictors)
    scopes["heads"] = {"input": None, "output": OUTPUT_NODE}
    model = Classifier(preprocessor, backbone, heads_mod).eval()
    info = {
        "placeholder": placeholder,
        "logits_node": OUTPUT_NODE,
        "classes": classes.pop(),
        "anchors": sum(h[6] for h in heads),
        "input_size": [preprocessor.height, preprocessor.width],
        "grappler_rewrites": sorted(s for s in residual_out if residual_out[s][0].endswith("AddOpsRewrite_add")),
        "scopes": scopes,
    }
    return model, info


def build_backbone(blocks, features) -> nn.Module:
    """A Backbone subclass whose forward runs the blocks in order and
    returns the tapped feature maps. TorchScript needs the forward as
    source, so it is written out from the graph's sequence."""
    lines = ["def forward(self, x: Tensor) -> List[Tensor]:"]
    outs = {}
    for name, _, _, _ in blocks:
        lines.append("    x = self.%s(x)" % name)
        want = [i for i, (b, attr) in enumerate(features) if b == name]
        for i in want:
            attr = features[i][1]
            if attr is None:
                lines.append("    f%d = x" % i)
            else:
                lines.append("    f%d = self.%s.%s" % (i, name, attr))
                lines.append("    assert f%d is not None" % i)
            outs[i] = "f%d" % i
    lines.append("    return [%s]" % ", ".join(outs[i] for i in range(len(features))))
    return instantiate("GeneratedBackbone", Backbone, lines, blocks=[(n, m) for n, m, _, _ in blocks])


def build_heads(predictors) -> nn.Module:
    lines = ["def forward(self, features: List[Tensor]) -> Tensor:"]
    parts = []
    for i, (name, _) in enumerate(predictors):
        lines.append("    p%d = self.%s(features[%d])" % (i, name, i))
        parts.append("p%d" % i)
    lines.append("    return torch.cat([%s], dim=1)" % ", ".join(parts))
    return instantiate("GeneratedHeads", Heads, lines, blocks=predictors)


def instantiate(cls_name: str, base, forward_lines: List[str], blocks):
    """Define cls_name(base) with the given forward and return an instance.
    TorchScript reads the source of what it compiles: the generated source is
    registered with linecache under a fixed name (no temp file, so the saved
    model's debug info does not change from run to run)."""
    import linecache
    import types

    src = "import torch\nfrom torch import Tensor\nfrom typing import List\n\n\n" + "\n".join(forward_lines) + "\n"
    modname = "cocossd_" + cls_name.lower()
    filename = "<generated %s>" % modname
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    mod = types.ModuleType(modname)
    exec(compile(src, filename, "exec"), mod.__dict__)
    sys.modules[modname] = mod
    cls = type(cls_name, (base,), {"forward": mod.forward, "__module__": modname})
    inst = nn.Module.__new__(cls)
    nn.Module.__init__(inst)
    for name, m in blocks:
        setattr(inst, name, m)
    return inst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--scopes", help="write module path -> TF nodes as JSON here")
    args = ap.parse_args(argv)
    try:
        model, info = convert(args.model_dir)
    except (ConversionError, OSError, KeyError, ValueError) as e:
        print("tfjs_to_torchscript: %s: %s" % (args.model_dir, e), file=sys.stderr)
        return 1
    torch.manual_seed(0)
    x = torch.rand(2, 3, info["input_size"][0], info["input_size"][1])
    with torch.no_grad():
        eager = model(x)
        scripted = torch.jit.script(model)
        got = scripted(x)
    if tuple(got.shape) != (2, info["classes"]) or not torch.allclose(eager, got, atol=1e-5):
        print("tfjs_to_torchscript: scripted model disagrees with the eager one", file=sys.stderr)
        return 1
    tmp = args.out + ".tmp"
    scripted.save(tmp)
    os.replace(tmp, args.out)
    if args.scopes:
        tmp = args.scopes + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f, indent=1)
        os.replace(tmp, args.scopes)
    n_mod = sum(1 for _ in scripted.named_modules()) - 1
    print("tfjs_to_torchscript: wrote %s (%d modules, %d anchors, %d classes; grappler residual rewrites undone in %d blocks)"
          % (args.out, n_mod, info["anchors"], info["classes"], len(info["grappler_rewrites"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
