//! Shape rules that the whole compiler leans on, checked against independent oracles: window
//! enumeration for conv, PyTorch for pooling with ceil_mode, numpy for broadcasting, matmul and
//! einsum, Python's slicing for slice clamping.

use dync_ir::ops::*;
use dync_ir::{Op, TensorType};

fn infer(op: Op, inputs: &[TensorType]) -> Result<Vec<usize>, String> {
    let refs: Vec<&TensorType> = inputs.iter().collect();
    op.infer(&refs).map(|t| t.shape).map_err(|e| e.to_string())
}

/// Number of window positions, by enumeration: window `k` starts at `k * stride` and its last
/// tap `(kernel - 1) * dilation` later must lie inside the padded input.
fn windows(
    input: usize,
    pad_begin: usize,
    pad_end: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> usize {
    let padded = input + pad_begin + pad_end;
    (0..=padded)
        .filter(|k| k * stride + (kernel - 1) * dilation < padded)
        .count()
}

#[test]
fn conv_out_dim_counts_the_windows() {
    for input in 1..9 {
        for kernel in 1..4 {
            for stride in 1..4 {
                for dilation in 1..3 {
                    for (pb, pe) in [(0, 0), (1, 0), (0, 2), (2, 1)] {
                        let expect = windows(input, pb, pe, kernel, stride, dilation);
                        let got = conv_out_dim(input, pb, pe, kernel, stride, dilation);
                        if expect == 0 {
                            assert!(
                                got.is_err(),
                                "{input} {pb} {pe} {kernel} {stride} {dilation}: {got:?}"
                            );
                        } else {
                            assert_eq!(
                                got,
                                Ok(expect),
                                "{input} {pb} {pe} {kernel} {stride} {dilation}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn conv_infer_applies_pads_strides_and_dilations_per_axis() {
    let conv = Conv {
        strides: [2, 3],
        pads: [1, 0, 2, 3], // top, left, bottom, right
        dilations: [2, 1],
        group: 2,
        clamp: None,
        residual: false,
        act: None,
        in_scale: false,
    };
    let x = TensorType::f32([3, 4, 10, 11]);
    let w = TensorType::f32([6, 2, 3, 4]);
    let b = TensorType::f32([6]);
    let oh = windows(10, 1, 2, 3, 2, 2);
    let ow = windows(11, 0, 3, 4, 3, 1);
    assert_eq!((oh, ow), (5, 4));
    assert_eq!(
        infer(Op::Conv(conv.clone()), &[x.clone(), w.clone(), b]),
        Ok(vec![3, 6, oh, ow])
    );
    assert!(
        infer(
            Op::Conv(conv.clone()),
            &[x.clone(), TensorType::f32([6, 4, 3, 4])]
        )
        .is_err(),
        "C/group mismatch"
    );
    assert!(
        infer(Op::Conv(conv), &[x, w, TensorType::f32([2])]).is_err(),
        "bias length"
    );
}

/// (input, kernel, stride, pad on both sides, dilation, output with floor, output with ceil),
/// from `torch.nn.functional.max_pool2d` (torch 2.x): the rows where ceil_mode matters, among
/// them every one where the last window would start in the end padding and is dropped.
const TORCH_POOL: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
    (1, 2, 2, 1, 1, 1, 1),
    (1, 2, 3, 1, 1, 1, 1),
    (2, 1, 2, 0, 1, 1, 1),
    (2, 1, 2, 0, 2, 1, 1),
    (2, 1, 3, 0, 1, 1, 1),
    (2, 1, 3, 0, 2, 1, 1),
    (2, 2, 2, 1, 2, 1, 2),
    (2, 2, 3, 1, 1, 1, 1),
    (2, 2, 3, 1, 2, 1, 1),
    (2, 3, 2, 1, 1, 1, 2),
    (2, 3, 3, 1, 1, 1, 1),
    (3, 1, 3, 0, 1, 1, 1),
    (3, 1, 3, 0, 2, 1, 1),
    (3, 2, 2, 0, 1, 1, 2),
    (3, 2, 2, 1, 1, 2, 2),
    (3, 2, 3, 0, 1, 1, 1),
    (3, 2, 3, 1, 2, 1, 2),
    (3, 3, 3, 1, 1, 1, 2),
    (4, 1, 2, 0, 1, 2, 2),
    (4, 1, 2, 0, 2, 2, 2),
    (4, 2, 2, 0, 2, 1, 2),
    (4, 2, 2, 1, 2, 2, 3),
    (4, 2, 3, 0, 1, 1, 2),
    (4, 2, 3, 0, 2, 1, 2),
    (4, 2, 3, 1, 1, 2, 2),
    (4, 3, 2, 0, 1, 1, 2),
    (4, 3, 2, 1, 1, 2, 3),
    (4, 3, 2, 1, 2, 1, 2),
    (4, 3, 3, 0, 1, 1, 2),
    (4, 3, 3, 1, 2, 1, 2),
    (5, 1, 3, 0, 1, 2, 2),
    (5, 1, 3, 0, 2, 2, 2),
    (5, 2, 2, 0, 1, 2, 3),
    (5, 2, 2, 1, 1, 3, 3),
    (5, 2, 3, 0, 2, 1, 2),
    (5, 2, 3, 1, 1, 2, 2),
    (5, 2, 3, 1, 2, 2, 2),
    (5, 3, 3, 0, 1, 1, 2),
    (5, 3, 3, 1, 1, 2, 2),
    (5, 3, 3, 1, 2, 1, 2),
    (6, 1, 2, 0, 1, 3, 3),
    (6, 1, 2, 0, 2, 3, 3),
    (6, 1, 3, 0, 1, 2, 2),
    (6, 1, 3, 0, 2, 2, 2),
    (6, 2, 2, 0, 2, 2, 3),
    (6, 2, 2, 1, 2, 3, 4),
    (6, 2, 3, 0, 1, 2, 2),
    (6, 2, 3, 1, 2, 2, 3),
    (6, 3, 2, 0, 1, 2, 3),
    (6, 3, 2, 0, 2, 1, 2),
    (6, 3, 2, 1, 1, 3, 4),
    (6, 3, 2, 1, 2, 2, 3),
    (6, 3, 3, 0, 2, 1, 2),
    (6, 3, 3, 1, 1, 2, 3),
    (7, 2, 2, 0, 1, 3, 4),
    (7, 2, 2, 1, 1, 4, 4),
    (7, 2, 3, 0, 1, 2, 3),
    (7, 2, 3, 0, 2, 2, 3),
    (7, 2, 3, 1, 1, 3, 3),
    (7, 3, 3, 0, 1, 2, 3),
    (7, 3, 3, 0, 2, 1, 2),
    (7, 3, 3, 1, 2, 2, 3),
    (8, 1, 2, 0, 1, 4, 4),
    (8, 1, 2, 0, 2, 4, 4),
    (8, 1, 3, 0, 1, 3, 3),
    (8, 1, 3, 0, 2, 3, 3),
    (8, 2, 2, 0, 2, 3, 4),
    (8, 2, 2, 1, 2, 4, 5),
    (8, 2, 3, 0, 2, 2, 3),
    (8, 2, 3, 1, 1, 3, 3),
    (8, 2, 3, 1, 2, 3, 3),
    (8, 3, 2, 0, 1, 3, 4),
    (8, 3, 2, 0, 2, 2, 3),
    (8, 3, 2, 1, 1, 4, 5),
    (8, 3, 2, 1, 2, 3, 4),
    (8, 3, 3, 0, 1, 2, 3),
    (8, 3, 3, 1, 1, 3, 3),
    (8, 3, 3, 1, 2, 2, 3),
];

#[test]
fn pool_ceil_mode_matches_pytorch() {
    for &(input, k, s, p, d, floor, ceil) in TORCH_POOL {
        let row = format!("{:?}", (input, k, s, p, d));
        assert_eq!(
            pool_out_dim(input, p, p, k, s, d, false),
            Ok(floor),
            "{row}"
        );
        assert_eq!(pool_out_dim(input, p, p, k, s, d, true), Ok(ceil), "{row}");
        // Through the ops: the pooled axis is H; W is a single column.
        let x = TensorType::f32([1, 2, input, 1]);
        let max = MaxPool {
            kernel: [k, 1],
            strides: [s, 1],
            pads: [p, 0, p, 0],
            dilations: [d, 1],
            ceil_mode: true,
        };
        assert_eq!(
            infer(Op::MaxPool(max), std::slice::from_ref(&x)),
            Ok(vec![1, 2, ceil, 1]),
            "{row}"
        );
        if d == 1 {
            let avg = AvgPool {
                kernel: [k, 1],
                strides: [s, 1],
                pads: [p, 0, p, 0],
                ceil_mode: true,
                count_include_pad: false,
            };
            assert_eq!(
                infer(Op::AvgPool(avg), &[x]),
                Ok(vec![1, 2, ceil, 1]),
                "{row}"
            );
        }
    }
}

#[test]
fn broadcasting_matches_numpy() {
    // Expected shapes from numpy.broadcast_shapes.
    let cases: &[(&[usize], &[usize], &[usize])] = &[
        (&[2, 1, 4], &[3, 1], &[2, 3, 4]),
        (&[5], &[2, 1, 1], &[2, 1, 5]),
        (&[], &[3], &[3]),
        (&[1], &[0], &[0]),
        (&[4, 1], &[1, 0], &[4, 0]),
    ];
    for &(a, b, out) in cases {
        assert_eq!(broadcast_shapes(a, b).as_deref(), Ok(out), "{a:?} {b:?}");
        assert_eq!(broadcast_shapes(b, a).as_deref(), Ok(out), "{b:?} {a:?}");
    }
    assert!(broadcast_shapes(&[2, 3], &[3, 2]).is_err());
    let add = Op::Binary(Binary {
        kind: BinaryKind::Add,
    });
    assert!(
        infer(
            add,
            &[
                TensorType::f32([2]),
                TensorType::new(dync_ir::DType::I64, [2])
            ]
        )
        .is_err(),
        "mixed dtypes"
    );
}

#[test]
fn matmul_matches_numpy() {
    // Expected shapes from numpy.matmul.
    let cases: &[(&[usize], &[usize], &[usize])] = &[
        (&[3], &[3], &[]),
        (&[3], &[3, 4], &[4]),
        (&[2, 3], &[3], &[2]),
        (&[5, 1, 2, 3], &[4, 3, 6], &[5, 4, 2, 6]),
        (&[1, 2, 3], &[3, 7], &[1, 2, 7]),
    ];
    for &(a, b, out) in cases {
        let got = infer(
            Op::MatMul(MatMul),
            &[TensorType::f32(a), TensorType::f32(b)],
        );
        assert_eq!(got.as_deref(), Ok(out), "{a:?} x {b:?}");
    }
    let s = matmul_shape(&[5, 1, 2, 3], &[4, 3, 6]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((s.batch, s.m, s.k, s.n), (vec![5, 4], 2, 3, 6));
    assert!(matmul_shape(&[2, 3], &[4, 5]).is_err());
}

#[test]
fn einsum_matches_numpy() {
    // Expected shapes from numpy.einsum.
    type Case<'a> = (&'a str, &'a [&'a [usize]], &'a [usize]);
    let cases: &[Case] = &[
        (
            "...ij,...jk->...ik",
            &[&[2, 1, 3, 4], &[5, 4, 6]],
            &[2, 5, 3, 6],
        ),
        ("...ij", &[&[2, 3, 4]], &[2, 3, 4]),
        ("ij...,jk", &[&[2, 3, 7], &[3, 5]], &[7, 2, 5]),
        (
            "bog,ogcij->bocij",
            &[&[2, 4, 6], &[4, 6, 3, 3, 3]],
            &[2, 4, 3, 3, 3],
        ),
        ("ii->i", &[&[4, 4]], &[4]),
        ("i...i", &[&[3, 2, 3]], &[2]),
        ("...,...->...", &[&[2, 1], &[1, 3]], &[2, 3]),
    ];
    for &(eq, shapes, out) in cases {
        let tys: Vec<TensorType> = shapes.iter().map(|&s| TensorType::f32(s)).collect();
        let got = infer(
            Op::Einsum(Einsum {
                equation: eq.into(),
            }),
            &tys,
        );
        assert_eq!(got.as_deref(), Ok(out), "{eq}");
    }
    let einsum = |eq: &str, shapes: &[&[usize]]| EinsumSpec::new(eq, shapes).map(|s| s.out_shape());
    assert!(
        einsum("ij,jk->ik", &[&[2, 3], &[4, 5]]).is_err(),
        "label sizes differ"
    );
    assert!(
        einsum("ij->ik", &[&[2, 3]]).is_err(),
        "output label in no operand"
    );
    assert!(einsum("ij,jk", &[&[2, 3]]).is_err(), "operand count");
    assert!(
        einsum("...ij->ij", &[&[5, 2, 3]]).is_err(),
        "ellipsis dims dropped"
    );
}

/// `len(range(dim)[start:end:step])` in Python for dim in (0, 1, 5), start and end in
/// (-9, -5, -1, 0, 2, 5, 9), step in (-2, -1, 1, 3), in that nesting order.
const PYTHON_SLICE_LENGTHS: &str = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000011001100110000000000000000001100110011110011000000000000110011001111001100000000000011001100111100110000000000000000000000110011000000000000000000000011001100000000000000000000000000000000420000002100520052110000000042000000210052005235002400000024001200001100111100000000420000002100520052230012000021120000000031003135002400000024001200000000003500240000002400120000000000";

#[test]
fn slice_clamping_matches_python() {
    let mut expected = PYTHON_SLICE_LENGTHS.bytes().map(|b| (b - b'0') as usize);
    let points = [-9i64, -5, -1, 0, 2, 5, 9];
    for dim in [0usize, 1, 5] {
        for start in points {
            for end in points {
                for step in [-2i64, -1, 1, 3] {
                    let want = expected.next();
                    let (s, e) =
                        Slice::clamp(start, end, step, dim).unwrap_or_else(|e| panic!("{e}"));
                    let op = Slice {
                        starts: vec![s],
                        ends: vec![e],
                        steps: vec![step],
                    };
                    let got = infer(Op::Slice(op), &[TensorType::f32([dim])]);
                    assert_eq!(
                        got,
                        Ok(vec![want.unwrap_or(usize::MAX)]),
                        "[{start}:{end}:{step}] of {dim}"
                    );
                }
            }
        }
    }
    assert!(expected.next().is_none());
    assert!(Slice::clamp(0, 1, 0, 3).is_err(), "step 0");
}
