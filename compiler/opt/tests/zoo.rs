//! Every dynamic network of the zoo, in both export forms (mix, train) and both exporter styles
//! (legacy, dynamo), at batch 1 and 2 (and the train form with a dynamic batch, imported at 3):
//! after import and the pipeline, as many `dyn_conv`s as the zoo built dynamic convs, none left
//! as a conv with a computed kernel, no remark, outputs equal to the interpreter on the original
//! graph (atol 1e-4 + rtol 1e-3), and the train form's compiled MACs within 5 % of the mix form's.

mod common;

use common::{computed_weight_convs, dyn_convs, import_bytes, optimize_and_compare};
use dync::zoo::{self, Batch, Exporter, Form};

/// Image side: small, so that the interpreter runs every network quickly.
const SIDE: usize = 32;

fn check_network(name: &str) {
    for exporter in [Exporter::Legacy, Exporter::Dynamo] {
        for batch in [1, 2] {
            let mut macs = Vec::new();
            for form in [Form::Mix, Form::Train] {
                macs.push(check(name, form, exporter, Batch::Fixed(batch), batch));
            }
            let (mix, train) = (macs[0] as f64, macs[1] as f64);
            assert!(
                (train - mix).abs() <= 0.05 * mix,
                "{name} {exporter} batch {batch}: train form compiles to {train} MACs, mix form \
                 to {mix}"
            );
        }
        check(name, Form::Train, exporter, Batch::Dynamic, 3);
    }
}

/// Builds, imports at `batch`, optimizes and checks one export; returns the compiled MACs.
fn check(name: &str, form: Form, exporter: Exporter, b: Batch, batch: usize) -> u64 {
    let what = format!("{name} {form} {exporter} batch {b}");
    let opts = zoo::Options {
        batch: b,
        form,
        exporter,
        height: SIDE,
        width: SIDE,
        ..Default::default()
    };
    let built = zoo::build(name, &opts).unwrap_or_else(|e| panic!("{what}: {e}"));
    let bytes = prost::Message::encode_to_vec(&built.model);
    let shapes = [("input", vec![batch, 3, SIDE, SIDE])];
    let (g, remarks) = optimize_and_compare(&bytes, &shapes, &what);
    assert_eq!(
        dyn_convs(&g),
        built.dynamic_convs,
        "{what}: dyn_conv count; remarks: {remarks:#?}"
    );
    assert_eq!(computed_weight_convs(&g), 0, "{what}");
    assert!(remarks.is_empty(), "{what}: {remarks:#?}");
    g.macs()
}

/// `Options::literal` (the `literal` baseline) leaves every dynamic conv as exported.
#[test]
fn literal_leaves_dynamic_convs_alone() {
    let opts = zoo::Options {
        batch: Batch::Fixed(2),
        height: SIDE,
        width: SIDE,
        ..Default::default()
    };
    let built = zoo::build("dy-resnet18", &opts).unwrap_or_else(|e| panic!("{e}"));
    let mut g = import_bytes(&prost::Message::encode_to_vec(&built.model), &[]);
    let literal = dync_opt::Options {
        literal: true,
        ..Default::default()
    };
    let pm = dync_opt::optimize(&mut g, &literal).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dyn_convs(&g), 0);
    assert_eq!(computed_weight_convs(&g), built.dynamic_convs);
    assert!(pm.timings.iter().all(|(p, _)| !p.starts_with("dynconv")));
}

macro_rules! networks {
    ($($test:ident: $name:literal;)*) => {
        $(
            #[test]
            fn $test() {
                check_network($name);
            }
        )*
    };
}

networks! {
    dy_mobile: "dy-mobile";
    dy_shuffle: "dy-shuffle";
    dy_resnet18: "dy-resnet18";
    dy_resnet50: "dy-resnet50";
    dy_mobilenetv3_small: "dy-mobilenetv3-small";
    dy_mobilenetv3_large: "dy-mobilenetv3-large";
    dy_fcn_resnet50: "dy-fcn-resnet50";
}
