"""ShuffleNetV2 1.0 (torchvision `shufflenet_v2_x1_0`) and Dy-shuffle, mirroring
`compiler/src/zoo/shufflenet.rs` module for module.

Dy-shuffle: stride-1 units split channels 3:1; the right quarter goes through dynamic 1x1 ->
3x3 depthwise -> 1x1 (`branch2.{0,3,5}`) with its own predictor `branch2.route`; concat and
channel shuffle as ShuffleNetV2. Downsampling units, stem, conv5 and fc are static.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dyconv import G, Coeffs, ConvBN, DyConvBN, Predictor

#: (repeats, output width) of stages 2..4.
STAGES = [(4, 116), (8, 232), (4, 464)]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, c, h, w)


class DownsampleUnit(nn.Module):
    def __init__(self, cin: int, c: int):
        super().__init__()
        half = c // 2
        # Submodules named by the zoo's scopes (torchvision's Sequential indices).
        self.branch1 = nn.ModuleDict(
            {"0": ConvBN(cin, cin, 3, 2, groups=cin), "2": ConvBN(cin, half, 1, act="relu")}
        )
        self.branch2 = nn.ModuleDict(
            {
                "0": ConvBN(cin, half, 1, act="relu"),
                "3": ConvBN(half, half, 3, 2, groups=half),
                "5": ConvBN(half, half, 1, act="relu"),
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = self.branch1["2"](self.branch1["0"](x))
        b = self.branch2
        right = b["5"](b["3"](b["0"](x)))
        return channel_shuffle(torch.cat([left, right], 1), 2)


class StaticBranch(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.add_module("0", ConvBN(c, c, 1, act="relu"))
        self.add_module("3", ConvBN(c, c, 3, groups=c))
        self.add_module("5", ConvBN(c, c, 1, act="relu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self._modules
        return m["5"](m["3"](m["0"](x)))


class DynamicBranch(nn.Module):
    def __init__(self, c: int, form: str, mixing: str):
        super().__init__()
        dy = dict(form=form, mixing=mixing)
        self.route = Predictor(c, 3 * c * G)
        self.add_module("0", DyConvBN(c, c, 1, act="relu", **dy))
        self.add_module("3", DyConvBN(c, c, 3, groups=c, **dy))
        self.add_module("5", DyConvBN(c, c, 1, act="relu", **dy))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self._modules
        eta = Coeffs(self.route(x), self.route.total)
        y = m["5"](m["3"](m["0"](x, eta), eta), eta)
        eta.finish()
        return y


class BasicUnit(nn.Module):
    """Stride-1 unit: split (1:1, or 3:1 with a dynamic right branch), branch, concat, shuffle."""

    def __init__(self, c: int, dynamic: bool, form: str, mixing: str):
        super().__init__()
        right = c // 4 if dynamic else c // 2
        self.sizes = [c - right, right]
        self.branch2 = DynamicBranch(right, form, mixing) if dynamic else StaticBranch(right)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = torch.split(x, self.sizes, 1)
        return channel_shuffle(torch.cat([left, self.branch2(right)], 1), 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, dynamic: bool, form: str = "mix", mixing: str = "einsum"):
        super().__init__()
        self.conv1 = ConvBN(3, 24, 3, 2, act="relu")
        c = 24
        for s, (repeats, width) in enumerate(STAGES):
            units = [DownsampleUnit(c, width)]
            units += [BasicUnit(width, dynamic, form, mixing) for _ in range(repeats - 1)]
            self.add_module(f"stage{s + 2}", nn.Sequential(*units))
            c = width
        self.conv5 = ConvBN(c, 1024, 1, act="relu")
        self.fc = nn.Linear(1024, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv1(x), 3, 2, 1)
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.fc(self.conv5(x).mean([2, 3]))
