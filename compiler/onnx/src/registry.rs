//! The ONNX ops dync imports: one sorted line per op type, naming its importer and the
//! attributes it understands (any other attribute is reported as unsupported by `dync check`).

use crate::import::{Ctx, Operands};
use crate::node::NodeError;
use crate::ops;
use crate::proto::NodeProto;
use dync_ir::NodeId;

/// Imports one node; returns the IR value of each output it provides, in output order.
pub type ImportFn = fn(&mut Ctx, &NodeProto, &Operands) -> Result<Vec<NodeId>, NodeError>;

pub struct Entry {
    pub op_type: &'static str,
    pub import: ImportFn,
    pub attrs: &'static [&'static str],
}

const fn e(op_type: &'static str, import: ImportFn, attrs: &'static [&'static str]) -> Entry {
    Entry {
        op_type,
        import,
        attrs,
    }
}

const POOL: &[&str] = &[
    "auto_pad",
    "ceil_mode",
    "dilations",
    "kernel_shape",
    "pads",
    "strides",
    "count_include_pad",
    "storage_order",
];
const REDUCE: &[&str] = &["axes", "keepdims", "noop_with_empty_axes"];

/// Sorted by op type (checked by a test).
static REGISTRY: &[Entry] = &[
    e("Abs", ops::activation::import, &[]),
    e("Add", ops::binary::import, &[]),
    e("AveragePool", ops::pool::import_average, POOL),
    e(
        "BatchNormalization",
        ops::batch_norm::import,
        &["epsilon", "momentum", "training_mode", "spatial"],
    ),
    e("Cast", ops::cast::import, &["to", "saturate"]),
    e("Clip", ops::activation::import, &["min", "max"]),
    e("Concat", ops::concat::import, &["axis"]),
    e(
        "Constant",
        ops::constant::import_constant,
        &[
            "value",
            "value_float",
            "value_floats",
            "value_int",
            "value_ints",
            "value_string",
            "value_strings",
            "sparse_value",
        ],
    ),
    e(
        "ConstantOfShape",
        ops::constant::import_constant_of_shape,
        &["value"],
    ),
    e(
        "Conv",
        ops::conv::import,
        &[
            "auto_pad",
            "dilations",
            "group",
            "kernel_shape",
            "pads",
            "strides",
        ],
    ),
    e("Div", ops::binary::import, &[]),
    e(
        "Dropout",
        ops::identity::import_dropout,
        &["ratio", "seed", "is_test"],
    ),
    e("Einsum", ops::einsum::import, &["equation"]),
    e("Erf", ops::activation::import, &[]),
    e("Exp", ops::activation::import, &[]),
    e("Expand", ops::expand::import, &[]),
    e("Flatten", ops::reshape::import_flatten, &["axis"]),
    e("Gather", ops::gather::import, &["axis"]),
    e(
        "Gemm",
        ops::matmul::import_gemm,
        &["alpha", "beta", "transA", "transB"],
    ),
    e("GlobalAveragePool", ops::pool::import_global_average, &[]),
    e("GlobalMaxPool", ops::pool::import_global_max, &[]),
    e("HardSigmoid", ops::activation::import, &["alpha", "beta"]),
    e("HardSwish", ops::activation::import, &[]),
    e("Identity", ops::identity::import, &[]),
    e("LeakyRelu", ops::activation::import, &["alpha"]),
    e("Log", ops::activation::import, &[]),
    e("MatMul", ops::matmul::import_matmul, &[]),
    e("Max", ops::binary::import_variadic, &[]),
    e("MaxPool", ops::pool::import_max, POOL),
    e("Min", ops::binary::import_variadic, &[]),
    e("Mul", ops::binary::import, &[]),
    e("Neg", ops::activation::import, &[]),
    e("Pad", ops::pad::import, &["mode", "pads", "value"]),
    e("Pow", ops::binary::import, &[]),
    e("Reciprocal", ops::activation::import, &[]),
    e("ReduceMax", ops::reduce::import, REDUCE),
    e("ReduceMean", ops::reduce::import, REDUCE),
    e("ReduceMin", ops::reduce::import, REDUCE),
    e("ReduceProd", ops::reduce::import, REDUCE),
    e("ReduceSum", ops::reduce::import, REDUCE),
    e("Relu", ops::activation::import, &[]),
    e("Reshape", ops::reshape::import_reshape, &["allowzero"]),
    e(
        "Resize",
        ops::resize::import,
        &[
            "antialias",
            "axes",
            "coordinate_transformation_mode",
            "cubic_coeff_a",
            "exclude_outside",
            "extrapolation_value",
            "keep_aspect_ratio_policy",
            "mode",
            "nearest_mode",
        ],
    ),
    e("Shape", ops::shape::import, &["start", "end"]),
    e("Sigmoid", ops::activation::import, &[]),
    e("Slice", ops::slice::import, &["starts", "ends", "axes"]),
    e("Softmax", ops::softmax::import, &["axis"]),
    e(
        "Split",
        ops::split::import,
        &["axis", "split", "num_outputs"],
    ),
    e("Sqrt", ops::activation::import, &[]),
    e("Squeeze", ops::reshape::import_squeeze, &["axes"]),
    e("Sub", ops::binary::import, &[]),
    e("Tanh", ops::activation::import, &[]),
    e("Transpose", ops::transpose::import, &["perm"]),
    e("Unsqueeze", ops::reshape::import_unsqueeze, &["axes"]),
];

/// The registry line for `op_type` in the default domain.
pub fn lookup(op_type: &str) -> Option<&'static Entry> {
    REGISTRY
        .binary_search_by(|e| e.op_type.cmp(op_type))
        .ok()
        .map(|i| &REGISTRY[i])
}

/// Every supported op type, sorted.
pub fn op_types() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|e| e.op_type)
}

#[cfg(test)]
mod tests {
    #[test]
    fn registry_is_sorted_and_unique() {
        let names: Vec<_> = super::op_types().collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    }
}
