//! Property tests for the `.npy` reader and writer: arbitrary and mutated input never panics
//! (proptest turns a panic into a failure), round trips are bit-exact, and both directions
//! agree with npyz, an independent implementation, including Fortran order and big-endian data.

use dync_runtime::npy::{read_npy_bytes, write_npy_bytes, NpyArray, NpyDType, NpyData};
use npyz::WriterBuilder;
use proptest::prelude::*;

const LIMIT: u64 = 1 << 20;

fn dtype() -> impl Strategy<Value = NpyDType> {
    prop_oneof![
        Just(NpyDType::F32),
        Just(NpyDType::I64),
        Just(NpyDType::I32),
        Just(NpyDType::Bool)
    ]
}

/// Arrays of rank 0..=4 with dims 0..=4 and arbitrary element values (any f32 bit pattern).
fn array() -> impl Strategy<Value = NpyArray> {
    (dtype(), prop::collection::vec(0usize..=4, 0..=4)).prop_flat_map(|(dtype, shape)| {
        let n: usize = shape.iter().product();
        let data = match dtype {
            NpyDType::F32 => prop::collection::vec(any::<u32>().prop_map(f32::from_bits), n)
                .prop_map(NpyData::F32)
                .boxed(),
            NpyDType::I64 => prop::collection::vec(any::<i64>(), n)
                .prop_map(NpyData::I64)
                .boxed(),
            NpyDType::I32 => prop::collection::vec(any::<i32>(), n)
                .prop_map(NpyData::I32)
                .boxed(),
            NpyDType::Bool => prop::collection::vec(any::<bool>(), n)
                .prop_map(NpyData::Bool)
                .boxed(),
        };
        data.prop_map(move |data| NpyArray {
            shape: shape.clone(),
            data,
        })
    })
}

/// Element values compared bit for bit (NaN payloads included).
fn bits(data: &NpyData) -> Vec<u64> {
    match data {
        NpyData::F32(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
        NpyData::I64(v) => v.iter().map(|&x| x as u64).collect(),
        NpyData::I32(v) => v.iter().map(|&x| x as u32 as u64).collect(),
        NpyData::Bool(v) => v.iter().map(|&x| u64::from(x)).collect(),
    }
}

/// Header text built from tokens that appear in real headers, plus hostile ones.
fn header_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just(" ".to_string()),
        Just("'descr'".to_string()),
        Just("'fortran_order'".to_string()),
        Just("'shape'".to_string()),
        Just("'<f4'".to_string()),
        Just("'>i8'".to_string()),
        Just("'|b1'".to_string()),
        Just("'|O'".to_string()),
        Just("True".to_string()),
        Just("False".to_string()),
        Just("None".to_string()),
        Just("-".to_string()),
        Just("'".to_string()),
        Just("\\".to_string()),
        Just("\n".to_string()),
        (0u64..=u64::MAX).prop_map(|n| n.to_string()),
        (0u64..8).prop_map(|n| n.to_string()),
        "[a-z_]{1,8}",
        "'[^']{0,6}'",
    ];
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

fn with_header(version: u8, text: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    out
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match *m {
        Mutation::Set(i, b) if !bytes.is_empty() => {
            let i = at(i, bytes.len());
            bytes[i] = b;
        }
        Mutation::Insert(i, b) => {
            let i = at(i, bytes.len() + 1);
            bytes.insert(i, b);
        }
        Mutation::Remove(i) if !bytes.is_empty() => {
            bytes.remove(at(i, bytes.len()));
        }
        Mutation::Truncate(i) => bytes.truncate(at(i, bytes.len() + 1)),
        _ => {}
    }
}

/// Whatever comes back from mutated input is internally consistent.
fn check_consistent(result: Result<NpyArray, dync_runtime::npy::NpyError>) {
    match result {
        Ok(arr) => assert_eq!(arr.shape.iter().product::<usize>(), arr.len()),
        Err(e) => assert!(e.to_string().starts_with("<bytes>: "), "{e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip_is_bit_exact(arr in array()) {
        let bytes = write_npy_bytes(&arr).unwrap();
        let back = read_npy_bytes(&bytes, LIMIT).unwrap();
        prop_assert_eq!(&back.shape, &arr.shape);
        prop_assert_eq!(back.dtype(), arr.dtype());
        prop_assert_eq!(bits(&back.data), bits(&arr.data));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_consistent(read_npy_bytes(&bytes, LIMIT));
        let mut with_magic = b"\x93NUMPY".to_vec();
        with_magic.extend_from_slice(&bytes);
        check_consistent(read_npy_bytes(&with_magic, LIMIT));
    }

    #[test]
    fn header_soup_never_panics(
        version in 1u8..=3,
        text in header_soup(),
        data in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        check_consistent(read_npy_bytes(&with_header(version, &text, &data), LIMIT));
    }

    #[test]
    fn mutated_valid_files_never_panic(
        arr in array(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let mut bytes = write_npy_bytes(&arr).unwrap();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_consistent(read_npy_bytes(&bytes, LIMIT));
    }

    #[test]
    fn mutated_headers_never_panic(
        arr in array(),
        edits in prop::collection::vec((0usize..128, any::<u8>()), 1..8),
    ) {
        // Confine the edits to the preamble and header, where the parser works.
        let mut bytes = write_npy_bytes(&arr).unwrap();
        let data_offset = bytes.len() - arr.len() * arr.dtype().itemsize();
        for (i, b) in edits {
            bytes[i % data_offset] = b;
        }
        check_consistent(read_npy_bytes(&bytes, LIMIT));
    }

    /// Our files read back identically through npyz.
    #[test]
    fn npyz_reads_what_we_write(arr in array()) {
        let bytes = write_npy_bytes(&arr).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        prop_assert_eq!(npy.order(), npyz::Order::C);
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        prop_assert_eq!(&shape, &arr.shape);
        let theirs = match arr.dtype() {
            NpyDType::F32 => NpyData::F32(npy.into_vec().unwrap()),
            NpyDType::I64 => NpyData::I64(npy.into_vec().unwrap()),
            NpyDType::I32 => NpyData::I32(npy.into_vec().unwrap()),
            NpyDType::Bool => NpyData::Bool(npy.into_vec().unwrap()),
        };
        prop_assert_eq!(bits(&theirs), bits(&arr.data));
    }

    /// npyz's files, in either order and byte order, read back as the same C-order array.
    #[test]
    fn we_read_what_npyz_writes(arr in array(), fortran in any::<bool>(), big in any::<bool>()) {
        let order = if fortran { npyz::Order::Fortran } else { npyz::Order::C };
        // Storage order: in Fortran order the flat position of C-order element `c` (with
        // multi-index i) is Σ i_k·(d_0···d_{k-1}).
        let rank = arr.shape.len();
        let mut stored_pos = vec![0usize; arr.len()];
        for (c, pos) in stored_pos.iter_mut().enumerate() {
            let (mut rest, mut stride) = (c, 1usize);
            let mut index = vec![0usize; rank];
            for k in (0..rank).rev() {
                index[k] = rest % arr.shape[k];
                rest /= arr.shape[k];
            }
            *pos = if fortran {
                let mut p = 0;
                for (i, d) in index.iter().zip(&arr.shape) {
                    p += i * stride;
                    stride *= d;
                }
                p
            } else {
                c
            };
        }
        fn storage<T: Copy + Default>(v: &[T], pos: &[usize]) -> Vec<T> {
            let mut out = vec![T::default(); v.len()];
            for (c, &p) in pos.iter().enumerate() {
                out[p] = v[c];
            }
            out
        }
        let endian = if big { ">" } else { "<" };
        let dims: Vec<u64> = arr.shape.iter().map(|&d| d as u64).collect();
        let mut bytes = Vec::new();
        macro_rules! write_with {
            ($v:expr, $descr:expr) => {{
                let dtype = npyz::DType::Plain($descr.parse().unwrap());
                let mut w = npyz::WriteOptions::new()
                    .dtype(dtype)
                    .shape(&dims)
                    .order(order)
                    .writer(&mut bytes)
                    .begin_nd()
                    .unwrap();
                w.extend(storage($v, &stored_pos)).unwrap();
                w.finish().unwrap();
            }};
        }
        match &arr.data {
            NpyData::F32(v) => write_with!(v, format!("{endian}f4")),
            NpyData::I64(v) => write_with!(v, format!("{endian}i8")),
            NpyData::I32(v) => write_with!(v, format!("{endian}i4")),
            NpyData::Bool(v) => write_with!(v, "|b1"),
        }
        let back = read_npy_bytes(&bytes, LIMIT).unwrap();
        prop_assert_eq!(&back.shape, &arr.shape);
        prop_assert_eq!(bits(&back.data), bits(&arr.data));
    }
}
