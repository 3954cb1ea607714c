"""ResNet18/50 (torchvision v1.5) and Dy-ResNet18/50, mirroring `compiler/src/zoo/resnet.rs`;
`Backbone` also serves the dilated FCN.

Dy-ResNets: every conv of every residual block is dynamic with its output channels halved; one
predictor per block (`route`: GAP -> fc1 (C -> C/4) -> ReLU -> fc2 -> sigmoid) feeds all of the
block's convs. Stem, projection shortcuts (`downsample`) and the classifier are static.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dyconv import G, Coeffs, ConvBN, DyConvBN, Predictor

BASE_WIDTHS = [64, 128, 256, 512]


class Block(nn.Module):
    """A basic or bottleneck block; `conv1..3` static or dynamic, `downsample` when needed."""

    def __init__(self, cin, width, stride, dilation, bottleneck, dynamic, form, mixing):
        super().__init__()
        out = width * 4 if bottleneck else width
        if bottleneck:
            specs = [
                (width, 1, 1, 1, "relu"),
                (width, 3, stride, dilation, "relu"),
                (out, 1, 1, 1, "none"),
            ]
        else:
            specs = [(width, 3, stride, dilation, "relu"), (out, 3, 1, dilation, "none")]
        self.dynamic = dynamic
        if dynamic:
            self.route = Predictor(cin, sum(s[0] for s in specs) * G, hidden=max(cin // 4, 1))
        c = cin
        self.names = []
        for i, (cout, k, s, d, act) in enumerate(specs):
            if dynamic:
                conv = DyConvBN(c, cout, k, s, d, act=act, form=form, mixing=mixing)
            else:
                conv = ConvBN(c, cout, k, s, d, act=act)
            self.names.append(f"conv{i + 1}")
            self.add_module(self.names[-1], conv)
            c = cout
        self.has_downsample = stride != 1 or cin != out
        if self.has_downsample:
            self.downsample = ConvBN(cin, out, 1, stride)
        self.out_channels = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.dynamic:
            eta = Coeffs(self.route(x), self.route.total)
            for n in self.names:
                y = self._modules[n](y, eta)
            eta.finish()
        else:
            for n in self.names:
                y = self._modules[n](y)
        shortcut = self.downsample(x) if self.has_downsample else x
        return F.relu(y + shortcut)


class Backbone(nn.Module):
    """Stem (`conv1`, max pool) and `layer1..4`; `dilated` replaces layer3/4's strides by
    dilation (output stride 8, a stage's first block keeping the previous dilation)."""

    def __init__(self, bottleneck, layers, dynamic, dilated, form="mix", mixing="einsum"):
        super().__init__()
        self.conv1 = ConvBN(3, 64, 7, 2, act="relu")
        c, dilation = 64, 1
        for l, (n, base) in enumerate(zip(layers, BASE_WIDTHS)):
            width = base // 2 if dynamic else base
            stride = 1 if l == 0 else 2
            previous = dilation
            if dilated and l >= 2:
                dilation *= stride
                stride = 1
            blocks = []
            for i in range(n):
                s, d = (stride, previous) if i == 0 else (1, dilation)
                blocks.append(Block(c, width, s, d, bottleneck, dynamic, form, mixing))
                c = blocks[-1].out_channels
            self.add_module(f"layer{l + 1}", nn.Sequential(*blocks))
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv1(x), 3, 2, 1)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ResNet(Backbone):
    """Backbone -> GAP -> `fc` (1000 classes)."""

    def __init__(self, bottleneck: bool, dynamic: bool, form="mix", mixing="einsum"):
        layers = [3, 4, 6, 3] if bottleneck else [2, 2, 2, 2]
        super().__init__(bottleneck, layers, dynamic, False, form, mixing)
        self.fc = nn.Linear(self.out_channels, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(super().forward(x), 1).flatten(1))
