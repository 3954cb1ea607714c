#!/usr/bin/env python3
"""Export small dynamic-convolution networks in the forms published implementations write them,
for dync's recognition tests.

Models (each a few blocks on a 3x32x32 input, 10 logits):

  dycnn   DY-CNN (Chen et al., CVPR 2020; the reference implementation's Dynamic_conv2d):
          attention = GAP -> 1x1 conv -> ReLU -> 1x1 conv (+bias) -> view [B,K] -> / temperature
          -> softmax; the kernel bank [K, O, C/g, k, k] and a bias bank [K, O] mixed by torch.mm;
          batch folded into the groups. Three dynamic convs (3x3, depthwise 3x3 stride 2, 1x1).
  odconv  ODConv (Li et al., ICLR 2022; the reference ODConv2d): channel, filter, spatial and
          kernel attention (sigmoid / softmax with temperature); x * channel attention, the bank
          mixed by spatial * kernel attention * weight summed over the kernels, batch folded into
          the groups, output * filter attention. Two dynamic convs (3x3, 3x3 grouped).

Every entry is one model, one exporter, one batch:

    <out>/<model>-<exporter>-b<N>/model.onnx     self-contained
    <out>/<model>-<exporter>-b<N>/inputs/x.npy   seeded input
    <out>/manifest.json                          entries with the number of dynamic convs

Exporters: `legacy` (dynamo=False, opset 17) and `dynamo` (dynamo=True, default opset); batches
1 and 2. Weights are seeded (torch.manual_seed(SEED)) and BatchNorm statistics randomised, so
every export computes the same function. Incremental: nothing is redone when the manifest
records this script's hash and the same torch version. Exit status 0 on success, 1 on any
failure (the traceback is printed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

SEED = 0
SIZE = 32
BATCHES = [1, 2]
EXPORTERS = ["legacy", "dynamo"]
LEGACY_OPSET = 17


def build(name: str):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class DyAttention(nn.Module):
        """DY-CNN attention: GAP -> 1x1 conv -> ReLU -> 1x1 conv -> softmax(z / T)."""

        def __init__(self, cin: int, k: int, temperature: float):
            super().__init__()
            hidden = max(cin // 4, 4)
            self.fc1 = nn.Conv2d(cin, hidden, 1, bias=False)
            self.fc2 = nn.Conv2d(hidden, k, 1, bias=True)
            self.temperature = temperature

        def forward(self, x):
            a = F.adaptive_avg_pool2d(x, 1)
            a = self.fc2(F.relu(self.fc1(a))).view(x.size(0), -1)
            return F.softmax(a / self.temperature, 1)

    class DyConv(nn.Module):
        """DY-CNN's Dynamic_conv2d: K kernels and biases mixed per sample by attention."""

        def __init__(self, cin, cout, k, stride=1, groups=1, experts=4, temperature=30.0):
            super().__init__()
            self.cin, self.cout, self.k = cin, cout, k
            self.stride, self.groups, self.experts = stride, groups, experts
            self.attention = DyAttention(cin, experts, temperature)
            self.weight = nn.Parameter(torch.randn(experts, cout, cin // groups, k, k) * 0.3)
            self.bias = nn.Parameter(torch.randn(experts, cout) * 0.1)

        def forward(self, x):
            b, c, h, w = x.shape
            att = self.attention(x)
            x = x.view(1, -1, h, w)
            weight = torch.mm(att, self.weight.view(self.experts, -1))
            weight = weight.view(b * self.cout, self.cin // self.groups, self.k, self.k)
            bias = torch.mm(att, self.bias).view(-1)
            out = F.conv2d(x, weight, bias, self.stride, self.k // 2, 1, self.groups * b)
            return out.view(b, self.cout, out.size(-2), out.size(-1))

    class ODAttention(nn.Module):
        """ODConv's Attention: four heads on a shared squeeze (channel, filter, spatial, kernel)."""

        def __init__(self, cin, cout, k, groups, experts, temperature=1.0):
            super().__init__()
            hidden = max(cin // 4, 8)
            self.temperature = temperature
            self.fc = nn.Conv2d(cin, hidden, 1, bias=False)
            self.bn = nn.BatchNorm2d(hidden)
            self.channel_fc = nn.Conv2d(hidden, cin, 1, bias=True)
            self.depthwise = cin == groups and cin == cout
            self.filter_fc = None if self.depthwise else nn.Conv2d(hidden, cout, 1, bias=True)
            self.spatial_fc = nn.Conv2d(hidden, k * k, 1, bias=True)
            self.kernel_fc = nn.Conv2d(hidden, experts, 1, bias=True)
            self.k, self.experts = k, experts

        def forward(self, x):
            a = F.relu(self.bn(self.fc(F.adaptive_avg_pool2d(x, 1))))
            b = x.size(0)
            channel = torch.sigmoid(self.channel_fc(a).view(b, -1, 1, 1) / self.temperature)
            if self.filter_fc is None:
                filt = 1.0
            else:
                filt = torch.sigmoid(self.filter_fc(a).view(b, -1, 1, 1) / self.temperature)
            spatial = torch.sigmoid(
                self.spatial_fc(a).view(b, 1, 1, 1, self.k, self.k) / self.temperature
            )
            kernel = F.softmax(
                self.kernel_fc(a).view(b, -1, 1, 1, 1, 1) / self.temperature, dim=1
            )
            return channel, filt, spatial, kernel

    class ODConv(nn.Module):
        """ODConv2d (_forward_impl_common)."""

        def __init__(self, cin, cout, k, stride=1, groups=1, experts=4):
            super().__init__()
            self.cin, self.cout, self.k = cin, cout, k
            self.stride, self.groups = stride, groups
            self.attention = ODAttention(cin, cout, k, groups, experts)
            self.weight = nn.Parameter(torch.randn(experts, cout, cin // groups, k, k) * 0.3)

        def forward(self, x):
            channel, filt, spatial, kernel = self.attention(x)
            b, c, h, w = x.size()
            x = x * channel
            x = x.reshape(1, -1, h, w)
            weight = spatial * kernel * self.weight.unsqueeze(dim=0)
            weight = torch.sum(weight, dim=1).view([-1, self.cin // self.groups, self.k, self.k])
            out = F.conv2d(x, weight, None, self.stride, self.k // 2, 1, self.groups * b)
            out = out.view(b, self.cout, out.size(-2), out.size(-1))
            return out * filt

    def block(conv, cout):
        return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU())

    if name == "dycnn":
        layers = [
            nn.Conv2d(3, 8, 3, 1, 1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            block(DyConv(8, 16, 3), 16),
            block(DyConv(16, 16, 3, stride=2, groups=16), 16),
            block(DyConv(16, 24, 1), 24),
        ]
        dynamic, cout = 3, 24
    elif name == "odconv":
        layers = [
            nn.Conv2d(3, 8, 3, 1, 1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            block(ODConv(8, 16, 3), 16),
            block(ODConv(16, 16, 3, stride=2, groups=4), 16),
        ]
        dynamic, cout = 2, 16
    else:
        raise ValueError(f"unknown model {name}")
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cout, 10))
    gen = torch.Generator().manual_seed(SEED + 1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
    return model.eval(), dynamic


MODELS = ["dycnn", "odconv"]


def script_hash() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def export_one(name: str, exporter: str, batch: int, out: Path) -> dict:
    import numpy as np
    import torch

    torch.manual_seed(SEED)
    model, dynamic = build(name)
    entry = f"{name}-{exporter}-b{batch}"
    d = out / entry
    (d / "inputs").mkdir(parents=True, exist_ok=True)
    path = d / "model.onnx"
    x = torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(SEED + 2))
    with torch.no_grad():
        if exporter == "legacy":
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=LEGACY_OPSET)
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False, verbose=False)
    np.save(d / "inputs" / "x.npy", x.numpy())
    return {
        "name": entry,
        "model": name,
        "exporter": exporter,
        "batch": batch,
        "path": f"{entry}/model.onnx",
        "input": f"{entry}/inputs/x.npy",
        "dynamic_convs": dynamic,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    args = ap.parse_args()
    import torch

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    stamp = {"script": script_hash(), "torch": torch.__version__}
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("stamp") == stamp and all(
            (out / e["path"]).exists() for e in old.get("entries", [])
        ):
            return 0
    entries = []
    for name in MODELS:
        for exporter in EXPORTERS:
            for batch in BATCHES:
                entries.append(export_one(name, exporter, batch, out))
                print(f"exported {entries[-1]['name']}", file=sys.stderr)
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"stamp": stamp, "entries": entries}, indent=1))
    tmp.replace(manifest_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
