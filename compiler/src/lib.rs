//! dync: an ahead-of-time compiler for dynamic-convolution CNNs.
pub use dync_interp as interp;
pub use dync_ir as ir;
pub use dync_onnx as onnx;
pub mod zoo;
