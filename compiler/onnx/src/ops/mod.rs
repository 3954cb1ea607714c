//! One importer per ONNX op family. Each file's `//!` header names the ONNX ops, the opsets whose
//! forms it reads, and what it rejects. Importers add IR through [`crate::import::Ctx::add`],
//! which infers shapes and folds constants.

pub mod activation;
pub mod batch_norm;
pub mod binary;
pub mod cast;
pub mod concat;
pub mod constant;
pub mod conv;
pub mod einsum;
pub mod expand;
pub mod gather;
pub mod identity;
pub mod matmul;
pub mod pad;
pub mod pool;
pub mod reduce;
pub mod reshape;
pub mod resize;
pub mod shape;
pub mod slice;
pub mod softmax;
pub mod split;
pub mod transpose;
