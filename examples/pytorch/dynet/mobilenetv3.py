"""MobileNetV3-Small/Large (torchvision) and their DyNet versions, mirroring
`compiler/src/zoo/mobilenetv3.rs`: in the dynamic versions every conv of every inverted residual
(`expand` when present, `dw`, `project`) is dynamic, fed by the block's predictor `route`;
squeeze-excitation (`se`), activations, stem, last conv and classifier are static.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dyconv import G, Coeffs, ConvBN, DyConvBN, Predictor

#: (kernel, expanded width, output width, squeeze-excitation, HardSwish (else ReLU), stride).
LARGE = [
    (3, 16, 16, False, False, 1),
    (3, 64, 24, False, False, 2),
    (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2),
    (5, 120, 40, True, False, 1),
    (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2),
    (3, 200, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 480, 112, True, True, 1),
    (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2),
    (5, 960, 160, True, True, 1),
    (5, 960, 160, True, True, 1),
]
SMALL = [
    (3, 16, 16, True, False, 2),
    (3, 72, 24, False, False, 2),
    (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2),
    (5, 240, 40, True, True, 1),
    (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1),
    (5, 144, 48, True, True, 1),
    (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1),
    (5, 576, 96, True, True, 1),
]


def make_divisible(v: int, d: int = 8) -> int:
    """torchvision's `_make_divisible`: a multiple of d, never below 90 % of v."""
    r = max((v + d // 2) // d * d, d)
    return r + d if r * 10 < v * 9 else r


class SqueezeExcitation(nn.Module):
    """pool -> `fc1` (1x1, bias) -> ReLU -> `fc2` (1x1, bias) -> HardSigmoid -> scale."""

    def __init__(self, c: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return F.hardsigmoid(s) * x


class Block(nn.Module):
    def __init__(self, cin, setting, dynamic, form, mixing):
        super().__init__()
        k, exp, out, se, hs, stride = setting
        act = "hardswish" if hs else "relu"
        self.residual = stride == 1 and cin == out
        self.has_expand = exp != cin
        self.dynamic, self.has_se = dynamic, se
        if dynamic:
            outs = ([exp] if self.has_expand else []) + [exp, out]
            self.route = Predictor(cin, sum(outs) * G)
            conv = lambda *a, **kw: DyConvBN(*a, form=form, mixing=mixing, **kw)  # noqa: E731
        else:
            conv = ConvBN
        if self.has_expand:
            self.expand = conv(cin, exp, 1, act=act)
        self.dw = conv(exp, exp, k, stride, groups=exp, act=act)
        if se:
            self.se = SqueezeExcitation(exp, make_divisible(exp // 4))
        self.project = conv(exp, out, 1)
        self.out_channels = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic:
            eta = Coeffs(self.route(x), self.route.total)
            call = lambda m, y: m(y, eta)  # noqa: E731
        else:
            call = lambda m, y: m(y)  # noqa: E731
        y = call(self.expand, x) if self.has_expand else x
        y = call(self.dw, y)
        if self.has_se:
            y = self.se(y)
        y = call(self.project, y)
        if self.dynamic:
            eta.finish()
        return x + y if self.residual else y


class MobileNetV3(nn.Module):
    def __init__(self, large: bool, dynamic: bool, form: str = "mix", mixing: str = "einsum"):
        super().__init__()
        settings, last = (LARGE, 1280) if large else (SMALL, 1024)
        layers: list[nn.Module] = [ConvBN(3, 16, 3, 2, act="hardswish")]
        c = 16
        for s in settings:
            layers.append(Block(c, s, dynamic, form, mixing))
            c = layers[-1].out_channels
        layers.append(ConvBN(c, 6 * c, 1, act="hardswish"))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(6 * c, last), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(last, 1000)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))
