//! Every lowered op against the reference interpreter, on seeded random inputs and shapes
//! with odd sizes and vector tails (1, 3, 5, 17), in unchecked and checked mode.

mod common;

use common::*;
use dync_ir::ops::*;
use dync_ir::{DType, Op, Tensor};

const ODD: [usize; 4] = [1, 3, 5, 17];

#[test]
fn unary_all_kinds() {
    let mut r = rng(1);
    let kinds = [
        UnaryKind::Relu,
        UnaryKind::LeakyRelu { alpha: 0.1 },
        UnaryKind::Sigmoid,
        UnaryKind::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
        UnaryKind::HardSwish,
        UnaryKind::Clip {
            min: -0.5,
            max: 6.0,
        },
        UnaryKind::Tanh,
        UnaryKind::Exp,
        UnaryKind::Log,
        UnaryKind::Sqrt,
        UnaryKind::Neg,
        UnaryKind::Abs,
        UnaryKind::Reciprocal,
        UnaryKind::Erf,
    ];
    for kind in kinds {
        for &n in &ODD {
            let x = rand_f32(&mut r, &[2, n, 3]);
            check_op(
                Op::Unary(Unary { kind }),
                vec![Arg::In(x)],
                &format!("{} n={n}", kind.name()),
            );
        }
    }
}

#[test]
fn unary_extreme_values() {
    let v = vec![
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        100.0,
        -100.0,
        88.0,
        -88.0,
        89.0,
        -90.0,
        1e-30,
        20.0,
        -20.0,
        0.5,
    ];
    let x = Tensor::from_f32([v.len()], v).unwrap();
    for kind in [
        UnaryKind::Exp,
        UnaryKind::Sigmoid,
        UnaryKind::Tanh,
        UnaryKind::Relu,
        UnaryKind::HardSwish,
        UnaryKind::Clip { min: 0.0, max: 6.0 },
        UnaryKind::Erf,
    ] {
        check_op(
            Op::Unary(Unary { kind }),
            vec![Arg::In(x.clone())],
            kind.name(),
        );
    }
}

#[test]
fn exp_is_accurate_over_its_range() {
    let v: Vec<f32> = (0..4000)
        .map(|i| -87.0 + i as f32 * (175.0 / 4000.0))
        .collect();
    let x = Tensor::from_f32([v.len()], v).unwrap();
    check_op(
        Op::Unary(Unary {
            kind: UnaryKind::Exp,
        }),
        vec![Arg::In(x)],
        "exp sweep",
    );
}

#[test]
fn binary_f32_with_broadcasting() {
    let mut r = rng(2);
    let shapes: [(&[usize], &[usize]); 7] = [
        (&[2, 3, 5], &[2, 3, 5]),
        (&[2, 17, 3], &[17, 1]),
        (&[1, 4, 5, 5], &[1, 4, 1, 1]),
        (&[3, 1], &[1, 5]),
        (&[], &[17]),
        (&[7], &[]),
        (&[2, 1, 17], &[5, 1]),
    ];
    let kinds = [
        BinaryKind::Add,
        BinaryKind::Sub,
        BinaryKind::Mul,
        BinaryKind::Div,
        BinaryKind::Pow,
        BinaryKind::Max,
        BinaryKind::Min,
    ];
    for kind in kinds {
        for (a, b) in shapes {
            let ta = rand_f32(&mut r, a);
            let tb = rand_f32(&mut r, b);
            let tb = if kind == BinaryKind::Pow {
                abs_plus(&ta, &tb).1
            } else {
                tb
            };
            let ta = if kind == BinaryKind::Pow {
                abs_plus(&ta, &tb).0
            } else {
                ta
            };
            check_op(
                Op::Binary(Binary { kind }),
                vec![Arg::In(ta.clone()), Arg::In(tb.clone())],
                &format!("{} {a:?} {b:?}", kind.name()),
            );
            check_op(
                Op::Binary(Binary { kind }),
                vec![Arg::In(ta), Arg::Const(tb)],
                &format!("{} {a:?} const {b:?}", kind.name()),
            );
        }
    }
}

/// Positive bases for pow.
fn abs_plus(a: &Tensor, b: &Tensor) -> (Tensor, Tensor) {
    let pa: Vec<f32> = a.as_f32().unwrap().iter().map(|x| x.abs() + 0.1).collect();
    (Tensor::from_f32(a.shape(), pa).unwrap(), b.clone())
}

#[test]
fn binary_integers_exact_and_checked() {
    let mut r = rng(3);
    for dtype in [DType::I64, DType::I32] {
        for kind in [
            BinaryKind::Add,
            BinaryKind::Sub,
            BinaryKind::Mul,
            BinaryKind::Max,
            BinaryKind::Min,
        ] {
            let a = rand_tensor(&mut r, dtype, &[3, 5]);
            let b = rand_tensor(&mut r, dtype, &[5]);
            check_op(
                Op::Binary(Binary { kind }),
                vec![Arg::In(a), Arg::In(b)],
                &format!("{dtype} {}", kind.name()),
            );
        }
    }
    let a = Tensor::from_i64([4], vec![7, -7, 7, -7]).unwrap();
    let b = Tensor::from_i64([4], vec![2, 2, -2, -2]).unwrap();
    check_op(
        Op::Binary(Binary {
            kind: BinaryKind::Div,
        }),
        vec![Arg::In(a), Arg::In(b)],
        "i64 div",
    );
    let a = Tensor::from_i64([5], vec![3, -2, -1, 0, 2]).unwrap();
    let b = Tensor::from_i64([5], vec![4, 3, 5_000_000_001, 7, 62]).unwrap();
    check_op(
        Op::Binary(Binary {
            kind: BinaryKind::Pow,
        }),
        vec![Arg::In(a), Arg::In(b)],
        "i64 pow",
    );
}

#[test]
fn integer_faults_name_the_node() {
    let cases = [
        (
            BinaryKind::Div,
            vec![1i64, 2],
            vec![1i64, 0],
            "division by zero",
        ),
        (BinaryKind::Add, vec![i64::MAX, 0], vec![1, 0], "overflow"),
        (BinaryKind::Mul, vec![i64::MAX, 0], vec![2, 0], "overflow"),
        (BinaryKind::Div, vec![i64::MIN, 0], vec![-1, 1], "overflow"),
        (BinaryKind::Pow, vec![2, 0], vec![64, 1], "overflow"),
        (
            BinaryKind::Pow,
            vec![2, 0],
            vec![-1, 1],
            "negative exponent",
        ),
    ];
    for (kind, a, b, msg) in cases {
        let (g, inputs) = one_node(
            Op::Binary(Binary { kind }),
            vec![
                Arg::In(Tensor::from_i64([2], a).unwrap()),
                Arg::In(Tensor::from_i64([2], b).unwrap()),
            ],
        );
        assert!(dync_interp::run(&g, &inputs).is_err());
        let m = dync_codegen::JitModel::compile(&g, &Default::default()).unwrap();
        let e = m.run(&inputs).unwrap_err().to_string();
        assert!(
            e.contains(msg) && e.contains("test_node"),
            "{}: {e}",
            kind.name()
        );
    }
}

#[test]
fn cast_between_all_dtypes() {
    let mut r = rng(4);
    let dtypes = [DType::F32, DType::I64, DType::I32, DType::Bool];
    for from in dtypes {
        for to in dtypes {
            let mut x = rand_tensor(&mut r, from, &[3, 7]);
            if from == DType::F32 {
                let v: Vec<f32> = x
                    .as_f32()
                    .unwrap()
                    .iter()
                    .map(|v| v * 3.0)
                    .chain([f32::NAN, 1e20, -1e20, 0.0, -0.0])
                    .collect();
                x = Tensor::from_f32([26], v).unwrap();
            }
            check_op(
                Op::Cast(Cast { to }),
                vec![Arg::In(x)],
                &format!("cast {from} -> {to}"),
            );
        }
    }
}

#[test]
fn transpose_any_rank() {
    let mut r = rng(5);
    let cases: [(&[usize], &[usize]); 6] = [
        (&[3, 5], &[1, 0]),
        (&[2, 3, 17], &[0, 2, 1]),
        (&[2, 3, 5, 7], &[0, 2, 3, 1]),
        (&[2, 3, 5, 7], &[3, 1, 0, 2]),
        (&[4, 1, 17], &[1, 0, 2]),
        (&[5], &[0]),
    ];
    for (shape, perm) in cases {
        for dtype in [DType::F32, DType::I64] {
            let x = rand_tensor(&mut r, dtype, shape);
            check_op(
                Op::Transpose(Transpose {
                    perm: perm.to_vec(),
                }),
                vec![Arg::In(x)],
                &format!("transpose {shape:?} {perm:?}"),
            );
        }
    }
}

#[test]
fn slice_positive_and_negative_steps() {
    let mut r = rng(6);
    let x = rand_f32(&mut r, &[4, 17, 9]);
    let cases: [([i64; 3], [i64; 3], [i64; 3]); 5] = [
        ([0, 0, 0], [4, 17, 9], [1, 1, 1]),
        ([1, 2, 3], [3, 15, 8], [1, 1, 1]),
        ([0, 1, 0], [4, 17, 9], [2, 3, 4]),
        ([3, 16, 8], [-1, -1, -1], [-1, -2, -3]),
        ([2, 5, 0], [2, 9, 9], [1, 1, 1]),
    ];
    for (starts, ends, steps) in cases {
        let op = Op::Slice(Slice {
            starts: starts.to_vec(),
            ends: ends.to_vec(),
            steps: steps.to_vec(),
        });
        check_op(
            op,
            vec![Arg::In(x.clone())],
            &format!("slice {starts:?} {ends:?} {steps:?}"),
        );
    }
}

#[test]
fn concat_of_floats_and_ints() {
    let mut r = rng(7);
    for axis in 0..3 {
        for dtype in [DType::F32, DType::I64, DType::Bool] {
            let mut shapes = [[2, 3, 5], [2, 3, 5], [2, 3, 5]];
            shapes[1][axis] = 1;
            shapes[2][axis] = 17;
            let args = shapes
                .iter()
                .map(|s| Arg::In(rand_tensor(&mut r, dtype, s)))
                .collect();
            check_op(
                Op::Concat(Concat { axis }),
                args,
                &format!("concat {dtype} axis {axis}"),
            );
        }
    }
}

#[test]
fn expand_broadcasts() {
    let mut r = rng(8);
    let cases: [(&[usize], &[usize]); 4] = [
        (&[3, 1], &[2, 3, 17]),
        (&[1], &[5]),
        (&[1, 5], &[3, 5]),
        (&[], &[2, 3]),
    ];
    for (src, dst) in cases {
        let x = rand_f32(&mut r, src);
        check_op(
            Op::Expand(Expand {
                shape: dst.to_vec(),
            }),
            vec![Arg::In(x)],
            &format!("expand {src:?} -> {dst:?}"),
        );
    }
}

#[test]
fn gather_with_negative_indices_and_range_check() {
    let mut r = rng(9);
    let x = rand_f32(&mut r, &[5, 17, 3]);
    for axis in 0..3 {
        let ext = x.shape()[axis] as i64;
        let idx = Tensor::from_i64([2, 2], vec![0, ext - 1, -1, -ext]).unwrap();
        check_op(
            Op::Gather(Gather { axis }),
            vec![Arg::In(x.clone()), Arg::In(idx.clone())],
            &format!("gather axis {axis}"),
        );
        check_op(
            Op::Gather(Gather { axis }),
            vec![Arg::Const(x.clone()), Arg::In(idx)],
            &format!("gather const axis {axis}"),
        );
    }
    let xi = rand_tensor(&mut r, DType::I64, &[4, 3]);
    let idx = Tensor::new([3], dync_ir::TensorData::I32(vec![3, -4, 1])).unwrap();
    check_op(
        Op::Gather(Gather { axis: 0 }),
        vec![Arg::In(xi), Arg::In(idx)],
        "gather i64 data, i32 indices",
    );
    for bad in [5i64, -6, i64::MIN] {
        let idx = Tensor::from_i64([1], vec![bad]).unwrap();
        let (g, inputs) = one_node(
            Op::Gather(Gather { axis: 0 }),
            vec![Arg::In(x.clone()), Arg::In(idx)],
        );
        let m = dync_codegen::JitModel::compile(&g, &Default::default()).unwrap();
        let e = m.run(&inputs).unwrap_err().to_string();
        assert!(e.contains("index out of range"), "{e}");
    }
}

#[test]
fn pad_all_modes_with_crops() {
    let mut r = rng(10);
    let x = rand_f32(&mut r, &[2, 5, 7]);
    let cases: [[i64; 6]; 5] = [
        [0, 1, 2, 0, 2, 1],
        [1, 0, 0, 1, 3, 4],
        [0, -1, 2, 0, 1, -3],
        [0, 3, 4, 0, 2, 3],
        [0, -2, -1, 0, 4, 5],
    ];
    for pads in cases {
        for mode in [PadMode::Constant, PadMode::Edge, PadMode::Reflect] {
            let op = Op::Pad(Pad {
                pads: pads.to_vec(),
                mode,
                value: 0.5,
            });
            let types = [&x.ty()];
            if op.infer(&types).is_err() {
                continue;
            }
            let what = format!("pad {} {pads:?}", mode.name());
            let (g, inputs) = one_node(op, vec![Arg::In(x.clone())]);
            if dync_interp::run(&g, &inputs).is_err() {
                // Padding that does not fit the cropped extent: rejected at compile time.
                let e = dync_codegen::JitModel::compile(&g, &Default::default())
                    .err()
                    .expect(&what);
                assert!(e.to_string().contains("test_node"), "{what}: {e}");
                continue;
            }
            check_graph(&g, &inputs, &what);
        }
    }
    let xi = rand_tensor(&mut r, DType::I64, &[3, 4]);
    check_op(
        Op::Pad(Pad {
            pads: vec![1, 2, 0, 1],
            mode: PadMode::Constant,
            value: 7.0,
        }),
        vec![Arg::In(xi)],
        "pad i64",
    );
}

#[test]
fn reduce_kinds_axes_and_dtypes() {
    let mut r = rng(11);
    let axes_list: [&[usize]; 7] = [&[], &[0], &[1], &[2], &[3], &[2, 3], &[0, 1, 2, 3]];
    for kind in [
        ReduceKind::Mean,
        ReduceKind::Sum,
        ReduceKind::Max,
        ReduceKind::Min,
        ReduceKind::Prod,
    ] {
        for axes in axes_list {
            for keepdims in [true, false] {
                let x = rand_f32(&mut r, &[2, 3, 5, 17]);
                let op = Op::Reduce(Reduce {
                    kind,
                    axes: axes.to_vec(),
                    keepdims,
                });
                let x = if kind == ReduceKind::Prod {
                    Tensor::from_f32(
                        x.shape(),
                        x.as_f32().unwrap().iter().map(|v| 1.0 + v * 0.05).collect(),
                    )
                    .unwrap()
                } else {
                    x
                };
                check_op(
                    op,
                    vec![Arg::In(x)],
                    &format!("reduce {} {axes:?} keepdims={keepdims}", kind.name()),
                );
            }
        }
    }
    for kind in [
        ReduceKind::Sum,
        ReduceKind::Max,
        ReduceKind::Min,
        ReduceKind::Prod,
    ] {
        let x = rand_tensor(&mut r, DType::I64, &[3, 4, 2]);
        check_op(
            Op::Reduce(Reduce {
                kind,
                axes: vec![1],
                keepdims: false,
            }),
            vec![Arg::In(x)],
            &format!("reduce i64 {}", kind.name()),
        );
    }
    let x = rand_f32(&mut r, &[1, 7, 7, 7]);
    check_op(
        Op::Reduce(Reduce {
            kind: ReduceKind::Mean,
            axes: vec![2, 3],
            keepdims: true,
        }),
        vec![Arg::In(x)],
        "global average 7x7",
    );
}

#[test]
fn softmax_every_axis() {
    let mut r = rng(12);
    for shape in [&[2, 3, 17][..], &[1, 1000], &[5], &[2, 5, 1]] {
        for axis in 0..shape.len() {
            let x = rand_f32(&mut r, shape);
            let x = Tensor::from_f32(
                shape,
                x.as_f32().unwrap().iter().map(|v| v * 10.0).collect(),
            )
            .unwrap();
            check_op(
                Op::Softmax(Softmax { axis }),
                vec![Arg::In(x)],
                &format!("softmax {shape:?} axis {axis}"),
            );
        }
    }
}

#[test]
fn predict_layers_and_activations() {
    let mut r = rng(31);
    // ([N, C, H, W], layer widths, act): tails in the pooled run (5·3), in the layers' column
    // vectors (17, 6), several samples; DyNet-like softmax runs of 6 and a whole-row run.
    // The last two are large enough to be cut into pooling tasks and column blocks.
    let cases: [([usize; 4], &[usize], PredictAct); 7] = [
        ([1, 3, 5, 3], &[17], PredictAct::Sigmoid),
        ([2, 64, 16, 16], &[1200], PredictAct::Softmax { run: 6 }),
        ([1, 100, 3, 3], &[999], PredictAct::Sigmoid),
        ([3, 8, 4, 4], &[5, 36], PredictAct::Softmax { run: 6 }),
        ([2, 17, 1, 1], &[4, 3, 12], PredictAct::Softmax { run: 12 }),
        ([2, 5, 7, 9], &[33], PredictAct::Softmax { run: 3 }),
        ([1, 32, 2, 2], &[8, 64], PredictAct::Sigmoid),
    ];
    for ([n, c, h, w], widths, act) in cases {
        for hidden in [Hidden::None, Hidden::Relu, Hidden::Silu] {
            let mut args = vec![Arg::In(rand_f32(&mut r, &[n, c, h, w]))];
            let mut width = c;
            for &o in widths {
                args.push(Arg::Const(rand_f32(&mut r, &[o, width])));
                args.push(Arg::Const(rand_f32(&mut r, &[o])));
                width = o;
            }
            let op = Predict {
                hidden,
                act,
                scale: 1.5,
            };
            check_op(
                Op::Predict(op),
                args,
                &format!("predict {n}x{c}x{h}x{w} {widths:?} {act:?} {hidden:?}"),
            );
        }
    }
}

#[test]
fn softmax_special_rows() {
    let inf = f32::INFINITY;
    #[rustfmt::skip]
    let v = vec![
        1.0, 2.0, f32::NAN, 0.0, 1.0, 1.0,
        -inf, -inf, -inf, -inf, -inf, -inf,
        0.0, inf, 1.0, 2.0, 3.0, 4.0,
        -inf, 0.0, -inf, 100.0, -100.0, 50.0,
    ];
    let x = Tensor::from_f32([4, 6], v).unwrap();
    for axis in 0..2 {
        check_op(
            Op::Softmax(Softmax { axis }),
            vec![Arg::In(x.clone())],
            &format!("softmax special rows axis {axis}"),
        );
    }
}

#[test]
fn batch_norm_any_rank() {
    let mut r = rng(13);
    for shape in [&[2, 3, 5, 17][..], &[1, 4], &[2, 5, 3]] {
        let c = shape[1];
        let x = rand_f32(&mut r, shape);
        let p = |r: &mut _| rand_f32(r, &[c]);
        let var = Tensor::from_f32(
            [c],
            p(&mut r)
                .as_f32()
                .unwrap()
                .iter()
                .map(|v| v.abs() + 0.1)
                .collect(),
        )
        .unwrap();
        let args = vec![
            Arg::In(x),
            Arg::Const(p(&mut r)),
            Arg::Const(p(&mut r)),
            Arg::Const(p(&mut r)),
            Arg::Const(var),
        ];
        check_op(
            Op::BatchNorm(BatchNorm { epsilon: 1e-5 }),
            args,
            &format!("batch_norm {shape:?}"),
        );
    }
}

#[test]
fn gemm_transposes_alpha_beta_and_bias_broadcast() {
    let mut r = rng(14);
    for (m, k, n) in [(1, 17, 5), (3, 5, 17), (5, 1, 3), (7, 13, 9), (1, 512, 10)] {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            for c_shape in [None, Some(vec![n]), Some(vec![m, n]), Some(vec![m, 1])] {
                let a = rand_f32(&mut r, &if ta { [k, m] } else { [m, k] });
                let b = rand_f32(&mut r, &if tb { [n, k] } else { [k, n] });
                let op = Op::Gemm(Gemm {
                    alpha: 0.5,
                    beta: 2.0,
                    trans_a: ta,
                    trans_b: tb,
                });
                let mut args = vec![Arg::In(a), Arg::Const(b)];
                if let Some(c) = &c_shape {
                    args.push(Arg::Const(rand_f32(&mut r, c)));
                }
                check_op(
                    op,
                    args,
                    &format!("gemm {m}x{k}x{n} ta={ta} tb={tb} c={c_shape:?}"),
                );
            }
        }
    }
    // Matrix-vector products without an epilogue (alpha 1, no C): the micro-kernel's result
    // as it is, for one vector and for several (pairs, a pass of eight and more).
    for (m, k, n) in [
        (1, 33, 21),
        (1, 1, 3),
        (1, 100, 4),
        (2, 12, 9),
        (8, 162, 40),
        (11, 7, 5),
    ] {
        let op = Op::Gemm(Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: true,
        });
        let args = vec![
            Arg::In(rand_f32(&mut r, &[m, k])),
            Arg::Const(rand_f32(&mut r, &[n, k])),
        ];
        check_op(op, args, &format!("gemv {m}x{k}x{n}"));
    }
}

#[test]
fn matmul_batched_broadcast_and_vectors() {
    let mut r = rng(15);
    let cases: [(&[usize], &[usize]); 7] = [
        (&[3, 5], &[5, 17]),
        (&[2, 3, 5], &[5, 4]),
        (&[2, 1, 3, 5], &[3, 5, 9]),
        (&[17], &[17, 3]),
        (&[4, 17], &[17]),
        (&[5], &[5]),
        (&[1, 6, 1], &[2, 1, 7]),
    ];
    for (a, b) in cases {
        let ta = rand_f32(&mut r, a);
        let tb = rand_f32(&mut r, b);
        check_op(
            Op::MatMul(MatMul),
            vec![Arg::In(ta), Arg::In(tb)],
            &format!("matmul {a:?} x {b:?}"),
        );
    }
}

#[test]
fn einsum_kernel_mixing_and_others() {
    let mut r = rng(16);
    let cases: [(&str, Vec<Vec<usize>>); 6] = [
        ("bog,ogcij->bocij", vec![vec![2, 5, 4], vec![5, 4, 3, 3, 3]]),
        ("ij,jk->ik", vec![vec![3, 5], vec![5, 17]]),
        ("ii->i", vec![vec![5, 5]]),
        ("...ij,...jk", vec![vec![2, 3, 4], vec![1, 4, 5]]),
        ("bi,bi->b", vec![vec![3, 17]; 2]),
        ("i,j,k->ijk", vec![vec![2], vec![3], vec![5]]),
    ];
    for (eq, shapes) in cases {
        let args = shapes
            .iter()
            .map(|s| Arg::In(rand_f32(&mut r, s)))
            .collect();
        check_op(
            Op::Einsum(Einsum {
                equation: eq.into(),
            }),
            args,
            &format!("einsum {eq}"),
        );
    }
}

/// NaN cells are skipped; a window of NaN cells only gives NaN (vector and scalar columns,
/// strides 1 to 3).
#[test]
fn max_pool_skips_nan() {
    let mut r = rng(41);
    let x = rand_f32(&mut r, &[1, 2, 7, 29]);
    let mut v = x.as_f32().unwrap().to_vec();
    for (i, e) in v.iter_mut().enumerate() {
        // Every third cell, and the whole first row of the second channel, NaN; its second
        // row −∞ and NaN in turn, its third row −∞ (windows whose maximum is −∞, with and
        // without NaN), and every eleventh cell −∞.
        if i % 3 == 0 || (203..232).contains(&i) {
            *e = f32::NAN;
        }
        if (232..261).contains(&i) {
            *e = if i % 2 == 0 {
                f32::NEG_INFINITY
            } else {
                f32::NAN
            };
        }
        if (261..290).contains(&i) || i % 11 == 0 {
            *e = f32::NEG_INFINITY;
        }
    }
    let x = Tensor::from_f32([1, 2, 7, 29], v).unwrap();
    for stride in 1..=3 {
        for kern in [1, 2, 3] {
            let op = MaxPool {
                kernel: [kern; 2],
                strides: [stride; 2],
                pads: [0; 4],
                dilations: [1, 1],
                ceil_mode: false,
            };
            check_op(
                Op::MaxPool(op),
                vec![Arg::In(x.clone())],
                &format!("max_pool NaN k{kern} s{stride}"),
            );
        }
    }
}

#[test]
fn pools_with_pads_strides_dilations_ceil() {
    let mut r = rng(17);
    for (h, w) in [(1, 1), (5, 17), (8, 8), (7, 3), (6, 41)] {
        for (kern, stride, pad) in [
            (1, 1, 0),
            (2, 2, 0),
            (3, 1, 1),
            (3, 2, 1),
            (3, 2, 0),
            (3, 3, 1),
        ] {
            if kern > h + 2 * pad || kern > w + 2 * pad {
                continue;
            }
            for ceil_mode in [false, true] {
                let x = rand_f32(&mut r, &[2, 3, h, w]);
                let mp = MaxPool {
                    kernel: [kern; 2],
                    strides: [stride; 2],
                    pads: [pad; 4],
                    dilations: [1, 1],
                    ceil_mode,
                };
                check_op(
                    Op::MaxPool(mp),
                    vec![Arg::In(x.clone())],
                    &format!("max_pool {h}x{w} k{kern} s{stride} p{pad} ceil={ceil_mode}"),
                );
                for cip in [false, true] {
                    let ap = AvgPool {
                        kernel: [kern; 2],
                        strides: [stride; 2],
                        pads: [pad; 4],
                        ceil_mode,
                        count_include_pad: cip,
                    };
                    check_op(
                        Op::AvgPool(ap),
                        vec![Arg::In(x.clone())],
                        &format!(
                            "avg_pool {h}x{w} k{kern} s{stride} p{pad} ceil={ceil_mode} cip={cip}"
                        ),
                    );
                }
            }
        }
    }
    let x = rand_f32(&mut r, &[1, 2, 9, 11]);
    let mp = MaxPool {
        kernel: [2, 3],
        strides: [1, 2],
        pads: [1, 0, 0, 2],
        dilations: [2, 2],
        ceil_mode: false,
    };
    check_op(
        Op::MaxPool(mp),
        vec![Arg::In(x)],
        "max_pool dilated asymmetric",
    );
}

#[test]
fn conv_shapes_groups_strides_dilations() {
    let mut r = rng(18);
    #[rustfmt::skip]
    let cases = [
        // (c, h, w, o, k, stride, pad, dilation, group, bias)
        (3, 7, 7, 8, 3, 1, 1, 1, 1, true),
        (3, 5, 17, 5, 3, 2, 1, 1, 1, false),
        (4, 9, 9, 4, 3, 1, 1, 1, 4, true),
        (6, 8, 8, 6, 3, 2, 1, 1, 2, true),
        (2, 6, 6, 3, 1, 1, 0, 1, 1, true),
        (4, 11, 13, 8, 3, 1, 2, 2, 2, true),
        (3, 3, 1, 2, 1, 1, 0, 1, 1, false),
        (1, 10, 10, 9, 5, 3, 2, 1, 1, true),
        (2, 4, 4, 4, 3, 1, 3, 1, 2, true),
    ];
    for (c, h, w, o, k, s, p, d, g, bias) in cases {
        let x = rand_f32(&mut r, &[2, c, h, w]);
        let wt = rand_f32(&mut r, &[o, c / g, k, k]);
        let op = Op::Conv(Conv {
            strides: [s; 2],
            pads: [p; 4],
            dilations: [d; 2],
            group: g,
            clamp: None,
            residual: false,
            act: None,
            in_scale: false,
        });
        for const_w in [true, false] {
            let mut args = vec![
                Arg::In(x.clone()),
                if const_w {
                    Arg::Const(wt.clone())
                } else {
                    Arg::In(wt.clone())
                },
            ];
            if bias {
                args.push(Arg::Const(rand_f32(&mut r, &[o])));
            }
            check_op(
                op.clone(),
                args,
                &format!("conv c{c} {h}x{w} o{o} k{k} s{s} p{p} d{d} g{g} const_w={const_w}"),
            );
        }
    }
}

/// Convolutions on the GEMM path (constant weights, ≥ 8 channels per group): partial channel
/// panels, several reduction chunks, column tiles of wide rows, several rows per tile of
/// narrow ones, the in-place 1×1 path, strides, dilation, padding and the fused clamp.
#[test]
fn conv_gemm_path() {
    let mut r = rng(31);
    #[rustfmt::skip]
    let cases = [
        // (n, c, h, w, o, k, stride, pad, dilation, group, clamp)
        (1, 40, 6, 40, 20, 1, 1, 0, 1, 1, None),
        (2, 300, 5, 7, 9, 1, 1, 0, 1, 1, Some((0.0, f32::INFINITY))),
        // 1×1 over 196 positions: runs of 128, the second one's last tile past the end.
        (2, 24, 14, 14, 16, 1, 1, 0, 1, 1, Some((0.0, 6.0))),
        (1, 40, 9, 9, 16, 3, 1, 1, 1, 1, Some((-0.5, 0.5))),
        (2, 16, 13, 35, 24, 3, 2, 1, 1, 2, None),
        (1, 12, 11, 11, 17, 3, 1, 2, 2, 1, Some((0.0, 6.0))),
        (1, 3, 16, 16, 8, 7, 2, 3, 1, 1, None),
        (3, 8, 4, 4, 8, 1, 2, 0, 1, 1, Some((1.0, -1.0))),
        // Strides 2 and 3 over wide rows (gathered 4 columns at a time), half-full panels.
        (1, 6, 9, 70, 12, 3, 3, 1, 1, 1, None),
        (2, 18, 20, 66, 18, 3, 2, 1, 1, 3, Some((0.0, 6.0))),
        (1, 12, 8, 8, 20, 3, 1, 2, 2, 4, None),
        // Tiles across output rows (lcm(ow, 32) positions cut into full tiles): 28-wide rows
        // in tiling rows of 8, the last one partial; 14-wide rows in one tiling row longer
        // than the image; 56-wide rows of a stride-2 conv; a 7×7 image in one task.
        (1, 9, 12, 28, 10, 3, 1, 1, 1, 1, Some((0.0, f32::INFINITY))),
        (2, 16, 14, 14, 12, 3, 1, 1, 1, 1, None),
        (1, 5, 10, 112, 8, 3, 2, 1, 1, 1, None),
        (1, 24, 7, 7, 16, 3, 1, 1, 1, 1, Some((0.0, 6.0))),
    ];
    for (n, c, h, w, o, k, s, p, d, g, clamp) in cases {
        let x = rand_f32(&mut r, &[n, c, h, w]);
        let op = Op::Conv(Conv {
            strides: [s; 2],
            pads: [p; 4],
            dilations: [d; 2],
            group: g,
            clamp: clamp.map(|(lo, hi)| Clamp { lo, hi }),
            residual: false,
            act: None,
            in_scale: false,
        });
        for bias in [false, true] {
            let mut args = vec![
                Arg::In(x.clone()),
                Arg::Const(rand_f32(&mut r, &[o, c / g, k, k])),
            ];
            if bias {
                args.push(Arg::Const(rand_f32(&mut r, &[o])));
            }
            check_op(
                op.clone(),
                args,
                &format!("gemm conv n{n} c{c} {h}x{w} o{o} k{k} s{s} p{p} d{d} g{g} {clamp:?} bias={bias}"),
            );
        }
    }
}

#[test]
fn resize_modes() {
    let mut r = rng(19);
    let x = rand_f32(&mut r, &[1, 2, 5, 7]);
    let coords = [
        CoordMode::HalfPixel,
        CoordMode::PytorchHalfPixel,
        CoordMode::AlignCorners,
        CoordMode::Asymmetric,
        CoordMode::HalfPixelSymmetric,
    ];
    for mode in [ResizeMode::Nearest, ResizeMode::Linear] {
        for coord in coords {
            for (sizes, scales) in [
                ([1, 2, 10, 14], [1.0, 1.0, 2.0, 2.0]),
                ([1, 2, 3, 4], [1.0, 1.0, 0.6, 0.571_428_6]),
                ([1, 2, 1, 17], [1.0, 1.0, 0.2, 17.0 / 7.0]),
            ] {
                for nearest in [
                    NearestMode::RoundPreferFloor,
                    NearestMode::Floor,
                    NearestMode::Ceil,
                ] {
                    let op = Resize {
                        mode,
                        coord,
                        nearest,
                        sizes: sizes.to_vec(),
                        scales: scales.to_vec(),
                    };
                    check_op(
                        Op::Resize(op),
                        vec![Arg::In(x.clone())],
                        &format!("resize {mode:?} {coord:?} {nearest:?} {sizes:?}"),
                    );
                }
            }
        }
    }
}
