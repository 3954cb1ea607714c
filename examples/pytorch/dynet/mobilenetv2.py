"""MobileNetV2 (torchvision `mobilenet_v2`, width 1.0) and Dy-mobile, mirroring
`compiler/src/zoo/mobilenetv2.rs` module for module (same names, same order).

Dy-mobile: every inverted residual becomes a DyNet block with no expansion -- dynamic 1x1
(C_in -> C) -> 3x3 grouped with 6 channels per group (stride here) -> 1x1, ReLU6 after the first
two, one predictor (`route`) on the block input feeding all three, a residual add when the
stride is 1 and the widths match. Widths are MobileNetV2's rounded to a multiple of 6.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dyconv import G, Coeffs, ConvBN, DyConvBN, Predictor

#: (expansion t, width c, repeats n, first stride s).
SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
GROUP_WIDTH = 6


def round6(c: int) -> int:
    return (c + GROUP_WIDTH // 2) // GROUP_WIDTH * GROUP_WIDTH


class InvertedResidual(nn.Module):
    """MobileNetV2's block: `expand` (when t != 1), `dw`, `project`."""

    def __init__(self, cin: int, t: int, c: int, stride: int):
        super().__init__()
        self.residual = stride == 1 and cin == c
        hidden = cin * t
        self.has_expand = t != 1
        if self.has_expand:
            self.expand = ConvBN(cin, hidden, 1, act="relu6")
        self.dw = ConvBN(hidden, hidden, 3, stride, groups=hidden, act="relu6")
        self.project = ConvBN(hidden, c, 1)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.has_expand else x
        y = self.project(self.dw(y))
        return x + y if self.residual else y


class DyBlock(nn.Module):
    """Dy-mobile's block: `route`, dynamic `conv1`, `conv2` (grouped 3x3), `conv3`."""

    def __init__(self, cin: int, c: int, stride: int, form: str, mixing: str):
        super().__init__()
        c = round6(c)
        self.residual = stride == 1 and cin == c
        self.route = Predictor(cin, 3 * c * G)
        dy = dict(form=form, mixing=mixing)
        self.conv1 = DyConvBN(cin, c, 1, act="relu6", **dy)
        self.conv2 = DyConvBN(c, c, 3, stride, groups=c // GROUP_WIDTH, act="relu6", **dy)
        self.conv3 = DyConvBN(c, c, 1, **dy)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eta = Coeffs(self.route(x), self.route.total)
        y = self.conv3(self.conv2(self.conv1(x, eta), eta), eta)
        eta.finish()
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    def __init__(self, dynamic: bool, form: str = "mix", mixing: str = "einsum"):
        super().__init__()
        layers: list[nn.Module] = [ConvBN(3, 32, 3, 2, act="relu6")]
        c = 32
        for t, width, n, s in SETTINGS:
            for i in range(n):
                stride = s if i == 0 else 1
                if dynamic:
                    block = DyBlock(c, width, stride, form, mixing)
                else:
                    block = InvertedResidual(c, t, width, stride)
                layers.append(block)
                c = block.out_channels
        layers.append(ConvBN(c, 1280, 1, act="relu6"))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))
