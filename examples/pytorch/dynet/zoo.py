"""The registry of the PyTorch zoo: the same network names as `dync zoo list`, and the same
default mixing op per exporter style as `compiler/src/zoo/mod.rs`.

`build(name, form, mixing)` returns the network in eval mode with PyTorch's default init; load a
Rust export's weights with `weights.load_onnx_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from .dyconv import FORMS, MIXINGS
from .fcn import FCN
from .mobilenetv2 import MobileNetV2
from .mobilenetv3 import MobileNetV3
from .resnet import ResNet
from .shufflenet import ShuffleNetV2


@dataclass(frozen=True)
class Network:
    name: str
    dynamic: bool
    #: Segmentation map `[B, 19, H, W]` (else `[B, 1000]` logits).
    segmentation: bool
    #: Default mixing for the legacy and the dynamo style (as the Rust registry).
    mixing: tuple[str, str]
    make: Callable[[bool, str, str], nn.Module]


def _net(name, dynamic, mixing, make, segmentation=False):
    return Network(name, dynamic, segmentation, mixing, make)


NETWORKS = [
    _net("dy-mobile", True, ("einsum", "matmul"), MobileNetV2),
    _net("mobilenetv2", False, ("einsum", "matmul"), MobileNetV2),
    _net("dy-shuffle", True, ("mulsum", "einsum"), ShuffleNetV2),
    _net("shufflenetv2", False, ("mulsum", "einsum"), ShuffleNetV2),
    _net("dy-resnet18", True, ("matmul", "mulsum"), lambda d, f, m: ResNet(False, d, f, m)),
    _net("resnet18", False, ("matmul", "mulsum"), lambda d, f, m: ResNet(False, d, f, m)),
    _net("dy-resnet50", True, ("einsum", "matmul"), lambda d, f, m: ResNet(True, d, f, m)),
    _net("resnet50", False, ("einsum", "matmul"), lambda d, f, m: ResNet(True, d, f, m)),
    _net(
        "dy-mobilenetv3-small",
        True,
        ("matmul", "mulsum"),
        lambda d, f, m: MobileNetV3(False, d, f, m),
    ),
    _net(
        "mobilenetv3-small",
        False,
        ("matmul", "mulsum"),
        lambda d, f, m: MobileNetV3(False, d, f, m),
    ),
    _net(
        "dy-mobilenetv3-large",
        True,
        ("mulsum", "einsum"),
        lambda d, f, m: MobileNetV3(True, d, f, m),
    ),
    _net(
        "mobilenetv3-large",
        False,
        ("mulsum", "einsum"),
        lambda d, f, m: MobileNetV3(True, d, f, m),
    ),
    _net("dy-fcn-resnet50", True, ("einsum", "mulsum"), FCN, segmentation=True),
    _net("fcn-resnet50", False, ("einsum", "mulsum"), FCN, segmentation=True),
]
EXPORTERS = ("legacy", "dynamo")


def find(name: str) -> Network:
    for n in NETWORKS:
        if n.name == name:
            return n
    raise ValueError(f"unknown network {name!r}; known: {', '.join(n.name for n in NETWORKS)}")


def default_mixing(name: str, exporter: str) -> str:
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; known: {', '.join(EXPORTERS)}")
    return find(name).mixing[EXPORTERS.index(exporter)]


def build(name: str, form: str = "mix", mixing: str = "einsum") -> nn.Module:
    """The network `name` in eval mode (form and mixing only matter for dynamic networks)."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; known: {', '.join(FORMS)}")
    if mixing not in MIXINGS:
        raise ValueError(f"unknown mixing {mixing!r}; known: {', '.join(MIXINGS)}")
    net = find(name)
    return net.make(net.dynamic, form, mixing).eval()
