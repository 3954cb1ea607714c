"""DyNet dynamic convolution and the dync model zoo in PyTorch (the reference of dync's Rust
zoo): `dyconv` (the operator and layers), one module per network family, `zoo` (registry),
`weights` (loading a Rust zoo export's initializers), `onnxcmp` (op-sequence normalization).
"""

from .dyconv import G, Coeffs, ConvBN, DyConv2d, DyConvBN, Predictor

__all__ = ["G", "Coeffs", "ConvBN", "DyConv2d", "DyConvBN", "Predictor"]
