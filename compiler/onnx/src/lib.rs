//! ONNX frontend of dync: the ONNX schema ([`proto`]), safe loading of model files and their
//! external data, import into the IR with shape inference and constant folding, and writing
//! ONNX (for the zoo).

pub mod proto;
