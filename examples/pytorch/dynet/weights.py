"""Load the weights of a dync zoo export (the ONNX file itself) into the PyTorch network.

The Rust builder names every parameter initializer after its module scope, exactly as this
package names the `state_dict` keys (`layer1.0.conv1.conv.weight`, `layer1.0.route.fc1.bias`,
`features.3.bn.running_var`, ...). A key is resolved, in this order:

1. by name: an initializer of that name;
2. through an alias: the legacy style writes a parameter equal to an earlier one as
   `Identity(earlier) -> name`; the Identity chain is followed to its initializer;
3. by structure: the dynamo style shares one initializer among equal tensors, so the later
   names vanish. The key's module has other parameters that do have their own initializer (its
   weight: random weights never coincide); the one node reading them is the module's node, and
   the missing key is that node's input at the slot the module type fixes (Conv/Gemm: weight 1,
   bias 2; BatchNormalization: weight 1, bias 2, running_mean 3, running_var 4).

Values are reshaped to the parameter's shape when the element count matches (the dynamic
conv banks' layouts differ by form and mixing but hold the same data in the same order).

Rejected with WeightError: a key that none of the three finds, a size mismatch, or a float
initializer of the file, other than a scalar (Clip bounds and the like), that no key used (the
two networks would differ in structure).
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper

from .dyconv import load_state_reshaped

#: Input slot of each parameter in the node of a module of this type.
SLOTS = {
    nn.Conv2d: {"weight": 1, "bias": 2},
    nn.Linear: {"weight": 1, "bias": 2},
    nn.BatchNorm2d: {"weight": 1, "bias": 2, "running_mean": 3, "running_var": 4},
}


class WeightError(ValueError):
    pass


def load_onnx_weights(model: nn.Module, proto: onnx.ModelProto) -> dict:
    """Copies the initializers of `proto` into `model`; returns counts per resolution route."""
    graph = proto.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    alias = {
        n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input
    }

    def resolve(name: str) -> str | None:
        seen = set()
        while name not in inits:
            if name in seen or name not in alias:
                return None
            seen.add(name)
            name = alias[name]
        return name

    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    found: dict[str, str] = {}
    routes = {"name": 0, "identity": 0, "structure": 0}
    missing = []
    for key in state:
        if key in inits:
            found[key], route = key, "name"
        elif (r := resolve(key)) is not None:
            found[key], route = r, "identity"
        else:
            missing.append(key)
            continue
        routes[route] += 1
    for key in missing:
        src = _by_structure(model, graph, key, found, resolve)
        if src is None:
            raise WeightError(f"no initializer for parameter {key!r} in the ONNX file")
        found[key] = src
        routes["structure"] += 1

    new_state = {}
    for key, value in state.items():
        arr = inits[found[key]]
        if arr.size != value.numel():
            raise WeightError(
                f"parameter {key!r} {tuple(value.shape)} but initializer {found[key]!r} has "
                f"shape {arr.shape}"
            )
        new_state[key] = torch.from_numpy(np.array(arr, dtype=np.float32))
    load_state_reshaped(model, new_state)

    used = set(found.values())
    unused = [
        t.name
        for t in graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) > 0 and t.name not in used
    ]
    if unused:
        raise WeightError(f"float initializers no parameter uses: {unused[:8]} ({len(unused)})")
    return routes


def _by_structure(model, graph, key, found, resolve) -> str | None:
    prefix, _, local = key.rpartition(".")
    try:
        module = model.get_submodule(prefix)
    except AttributeError:
        return None
    slots = next((s for t, s in SLOTS.items() if isinstance(module, t)), None)
    if slots is None or local not in slots:
        return None
    for sibling, slot in slots.items():
        sib = found.get(f"{prefix}.{sibling}")
        if sibling == local or sib is None or sib != f"{prefix}.{sibling}":
            continue
        nodes = [n for n in graph.node if len(n.input) > slot and n.input[slot] == sib]
        if len(nodes) == 1 and len(nodes[0].input) > slots[local]:
            return resolve(nodes[0].input[slots[local]])
    return None
