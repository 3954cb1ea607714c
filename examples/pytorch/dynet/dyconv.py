"""DyNet's dynamic convolution in PyTorch, and the layers the zoo's networks are made of.

`DyConv2d` holds a bank of g kernels per output channel and convolves a batch with kernels
mixed per image by coefficients eta `[B, O*g]` (DyNet, Zhang et al., arXiv 2004.10694):

- form `mix` (inference, Eq. 1): mix the bank per image with eta, then one Conv with the batch
  as groups -- the input viewed as `[1, B*C, H, W]`, the mixed weight as `[B*O, C/groups, k, k]`,
  `groups = B*groups`, the output permuted `[1, 0, 2, 3]` and viewed back as `[B, O, H', W']`
  (as /work/shared/dynet.md section 3(a) and timm's CondConv2d write it). The mixing op is
  `einsum` (`einsum("bog,ogcij->bocij")`), `matmul` (`eta[B, O, 1, g] @ bank[O, g, C/groups*k*k]`)
  or `mulsum` (`(eta[B, O, g, 1, 1, 1] * bank).sum(2)`). ONNX's Conv.group is static, so the
  exported graph is valid for the traced batch only.
- form `train` (Eq. 2): one Conv with all O*g kernels, the output viewed `[B, O, g, H', W']`,
  multiplied by eta viewed `[B, O, g, 1, 1]` and summed over g. Any batch, g times the MACs.

Both forms compute the same function from the same bank; the bank parameter `weight` is stored in
the layout its form reads without a copy (train `[O*g, C/groups, k, k]`, einsum and mulsum
`[O, g, C/groups, k, k]`, matmul `[O, g, C/groups*k*k]`), all the same data in the same order,
so `load_state_reshaped` moves weights between forms and mixings. This mirrors dync's Rust zoo
(`compiler/src/zoo/builder.rs`) layer by layer, with the same parameter names
(`<scope>.conv.weight`, `<scope>.bn.*`, `route.fc*.{weight,bias}`), so that a zoo export's
initializers load as a `state_dict`.

Rejected with ValueError: an unknown form or mixing, channels not divisible by groups, eta of the
wrong width, a bank of the wrong size.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Kernels per output channel (the paper's g).
G = 6
FORMS = ("mix", "train")
MIXINGS = ("einsum", "matmul", "mulsum")
#: Activations after a conv's BatchNorm, as the Rust builder's `Act`.
ACTS = ("none", "relu", "relu6", "hardswish")


def check_act(act: str) -> str:
    """`act` if it is a known activation name, else ValueError."""
    if act not in ACTS:
        raise ValueError(f"unknown activation {act!r}; known: {', '.join(ACTS)}")
    return act


def activation(x: torch.Tensor, act: str) -> torch.Tensor:
    """The activation `act` (ReLU6 exports as Clip(0, 6), HardSwish as HardSwish)."""
    if act == "none":
        return x
    if act == "relu":
        return F.relu(x)
    if act == "relu6":
        return F.relu6(x)
    if act == "hardswish":
        return F.hardswish(x)
    raise ValueError(f"unknown activation {act!r}; known: {', '.join(ACTS)}")


def same_pad(k: int, dilation: int) -> int:
    """The "same" padding of the zoo: dilation*(k-1)/2."""
    return dilation * (k - 1) // 2


def out_size(n: int, k: int, stride: int, dilation: int) -> int:
    """Output side of a conv with "same" padding."""
    return (n + 2 * same_pad(k, dilation) - dilation * (k - 1) - 1) // stride + 1


@torch.no_grad()
def load_state_reshaped(model: nn.Module, state: dict) -> None:
    """Loads `state` (every key of `model`'s state_dict but `num_batches_tracked`), each value
    reshaped to the model's shape: moves a trained network between forms and mixings."""
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    if set(own) != set(state):
        raise ValueError(
            f"state keys differ: missing {sorted(set(own) - set(state))[:5]}, "
            f"unexpected {sorted(set(state) - set(own))[:5]}"
        )
    for key, value in own.items():
        src = state[key]
        if src.numel() != value.numel():
            raise ValueError(f"{key}: {tuple(src.shape)} does not fit {tuple(value.shape)}")
        value.copy_(src.reshape(value.shape))


class DyConv2d(nn.Module):
    """A dynamic conv: bank `weight` of g kernels per output channel, mixed by eta `[B, O*g]`.

    `forward(x, eta)`: x `[B, C, H, W]`, eta `[B, O*g]` (coefficient of kernel i of output channel
    o at column o*g + i); returns `[B, O, H', W']`. No bias (a BatchNorm follows in the zoo).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        g: int = G,
        form: str = "mix",
        mixing: str = "einsum",
    ):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"unknown form {form!r}; known: {', '.join(FORMS)}")
        if mixing not in MIXINGS:
            raise ValueError(f"unknown mixing {mixing!r}; known: {', '.join(MIXINGS)}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"dynamic conv with {groups} groups on {in_channels} -> {out_channels} channels"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.groups, self.g, self.form, self.mixing = groups, g, form, mixing
        self.padding = same_pad(kernel_size, dilation)
        cin_g, k = in_channels // groups, kernel_size
        fan_in = cin_g * k * k
        self.weight = nn.Parameter(torch.empty(self._layout()))
        # He-uniform for a mixed kernel: the kernels of a bank are summed with weights eta.
        bound = (3.0 / (fan_in * g)) ** 0.5
        nn.init.uniform_(self.weight, -bound, bound)

    def _layout(self) -> tuple[int, ...]:
        o, g, c, k = self.out_channels, self.g, self.in_channels // self.groups, self.kernel_size
        if self.form == "train":
            return (o * g, c, k, k)
        if self.mixing == "matmul":
            return (o, g, c * k * k)
        return (o, g, c, k, k)

    def forward(self, x: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        o, g, k = self.out_channels, self.g, self.kernel_size
        if c != self.in_channels or eta.shape[-1] != o * g:
            raise ValueError(
                f"dynamic conv {self.in_channels}->{o} got input {tuple(x.shape)} and eta "
                f"{tuple(eta.shape)} (expected [B, {o * g}])"
            )
        ho = out_size(h, k, self.stride, self.dilation)
        wo = out_size(w, k, self.stride, self.dilation)
        if self.form == "train":
            y = F.conv2d(
                x, self.weight, None, self.stride, self.padding, self.dilation, self.groups
            )
            y = y.view(b, o, g, ho, wo)
            return (y * eta.view(b, o, g, 1, 1)).sum(2)
        e = eta.view(b, o, g)
        if self.mixing == "einsum":
            mixed = torch.einsum("bog,ogcij->bocij", e, self.weight)
        elif self.mixing == "matmul":
            mixed = torch.matmul(e.unsqueeze(2), self.weight)
        else:
            mixed = (e.view(b, o, g, 1, 1, 1) * self.weight).sum(2)
        wmix = mixed.reshape(b * o, c // self.groups, k, k)
        y = F.conv2d(
            x.reshape(1, b * c, h, w),
            wmix,
            None,
            self.stride,
            self.padding,
            self.dilation,
            b * self.groups,
        )
        return y.permute(1, 0, 2, 3).reshape(b, o, ho, wo)


class Predictor(nn.Module):
    """A block's coefficient predictor: GAP -> Linear (-> ReLU -> Linear) -> sigmoid, `[B, total]`.

    Submodules `fc` (one layer) or `fc1`/`fc2` (with `hidden`), as the zoo's `route` scope.
    """

    def __init__(self, channels: int, total: int, hidden: int | None = None):
        super().__init__()
        self.total = total
        if hidden is None:
            self.fc = nn.Linear(channels, total)
        else:
            self.fc1 = nn.Linear(channels, hidden)
            self.fc2 = nn.Linear(hidden, total)
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = F.adaptive_avg_pool2d(x, 1).flatten(1)
        if self.hidden is None:
            v = self.fc(v)
        else:
            v = self.fc2(F.relu(self.fc1(v)))
        return torch.sigmoid(v)


class Coeffs:
    """A block's predictor output `[B, total]`, handed out conv by conv in block order."""

    def __init__(self, eta: torch.Tensor, total: int):
        self.eta, self.total, self.used = eta, total, 0

    def take(self, n: int) -> torch.Tensor:
        start, end = self.used, self.used + n
        if end > self.total:
            raise ValueError(f"predictor of {self.total} outputs asked for {start}..{end}")
        self.used = end
        if start == 0 and end == self.total:
            return self.eta
        return self.eta[:, start:end]

    def finish(self) -> None:
        if self.used != self.total:
            raise ValueError(f"predictor of {self.total} outputs fed only {self.used}")


class ConvBN(nn.Module):
    """Static conv (no bias) -> BatchNorm (eval) -> activation; submodules `conv`, `bn`."""

    def __init__(self, cin: int, cout: int, k: int, stride=1, dilation=1, groups=1, act="none"):
        super().__init__()
        self.conv = nn.Conv2d(
            cin, cout, k, stride, same_pad(k, dilation), dilation, groups, bias=False
        )
        self.bn = nn.BatchNorm2d(cout)
        self.act = check_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activation(self.bn(self.conv(x)), self.act)


class DyConvBN(nn.Module):
    """Dynamic conv -> BatchNorm (eval, unfolded) -> activation; submodules `conv`, `bn`.

    `forward(x, coeffs)` takes the next O*g columns of the block's `Coeffs`.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int,
        stride=1,
        dilation=1,
        groups=1,
        act="none",
        form="mix",
        mixing="einsum",
        g=G,
    ):
        super().__init__()
        self.conv = DyConv2d(cin, cout, k, stride, dilation, groups, g, form, mixing)
        self.bn = nn.BatchNorm2d(cout)
        self.act = check_act(act)

    @property
    def width(self) -> int:
        """Columns of eta this conv takes."""
        return self.conv.out_channels * self.conv.g

    def forward(self, x: torch.Tensor, coeffs: Coeffs) -> torch.Tensor:
        eta = coeffs.take(self.width)
        return activation(self.bn(self.conv(x, eta)), self.act)
