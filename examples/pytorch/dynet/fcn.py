"""Dilated FCN on ResNet50 / Dy-ResNet50 (torchvision `fcn_resnet50` without the auxiliary
head), 19 classes, mirroring `compiler/src/zoo/fcn.rs`: `backbone` (output stride 8, dilations
2 and 4), `classifier.0` (3x3 -> 512, BN, ReLU), `classifier.4` (1x1 -> 19 with bias), bilinear
upsampling (align_corners=False) back to the input size.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dyconv import ConvBN
from .resnet import Backbone

CLASSES = 19


class FCN(nn.Module):
    def __init__(self, dynamic: bool, form: str = "mix", mixing: str = "einsum"):
        super().__init__()
        self.backbone = Backbone(True, [3, 4, 6, 3], dynamic, True, form, mixing)
        self.classifier = nn.ModuleDict(
            {
                "0": ConvBN(self.backbone.out_channels, 512, 3, act="relu"),
                "4": nn.Conv2d(512, CLASSES, 1),
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = self.classifier["4"](self.classifier["0"](self.backbone(x)))
        return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
