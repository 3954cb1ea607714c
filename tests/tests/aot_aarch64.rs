//! Cross compilation: `dync compile --target aarch64-unknown-linux-gnu --emit obj` on this x86-64
//! machine, linked into the C harness (`examples/embed_in_c/harness.c`) with
//! `aarch64-linux-gnu-gcc -static -lm` and run under `qemu-aarch64`; its outputs must equal the
//! x86-64 JIT's (`dync run`) within atol 1e-5, for a dynamic zoo model and a static one.
//! `scripts/test` installs the cross compiler and qemu (Debian packages gcc-aarch64-linux-gnu
//! and qemu-user); without them this test fails naming them.

mod aot_common;

use aot_common::*;
use dync_tests::assert_close;
use std::path::Path;
use std::process::Command;

const CC: &str = "aarch64-linux-gnu-gcc";
const QEMU: &str = "qemu-aarch64";

fn require_tools() {
    for (tool, package) in [(CC, "gcc-aarch64-linux-gnu"), (QEMU, "qemu-user")] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} is missing: install the Debian package {package} (scripts/test does)"
        );
    }
}

fn check(dir: &Path, zoo_name: &str, c_name: &str) {
    let model = export_zoo(dir, zoo_name, 32, &[], &format!("{c_name}.onnx"));
    let x = dir.join(format!("{c_name}-x.npy"));
    random_input(&x, &[1, 3, 32, 32], 3);
    let obj = dir.join(format!("{c_name}.o"));
    compile(
        &model,
        &obj,
        &["--emit", "obj", "--target", "aarch64-unknown-linux-gnu"],
    );
    let harness = dir.join(format!("{c_name}-harness"));
    build_harness(
        CC,
        dir,
        c_name,
        &["-static", &obj.display().to_string(), "-lm"],
        &harness,
    );
    let raw_in = dir.join(format!("{c_name}-x.raw"));
    npy_to_raw(&x, &raw_in);
    let raw_out = dir.join(format!("{c_name}-y.raw"));
    run_ok(Command::new(QEMU).arg(&harness).arg(&raw_in).arg(&raw_out));
    let got = read_raw_f32(&raw_out);

    let jit = dir.join(format!("{c_name}-jit"));
    run_ok(
        Command::new(dync_bin())
            .arg("run")
            .arg(&model)
            .arg("--input")
            .arg(&x)
            .arg("--output-dir")
            .arg(&jit),
    );
    let (shape, want) = read_f32(&jit.join("output.npy"));
    assert_eq!(shape, [1, 1000]);
    assert_close(
        &got,
        &want,
        1e-5,
        0.0,
        &format!("{zoo_name}: aarch64 (qemu) vs x86-64 JIT"),
    );
}

#[test]
fn aarch64_objects_under_qemu_equal_the_x86_64_jit() {
    require_tools();
    let dir = tempfile::Builder::new()
        .prefix("dync-aarch64-")
        .tempdir()
        .unwrap_or_else(|e| panic!("{e}"));
    check(dir.path(), "dy-mobile", "dy_mobile");
    check(dir.path(), "mobilenetv2", "mobilenetv2");
}
