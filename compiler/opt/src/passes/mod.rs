//! One file per pass; each opens with its contract (what it matches, what it guarantees, what
//! must run first). `crate::pipeline` orders them.

pub mod dce;
pub mod fold_bn;
pub mod fold_constants;
