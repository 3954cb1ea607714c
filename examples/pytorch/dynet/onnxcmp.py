"""Op-sequence normalization of ONNX graphs, to compare what different writers emit for the
same network (dync's Rust zoo against PyTorch's real exporters).

`normalize(model)` walks the nodes in file order (both writers emit a topological order that
follows the forward pass) and keeps the op types of the nodes that carry data, after:

1. **static subgraphs dropped**: a value is *static* when it is an initializer, the output of
   `Constant`, `Shape` or `Size`, or the output of a node whose non-empty inputs are all static.
   Nodes whose outputs are all static are dropped: these are the Constant nodes of the legacy
   style, the Shape -> Gather -> Unsqueeze -> Concat chains of dynamic-batch Reshape targets,
   Resize sizes built from Shape -> Slice -> Concat, `Identity(initializer)` aliases and any
   computation on parameters alone -- all of which dync's importer folds into constants.
2. **Identity on data dropped** (an alias; its consumers read its input).
3. **BatchNormalization folded into a static Conv**: a BatchNormalization whose input is the
   output of a kept Conv with a static weight, read by nothing else, is dropped. PyTorch's
   exporters fold eval-mode BatchNorm into such a Conv (legacy: the eval peephole pass; dynamo:
   the ONNX optimizer), dync's `fold_bn` pass does the same, and the zoo keeps them unfolded; a
   BatchNormalization after a dynamic conv (computed weight, or the train form's ReduceSum)
   stays on both sides.

`ops` is the resulting list of op types; `compute` is `ops` without the layout ops in `LAYOUT`
(Reshape, Flatten, (Un)Squeeze, Transpose, Slice, Split, Concat, Expand, Gather), i.e. the
sequence of Conv / Gemm / MatMul / Einsum / Mul / ReduceSum / Sigmoid / Relu / Clip /
BatchNormalization / pooling / Add / Resize ... ops. `convs` lists every kept Conv's
(group, kernel_shape, strides, pads, dilations).
"""

from __future__ import annotations

import collections
import difflib

import onnx

LAYOUT = frozenset(
    ["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice", "Split", "Concat",
     "Expand", "Gather"]
)
STATIC_SOURCES = frozenset(["Constant", "Shape", "Size"])


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def normalize(model: onnx.ModelProto) -> dict:
    g = model.graph
    static = {t.name for t in g.initializer}
    alias: dict[str, str] = {}
    kept: list[onnx.NodeProto] = []
    dropped = collections.Counter()

    def real(v: str) -> str:
        while v in alias:
            v = alias[v]
        return v

    for n in g.node:
        inputs = [real(i) for i in n.input if i]
        if n.op_type in STATIC_SOURCES or all(i in static for i in inputs):
            static.update(n.output)
            dropped["static"] += 1
        elif n.op_type == "Identity":
            alias[n.output[0]] = inputs[0]
            dropped["identity"] += 1
        else:
            kept.append(n)

    consumers = collections.Counter(real(i) for n in kept for i in n.input if i)
    consumers.update(real(o.name) for o in g.output)
    producer = {o: n for n in kept for o in n.output}
    folded = set()
    for n in kept:
        if n.op_type != "BatchNormalization":
            continue
        src = real(n.input[0])
        conv = producer.get(src)
        if (
            conv is not None
            and conv.op_type == "Conv"
            and real(conv.input[1]) in static
            and consumers[src] == 1
        ):
            folded.add(id(n))
            # The BN's output now stands for the folded conv's.
            alias[n.output[0]] = src
    dropped["bn_folded"] = len(folded)
    kept = [n for n in kept if id(n) not in folded]

    ops = [n.op_type for n in kept]
    convs = [
        (
            _attr(n, "group", 1),
            list(_attr(n, "kernel_shape", [])),
            list(_attr(n, "strides", [1, 1])),
            list(_attr(n, "pads", [0, 0, 0, 0])),
            list(_attr(n, "dilations", [1, 1])),
        )
        for n in kept
        if n.op_type == "Conv"
    ]
    return {
        "ops": ops,
        "compute": [o for o in ops if o not in LAYOUT],
        "convs": convs,
        "dropped": dict(dropped),
        "raw": dict(collections.Counter(n.op_type for n in g.node)),
    }


def diff(a: list[str], b: list[str]) -> dict:
    """Differences between op lists `a` (rust) and `b` (torch): each distinct replaced/inserted/
    deleted chunk with its count, and the first few positions."""
    chunks = collections.Counter()
    first = []
    sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            continue
        chunks[(" ".join(a[i1:i2]) or "-", " ".join(b[j1:j2]) or "-")] += 1
        if len(first) < 5:
            first.append({"rust_at": i1, "rust": a[i1:i2], "torch_at": j1, "torch": b[j1:j2]})
    return {
        "chunks": [{"rust": r, "torch": t, "count": c} for (r, t), c in chunks.most_common()],
        "first": first,
    }
