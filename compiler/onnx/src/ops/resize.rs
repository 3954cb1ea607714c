//! Resize → IR `resize`. Opset 10: inputs (X, scales), asymmetric coordinates; 11+: (X, roi,
//! scales, sizes) with the `coordinate_transformation_mode` attribute; 18+: `axes`. Scales or
//! sizes must be constant. Output dims: sizes, or floor(in · scale). Supported: modes nearest and
//! linear; coordinate modes half_pixel, pytorch_half_pixel, align_corners, asymmetric,
//! half_pixel_symmetric. Rejects cubic, tf_crop_and_resize, antialias and aspect-ratio policies.

use crate::import::{Ctx, Operands};
use crate::node::{invalid, norm_axis, unsupported, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::{CoordMode, NearestMode, Resize, ResizeMode};
use dync_ir::{NodeId, Op};

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    let a = Attrs::new(n);
    let x = ins.get(0)?;
    let in_shape = cx.ty(x).shape.clone();
    let rank = in_shape.len();
    let mode = match a.string_or("mode", "nearest")?.as_str() {
        "nearest" => ResizeMode::Nearest,
        "linear" | "bilinear" => ResizeMode::Linear,
        other => unsupported!("resize mode {other:?}"),
    };
    let coord_default = if cx.opset < 11 {
        "asymmetric"
    } else {
        "half_pixel"
    };
    let coord_name = a.string_or("coordinate_transformation_mode", coord_default)?;
    let Some(coord) = CoordMode::from_name(&coord_name) else {
        unsupported!("coordinate_transformation_mode {coord_name:?}")
    };
    let nearest_name = a.string_or("nearest_mode", "round_prefer_floor")?;
    let Some(nearest) = NearestMode::from_name(&nearest_name) else {
        invalid!("unknown nearest_mode {nearest_name:?}")
    };
    if a.flag("antialias", false)? {
        unsupported!("antialias=1");
    }
    if a.int_or("exclude_outside", 0)? != 0 {
        unsupported!("exclude_outside=1");
    }
    let policy = a.string_or("keep_aspect_ratio_policy", "stretch")?;
    if policy != "stretch" {
        unsupported!("keep_aspect_ratio_policy {policy:?}");
    }
    let (scales_in, sizes_in) = if cx.opset < 11 {
        ins.expect(2, 2)?;
        (ins.floats(cx, 1, "scales")?, None)
    } else {
        ins.expect(1, 4)?;
        (ins.floats(cx, 2, "scales")?, ins.ints(cx, 3, "sizes")?)
    };
    let axes: Vec<usize> = match a.ints("axes")? {
        Some(ax) => ax
            .iter()
            .map(|&v| norm_axis(v, rank, "axes"))
            .collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    let mut sizes = in_shape.clone();
    let mut scales = vec![1.0f32; rank];
    match (
        scales_in.filter(|s| !s.is_empty()),
        sizes_in.filter(|s| !s.is_empty()),
    ) {
        (Some(_), Some(_)) => invalid!("only one of scales and sizes may be given"),
        (None, None) => invalid!("one of scales and sizes is required"),
        (Some(s), None) => {
            if s.len() != axes.len() {
                invalid!("scales has {} entries for {} axes", s.len(), axes.len());
            }
            for (&ax, &sc) in axes.iter().zip(&s) {
                if !(sc.is_finite() && sc > 0.0) {
                    invalid!("scale {sc} must be positive and finite");
                }
                let out = (in_shape[ax] as f64 * sc as f64).floor();
                if out > u32::MAX as f64 {
                    invalid!("scale {sc} makes dim {ax} too large");
                }
                sizes[ax] = out as usize;
                scales[ax] = sc;
            }
        }
        (None, Some(s)) => {
            if s.len() != axes.len() {
                invalid!("sizes has {} entries for {} axes", s.len(), axes.len());
            }
            for (&ax, &sz) in axes.iter().zip(&s) {
                let sz = usize::try_from(sz)
                    .map_err(|_| NodeError::Invalid(format!("negative size {sz}")))?;
                if in_shape[ax] == 0 {
                    invalid!("cannot resize empty dim {ax}");
                }
                sizes[ax] = sz;
                scales[ax] = sz as f32 / in_shape[ax] as f32;
            }
        }
    }
    let op = Op::Resize(Resize {
        mode,
        coord,
        nearest,
        sizes,
        scales,
    });
    Ok(vec![cx.add(op, &[x])?])
}
