//! ONNX frontend of dync: the ONNX schema ([`proto`]), safe loading of model files and their
//! external data, import into the IR with shape inference and constant folding, and writing
//! ONNX (for the zoo).

pub mod error;
pub mod limits;
pub mod load;
pub mod proto;
pub mod tensor;

pub use error::{ErrorKind, ImportError};
pub use limits::Limits;
pub use load::{load_model, load_model_bytes, LoadedModel};
pub mod import;
pub mod node;
pub mod ops;
pub mod registry;
pub mod write;
