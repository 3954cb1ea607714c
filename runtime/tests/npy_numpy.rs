//! Cross-check against numpy itself: files numpy writes (every supported dtype, Fortran order,
//! versions 2.0 and 3.0, big-endian) read back as the values numpy reports, the ones it writes
//! that dync refuses (object/pickle, structured, other dtypes) give their specific errors, and
//! files we write load in `np.load` with the same dtype, shape and values.
//!
//! Needs the project venv (`$DYNC_VENV`, default `~/.cache/dync/venv`); without it the test
//! fails and says to run `scripts/setup-venv`.

use std::path::{Path, PathBuf};
use std::process::Command;

use dync_runtime::npy::{read_npy, write_npy, NpyArray, NpyData, NpyErrorKind};

fn python() -> PathBuf {
    let venv = match std::env::var_os("DYNC_VENV") {
        Some(v) => PathBuf::from(v),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is not set");
            Path::new(&home).join(".cache/dync/venv")
        }
    };
    let py = venv.join("bin/python");
    assert!(
        py.is_file(),
        "the numpy cross-check needs {}; run scripts/setup-venv (or set DYNC_VENV to the venv)",
        py.display()
    );
    py
}

fn run_python(script: &str, dir: &Path) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .expect("cannot run the venv python");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Python helper shared by both directions: `describe(a)` prints an array as one line
/// `kind|dims|values`, values in C order, f32 as their u32 bit patterns, bools as 0/1.
const DESCRIBE: &str = r#"
import sys, os
import numpy as np
def describe(a):
    kinds = {'float32': 'f32', 'int64': 'i64', 'int32': 'i32', 'bool': 'bool'}
    kind = kinds[a.dtype.name]
    c = a.copy(order='C')  # (ascontiguousarray would make a 0-d array 1-d)
    if kind == 'f32':
        vals = c.astype('<f4').view('<u4').ravel().tolist()
    else:
        vals = c.astype('<i8').ravel().tolist()
    return kind + '|' + ' '.join(map(str, c.shape)) + '|' + ' '.join(map(str, vals))
"#;

/// The same line for an array read by us.
fn describe(arr: &NpyArray) -> String {
    let join = |v: Vec<String>| v.join(" ");
    let vals = match &arr.data {
        NpyData::F32(v) => join(v.iter().map(|x| x.to_bits().to_string()).collect()),
        NpyData::I64(v) => join(v.iter().map(|x| x.to_string()).collect()),
        NpyData::I32(v) => join(v.iter().map(|x| x.to_string()).collect()),
        NpyData::Bool(v) => join(v.iter().map(|&x| u8::from(x).to_string()).collect()),
    };
    let dims = join(arr.shape.iter().map(|d| d.to_string()).collect());
    format!("{}|{dims}|{vals}", arr.dtype())
}

#[test]
fn numpy_written_files_read_correctly_or_fail_specifically() {
    let dir = tempfile::tempdir().unwrap();
    // Writes <name>.npy for each fixture and prints `name|describe(array)` for the readable ones.
    let script = format!(
        "{DESCRIBE}{}",
        r#"
d = sys.argv[1]
rng = np.random.default_rng(7)
def save(name, a, version=None, pickle=False, expect=True):
    path = os.path.join(d, name + '.npy')
    if version is None:
        np.save(path, a, allow_pickle=pickle)
    else:
        with open(path, 'wb') as f:
            np.lib.format.write_array(f, a, version=version, allow_pickle=pickle)
    if expect:
        print(name + '|' + describe(a))
specials = np.array([np.nan, -np.inf, np.inf, -0.0, 1e-45, 3.4028235e38], dtype=np.float32)
for shape in [(), (0,), (5,), (2, 3), (2, 0, 3), (2, 3, 4), (1, 2, 3, 4)]:
    tag = 'x'.join(map(str, shape)) or 'scalar'
    save('f32_' + tag, rng.standard_normal(shape).astype(np.float32))
    save('i64_' + tag, rng.integers(-2**63, 2**63 - 1, size=shape, dtype=np.int64))
    save('i32_' + tag, rng.integers(-2**31, 2**31 - 1, size=shape, dtype=np.int32))
    save('bool_' + tag, rng.integers(0, 2, size=shape).astype(bool))
save('f32_specials', specials)
save('fortran_f32', np.asfortranarray(rng.standard_normal((3, 4, 5)).astype(np.float32)))
save('fortran_i64', np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)))
save('fortran_bool', np.asfortranarray(rng.integers(0, 2, size=(4, 3, 2)).astype(bool)))
save('v2_f32', rng.standard_normal((3, 4)).astype(np.float32), version=(2, 0))
save('v3_i32', np.arange(-5, 5, dtype=np.int32), version=(3, 0))
save('be_f32', rng.standard_normal((2, 5)).astype('>f4'))
save('be_i64', np.array([1, -2, 2**40], dtype='>i8'))
save('be_i32_fortran', np.asfortranarray(np.arange(12, dtype='>i4').reshape(3, 4)))
save('object', np.array([1, 'a', None], dtype=object), pickle=True, expect=False)
save('structured', np.zeros(3, dtype=[('a', '<f4'), ('b', '<i4')]), expect=False)
save('f64', np.ones(4), expect=False)
save('u8', np.ones(4, dtype=np.uint8), expect=False)
save('f16', np.ones(4, dtype=np.float16), expect=False)
save('unicode', np.array(['ab', 'c']), expect=False)
"#
    );
    let listing = run_python(&script, dir.path());
    let mut checked = 0;
    for line in listing.lines() {
        let (name, expected) = line.split_once('|').unwrap();
        let path = dir.path().join(format!("{name}.npy"));
        let arr = read_npy(&path, u64::MAX).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(describe(&arr), expected, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 7 * 4 + 1 + 3 + 2 + 3, "fixture count changed");

    let kind = |name: &str| {
        read_npy(&dir.path().join(format!("{name}.npy")), u64::MAX)
            .unwrap_err()
            .kind
    };
    assert!(matches!(kind("object"), NpyErrorKind::Pickle { .. }));
    assert!(matches!(kind("structured"), NpyErrorKind::Structured));
    for (name, descr) in [
        ("f64", "<f8"),
        ("u8", "|u1"),
        ("f16", "<f2"),
        ("unicode", "<U2"),
    ] {
        match kind(name) {
            NpyErrorKind::UnsupportedDType { descr: d } => assert_eq!(d, descr, "{name}"),
            other => panic!("{name}: {other}"),
        }
    }
}

#[test]
fn numpy_loads_what_we_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    let shapes: &[&[usize]] = &[
        &[],
        &[0],
        &[7],
        &[2, 3],
        &[3, 0, 2],
        &[2, 3, 4],
        &[2, 1, 3, 2],
    ];
    for (s, shape) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        let datas = [
            NpyData::F32(
                (0..n)
                    .map(|i| match i % 5 {
                        0 => f32::NAN,
                        1 => -0.0,
                        2 => f32::INFINITY,
                        _ => i as f32 / 7.0 - 1.0,
                    })
                    .collect(),
            ),
            NpyData::I64((0..n).map(|i| i64::MIN + i as i64 * 3).collect()),
            NpyData::I32((0..n).map(|i| i32::MAX - i as i32 * 5).collect()),
            NpyData::Bool((0..n).map(|i| i % 2 == 0).collect()),
        ];
        for data in datas {
            let arr = NpyArray {
                shape: shape.to_vec(),
                data,
            };
            let name = format!("{}_{s}", arr.dtype());
            write_npy(&dir.path().join(format!("{name}.npy")), &arr).unwrap();
            expected.push(format!("{name}|{}", describe(&arr)));
        }
    }
    let script = format!(
        "{DESCRIBE}{}",
        r#"
d = sys.argv[1]
for f in sorted(os.listdir(d)):
    path = os.path.join(d, f)
    with open(path, 'rb') as fh:
        assert np.lib.format.read_magic(fh) == (1, 0), f
    a = np.load(path, allow_pickle=False)
    assert a.dtype.byteorder in '=<|', f
    print(f[:-4] + '|' + describe(a))
"#
    );
    let mut got: Vec<String> = run_python(&script, dir.path())
        .lines()
        .map(String::from)
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(expected.len(), shapes.len() * 4);
    assert_eq!(got, expected);
}
