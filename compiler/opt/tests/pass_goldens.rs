//! Every pass of `PASS_NAMES` has golden IR tests: at least one `.dync` file (with its
//! `.expected`) under `tests/filetests/opt/<pass>/`, run by `dync-tests`' filetests runner.

use std::path::Path;

#[test]
fn every_pass_has_a_golden_ir_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/filetests/opt");
    for pass in dync_opt::PASS_NAMES {
        let dir = root.join(pass);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("pass `{pass}`: no golden tests in {}: {e}", dir.display()));
        let cases: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "dync"))
            .collect();
        assert!(
            !cases.is_empty(),
            "pass `{pass}`: no .dync file in {}",
            dir.display()
        );
        for case in cases {
            let expected = case.with_extension("expected");
            assert!(
                expected.is_file(),
                "{} has no {}",
                case.display(),
                expected.display()
            );
        }
    }
}
