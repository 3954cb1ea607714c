//! One file per pass; each opens with its contract (what it matches, what it guarantees, what
//! must run first). `crate::pipeline` orders them.

pub mod dce;
mod dynconv_common;
pub mod dynconv_mix;
pub mod dynconv_scale;
mod dynconv_trace;
pub mod dynconv_train;
pub mod fold_bn;
pub mod fold_constants;
pub mod fuse_act;
pub mod fuse_clamp;
pub mod fuse_predictor;
pub mod fuse_residual;
pub mod retarget_batch;
pub mod simplify_reshapes;
