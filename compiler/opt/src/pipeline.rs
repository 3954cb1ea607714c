//! The pass pipeline and the registry of pass names (for `--print-after` and golden tests).
//!
//! Order: clean up the imported graph, recognize dynamic convolutions (kernel mixing, then the
//! training form), drop the layout no-ops the recognition leaves, fold per-channel scalings of
//! a `dyn_conv`'s result into its coefficients, then fold BatchNorm (after recognition, so that
//! a BN after a recognized `dyn_conv` folds into its bank). `literal` skips the recognition and
//! everything after it but `fold_bn` and the epilogue fusions into the conv or dyn_conv
//! before them (after `fold_bn`, so a BatchNorm in between folds first): `fuse_residual` (an
//! add), `fuse_clamp` (a Relu/Clip, also after a fused add), `fuse_act` (SiLU, HardSwish,
//! after the clamp). Then
//! `fuse_predictor` turns each coefficient predictor (pool, FC layers, sigmoid/softmax) into one
//! `predict` op (after `fuse_clamp` and `fuse_act`: a hidden 1×1 conv's Relu or SiLU is then
//! its epilogue). `concat_transpose` folds a transpose of a concat (ShuffleNet's channel
//! shuffle) into the concat; it is no dynamic-conv pass, so `literal` runs it too, as it runs
//! `se_fold` (a squeeze-excitation multiply folded into the conv that reads it, after the
//! epilogue fusions, which append the residual before its scale operand). Last,
//! with `Options::batch`, `retarget_batch` (after
//! recognition, which removes the batch-as-groups reshapes that tie a graph to its batch).

use crate::error::PassError;
use crate::manager::{Pass, PassManager, PrintAfter};
use crate::passes::concat_transpose::ConcatTranspose;
use crate::passes::dynconv_mix::DynConvMix;
use crate::passes::dynconv_scale::DynConvScale;
use crate::passes::dynconv_train::DynConvTrain;
use crate::passes::fuse_act::FuseAct;
use crate::passes::fuse_clamp::FuseClamp;
use crate::passes::fuse_predictor::FusePredictor;
use crate::passes::fuse_residual::FuseResidual;
use crate::passes::retarget_batch::RetargetBatch;
use crate::passes::se_fold::SeFold;
use crate::passes::simplify_reshapes::SimplifyReshapes;
use crate::passes::split_batch::{SplitBatch, DEFAULT_MIN_BYTES};
use crate::passes::{dce::Dce, fold_bn::FoldBn, fold_constants::FoldConstants};
use dync_ir::Graph;

/// Every pass name, in pipeline order.
pub const PASS_NAMES: &[&str] = &[
    "fold_constants",
    "dce",
    "dynconv_mix",
    "dynconv_train",
    "simplify_reshapes",
    "dynconv_scale",
    "fold_bn",
    "fuse_residual",
    "fuse_clamp",
    "fuse_act",
    "fuse_predictor",
    "concat_transpose",
    "se_fold",
    "retarget_batch",
    "split_batch",
];

/// The passes `Options::literal` leaves out.
const RECOGNITION: &[&str] = &[
    "dynconv_mix",
    "dynconv_train",
    "simplify_reshapes",
    "dynconv_scale",
    "fuse_predictor",
];

/// The pass called `name`; `retarget_batch` takes its batch as `retarget_batch=N`,
/// `split_batch` its threshold as `split_batch=BYTES` (default [`DEFAULT_MIN_BYTES`]).
pub fn lookup(name: &str) -> Option<Box<dyn Pass>> {
    if let Some(n) = name.strip_prefix("retarget_batch=") {
        return Some(Box::new(RetargetBatch {
            batch: n.parse().ok()?,
        }));
    }
    if let Some(b) = name.strip_prefix("split_batch=") {
        return Some(Box::new(SplitBatch {
            min_bytes: b.parse().ok()?,
        }));
    }
    Some(match name {
        "fold_constants" => Box::new(FoldConstants),
        "dce" => Box::new(Dce),
        "dynconv_mix" => Box::new(DynConvMix),
        "dynconv_train" => Box::new(DynConvTrain),
        "simplify_reshapes" => Box::new(SimplifyReshapes),
        "dynconv_scale" => Box::new(DynConvScale),
        "fold_bn" => Box::new(FoldBn),
        "fuse_residual" => Box::new(FuseResidual),
        "fuse_clamp" => Box::new(FuseClamp),
        "fuse_act" => Box::new(FuseAct),
        "fuse_predictor" => Box::new(FusePredictor),
        "concat_transpose" => Box::new(ConcatTranspose),
        "se_fold" => Box::new(SeFold),
        "split_batch" => Box::new(SplitBatch {
            min_bytes: DEFAULT_MIN_BYTES,
        }),
        _ => return None,
    })
}

/// What the pipeline does.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Leave dynamic convolutions as the generic ops they were exported as (the `literal`
    /// baseline of `dync bench`).
    pub literal: bool,
    pub print_after: PrintAfter,
    /// Re-target a fixed-batch graph to this batch size after recognition (`--batch N`); an
    /// error names the first op that mixes samples.
    pub batch: Option<usize>,
}

/// The passes to run, in order.
pub fn pipeline(opts: &Options) -> Vec<Box<dyn Pass>> {
    PASS_NAMES
        .iter()
        .filter(|n| !(opts.literal && RECOGNITION.contains(n)))
        .filter_map(|&n| match n {
            "retarget_batch" => opts
                .batch
                .map(|batch| Box::new(RetargetBatch { batch }) as Box<dyn Pass>),
            n => lookup(n),
        })
        .collect()
}

/// Runs the pipeline on `g`; the returned manager holds timings, dumps and remarks.
pub fn optimize(g: &mut Graph, opts: &Options) -> Result<PassManager, PassError> {
    if let PrintAfter::Pass(p) = &opts.print_after {
        if !PASS_NAMES.contains(&p.as_str()) {
            return Err(PassError::UnknownPass(p.clone()));
        }
    }
    let mut pm = PassManager::new(opts.print_after.clone());
    for pass in pipeline(opts) {
        pm.run(pass.as_ref(), g)?;
    }
    Ok(pm)
}
