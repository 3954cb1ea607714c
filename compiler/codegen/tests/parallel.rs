//! Multi-task kernels of the elementwise, reduction, pooling, matrix-product and predictor
//! ops: shapes large enough to be cut into several tasks (at least 32 K elements or
//! multiply-adds), with chunks that do not divide the extents, batches and broadcasting. Each is compared against
//! the reference interpreter (unchecked and checked mode, serially) and then run on 1–4
//! threads, where the outputs must be bit-identical.

mod common;

use common::*;
use dync_codegen::{CodegenOptions, JitModel};
use dync_ir::ops::*;
use dync_ir::{DType, Op, Tensor, TensorData};

/// Checks `op` against the interpreter, then bit-identity of its outputs at 1 to 4 threads.
fn check_parallel(op: Op, args: Vec<Arg>, what: &str) {
    let (g, inputs) = one_node(op, args);
    let serial = check_graph(&g, &inputs, what);
    for checked in [false, true] {
        let opts = CodegenOptions {
            checked,
            ..Default::default()
        };
        let mut m = JitModel::compile(&g, &opts).unwrap();
        for threads in 1..=4 {
            m.set_threads(threads).unwrap();
            let got = m.run(&inputs).unwrap();
            for (a, b) in got.iter().zip(&serial) {
                assert_eq!(
                    bits(a),
                    bits(b),
                    "{what}: {threads} threads, checked={checked}"
                );
            }
        }
    }
}

/// The bits of a tensor's elements (f32 compared bit for bit, NaNs included).
fn bits(t: &Tensor) -> Vec<u64> {
    match t.data() {
        TensorData::F32(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as u64).collect(),
        TensorData::I32(v) => v.iter().map(|&x| x as u64).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| u64::from(x)).collect(),
    }
}

#[test]
fn unary_over_uneven_chunks() {
    let mut r = rng(11);
    for (kind, shape) in [
        (UnaryKind::Clip { min: 0.0, max: 6.0 }, vec![1, 7, 97, 101]),
        (UnaryKind::Relu, vec![70_003]),
        (UnaryKind::Sigmoid, vec![3, 5, 61, 67]),
        (UnaryKind::Tanh, vec![2, 40_001]),
    ] {
        let x = rand_f32(&mut r, &shape);
        check_parallel(
            Op::Unary(Unary { kind }),
            vec![Arg::In(x)],
            &format!("{} {shape:?}", kind.name()),
        );
    }
}

#[test]
fn binary_broadcasting_in_tasks() {
    let mut r = rng(12);
    let cases: [(&[usize], &[usize]); 5] = [
        (&[2, 9, 45, 47], &[2, 9, 45, 47]),
        (&[3, 13, 37, 41], &[1, 13, 1, 1]),
        (&[1, 1, 1, 37], &[2, 5, 97, 37]),
        (&[2, 24, 29, 31], &[24, 1, 31]),
        (&[80_001], &[1]),
    ];
    for kind in [BinaryKind::Add, BinaryKind::Mul, BinaryKind::Max] {
        for (a, b) in cases {
            check_parallel(
                Op::Binary(Binary { kind }),
                vec![Arg::In(rand_f32(&mut r, a)), Arg::In(rand_f32(&mut r, b))],
                &format!("{kind:?} {a:?} {b:?}"),
            );
        }
    }
}

#[test]
fn integer_binary_fault_from_a_later_task() {
    // i64 division by a zero far into the tensor: the fault is reported at every thread count.
    let n = 50_000;
    let a = Tensor::from_i64([n], (0..n as i64).collect()).unwrap();
    let mut d: Vec<i64> = vec![3; n];
    d[n - 7] = 0;
    let b = Tensor::from_i64([n], d).unwrap();
    let (g, inputs) = one_node(
        Op::Binary(Binary {
            kind: BinaryKind::Div,
        }),
        vec![Arg::In(a), Arg::In(b)],
    );
    let mut m = JitModel::compile(&g, &CodegenOptions::default()).unwrap();
    for threads in 1..=3 {
        m.set_threads(threads).unwrap();
        let e = m.run(&inputs).unwrap_err().to_string();
        assert!(e.contains("division by zero"), "{threads} threads: {e}");
    }
}

#[test]
fn cast_and_expand_in_tasks() {
    let mut r = rng(13);
    let x = rand_f32(&mut r, &[3, 111, 113]);
    check_parallel(
        Op::Cast(Cast { to: DType::I32 }),
        vec![Arg::In(x)],
        "cast f32->i32",
    );
    let x = rand_f32(&mut r, &[5, 1, 57]);
    check_parallel(
        Op::Expand(Expand {
            shape: vec![2, 5, 131, 57],
        }),
        vec![Arg::In(x)],
        "expand",
    );
}

#[test]
fn layout_copies_in_tasks() {
    let mut r = rng(15);
    // Two large operands (each cut into tasks), a small one, an i64 one.
    let (a, b, c) = (
        rand_f32(&mut r, &[2, 37, 29, 31]),
        rand_f32(&mut r, &[2, 5, 29, 31]),
        rand_f32(&mut r, &[2, 41, 29, 31]),
    );
    check_parallel(
        Op::Concat(Concat { axis: 1 }),
        vec![Arg::In(a.clone()), Arg::In(b), Arg::In(c)],
        "concat along channels",
    );
    let d = rand_f32(&mut r, &[2, 37, 29, 7]);
    check_parallel(
        Op::Concat(Concat { axis: 3 }),
        vec![Arg::In(a.clone()), Arg::In(d)],
        "concat along rows",
    );
    let ints = |n: usize| {
        let v: Vec<i64> = (0..n as i64).map(|i| i * 7 - 3).collect();
        Tensor::new(vec![n], TensorData::I64(v)).unwrap()
    };
    check_parallel(
        Op::Concat(Concat { axis: 0 }),
        vec![Arg::In(ints(40_000)), Arg::In(ints(3))],
        "concat of i64",
    );
    check_parallel(
        Op::Transpose(Transpose {
            perm: vec![0, 2, 1, 3],
        }),
        vec![Arg::In(a.clone())],
        "transpose keeping rows",
    );
    check_parallel(
        Op::Transpose(Transpose {
            perm: vec![3, 1, 0, 2],
        }),
        vec![Arg::In(a.clone())],
        "transpose of the innermost dim",
    );
    check_parallel(
        Op::Slice(Slice {
            starts: vec![1, 3, 28, 0],
            ends: vec![-1, 36, -1, 31],
            steps: vec![-1, 2, -3, 1],
        }),
        vec![Arg::In(a)],
        "strided, reversed slice",
    );
}

#[test]
fn resize_in_tasks() {
    let mut r = rng(16);
    // FCN's upsampling (classes cut into tasks), and a batch split with a copied dim.
    // FCN's upsampling (classes cut into tasks), both modes; rows resampled in a batch split
    // (a copied dim inside).
    #[rustfmt::skip]
    let cases = [
        ([1, 21, 9, 11], ResizeMode::Linear, CoordMode::HalfPixel, [1, 21, 72, 88], [1.0, 1.0, 8.0, 8.0]),
        ([1, 21, 9, 11], ResizeMode::Nearest, CoordMode::HalfPixel, [1, 21, 72, 88], [1.0, 1.0, 8.0, 8.0]),
        ([5, 3, 20, 30], ResizeMode::Linear, CoordMode::AlignCorners, [5, 3, 47, 30], [1.0, 1.0, 2.35, 1.0]),
    ];
    for (shape, mode, coord, sizes, scales) in cases {
        let op = Resize {
            mode,
            coord,
            nearest: NearestMode::RoundPreferFloor,
            sizes: sizes.to_vec(),
            scales: scales.to_vec(),
        };
        check_parallel(
            Op::Resize(op),
            vec![Arg::In(rand_f32(&mut r, &shape))],
            &format!("resize {mode:?} {coord:?} {shape:?} -> {sizes:?}"),
        );
    }
}

#[test]
fn reductions_and_pools_over_planes() {
    let mut r = rng(14);
    for (axes, shape, kind) in [
        (vec![2, 3], vec![2, 37, 29, 31], ReduceKind::Mean),
        (vec![3], vec![3, 7, 41, 59], ReduceKind::Max),
        (vec![0], vec![9, 41, 203], ReduceKind::Sum),
        (vec![1], vec![5, 311, 43], ReduceKind::Min),
    ] {
        let x = rand_f32(&mut r, &shape);
        check_parallel(
            Op::Reduce(Reduce {
                kind,
                axes: axes.clone(),
                keepdims: true,
            }),
            vec![Arg::In(x)],
            &format!("reduce {kind:?} {axes:?} {shape:?}"),
        );
    }
    let x = rand_f32(&mut r, &[3, 19, 37, 35]);
    check_parallel(
        Op::MaxPool(MaxPool {
            kernel: [3, 3],
            strides: [2, 2],
            pads: [1, 1, 1, 1],
            dilations: [1, 1],
            ceil_mode: false,
        }),
        vec![Arg::In(x.clone())],
        "max_pool",
    );
    check_parallel(
        Op::AvgPool(AvgPool {
            kernel: [2, 3],
            strides: [1, 1],
            pads: [0, 1, 0, 1],
            ceil_mode: false,
            count_include_pad: false,
        }),
        vec![Arg::In(x)],
        "avg_pool",
    );
}

#[test]
fn gemv_and_gemm_blocks() {
    let mut r = rng(15);
    // The FC layer: x [b, in] · W[out, in]ᵀ + bias, batch 1 and 3, `out` not a multiple of 8.
    for (m, kk, n) in [(1, 517, 1003), (3, 300, 250), (1, 64, 2053), (37, 29, 61)] {
        let gemm = Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: true,
        };
        check_parallel(
            Op::Gemm(gemm),
            vec![
                Arg::In(rand_f32(&mut r, &[m, kk])),
                Arg::Const(rand_f32(&mut r, &[n, kk])),
                Arg::Const(rand_f32(&mut r, &[n])),
            ],
            &format!("gemm transB {m}x{kk}x{n}"),
        );
    }
    let gemm = Gemm {
        alpha: 0.5,
        beta: 2.0,
        trans_a: true,
        trans_b: false,
    };
    check_parallel(
        Op::Gemm(gemm),
        vec![
            Arg::In(rand_f32(&mut r, &[45, 133])),
            Arg::In(rand_f32(&mut r, &[45, 87])),
            Arg::In(rand_f32(&mut r, &[133, 1])),
        ],
        "gemm transA, column bias",
    );
}

#[test]
fn matmul_blocks_and_batches() {
    let mut r = rng(16);
    let cases: [(&[usize], &[usize]); 4] = [
        (&[1, 600], &[600, 1001]),
        (&[703], &[703, 97]),
        (&[3, 1, 45, 60], &[2, 60, 51]),
        (&[130, 64], &[64, 9]),
    ];
    for (a, b) in cases {
        check_parallel(
            Op::MatMul(MatMul),
            vec![
                Arg::In(rand_f32(&mut r, a)),
                Arg::Const(rand_f32(&mut r, b)),
            ],
            &format!("matmul {a:?} {b:?}"),
        );
    }
}

/// Timing of the FC layers of the dy-mobile model (GEMV, transB weights) at 1 and 2 threads:
/// `cargo test --release -p dync-codegen --test parallel -- --ignored --nocapture`.
#[test]
#[ignore]
fn gemv_speed() {
    let mut r = rng(17);
    for (kk, n) in [(162, 5724), (1280, 1000), (96, 2916)] {
        let gemm = Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: true,
        };
        let (g, inputs) = one_node(
            Op::Gemm(gemm),
            vec![
                Arg::In(rand_f32(&mut r, &[1, kk])),
                Arg::Const(rand_f32(&mut r, &[n, kk])),
                Arg::Const(rand_f32(&mut r, &[n])),
            ],
        );
        let mut m = JitModel::compile(&g, &CodegenOptions::default()).unwrap();
        for threads in [1, 2] {
            m.set_threads(threads).unwrap();
            let mut times: Vec<f64> = (0..200)
                .map(|_| {
                    let t = std::time::Instant::now();
                    m.run(&inputs).unwrap();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let med = times[times.len() / 2];
            let gbs = (kk * n * 4) as f64 / (med * 1e-3) / 1e9;
            println!("gemv {kk}x{n}, {threads} thr: median {med:.3} ms, {gbs:.1} GB/s of weights");
        }
    }
}

#[test]
fn predict_pooling_tasks_and_column_blocks() {
    let mut r = rng(17);
    // (x shape, layer widths, act): a single layer is cut into column blocks of whole softmax
    // runs; every case but the last has several pooling tasks. Hidden layers are cut
    // into column blocks too: 256 × 512 into 8 (two samples), 130 × 300 and 260 × 130 into
    // three with a short last one, then the last layer into ten.
    let cases: [(&[usize], &[usize], PredictAct); 5] = [
        (&[1, 96, 56, 56], &[2916], PredictAct::Softmax { run: 6 }),
        (&[3, 40, 17, 19], &[1001], PredictAct::Sigmoid),
        (&[2, 64, 28, 28], &[16, 64], PredictAct::Sigmoid),
        (&[2, 512, 7, 7], &[256, 1000], PredictAct::Sigmoid),
        (
            &[2, 300, 3, 3],
            &[130, 260, 600],
            PredictAct::Softmax { run: 6 },
        ),
    ];
    for (shape, widths, act) in cases {
        let mut args = vec![Arg::In(rand_f32(&mut r, shape))];
        let mut width = shape[1];
        for &o in widths {
            args.push(Arg::Const(rand_f32(&mut r, &[o, width])));
            args.push(Arg::Const(rand_f32(&mut r, &[o])));
            width = o;
        }
        let op = Predict {
            hidden: Hidden::Relu,
            act,
            scale: 0.5,
        };
        check_parallel(
            Op::Predict(op),
            args,
            &format!("predict {shape:?} {widths:?} {act:?}"),
        );
    }
}
