//! Zoo tests on the decoded protobuf: every network exports in every form and style, with the
//! expected number of dynamic convs counted from the graph itself, deterministic bytes, and the
//! exporter-style and option rules of the module docs.

use super::*;
use dync_onnx::proto::{tensor_shape_proto::dimension::Value, type_proto, GraphProto, NodeProto};
use std::collections::HashSet;

/// Dynamic convs per network, from the architectures: blocks × dynamic convs per block.
fn expected_dynamic_convs(name: &str) -> usize {
    match name {
        "dy-mobile" => 17 * 3,
        "dy-shuffle" => (3 + 7 + 3) * 3,
        "dy-resnet18" => 8 * 2,
        "dy-resnet50" | "dy-fcn-resnet50" => 16 * 3,
        // The first block has no expansion conv.
        "dy-mobilenetv3-small" => 2 + 10 * 3,
        "dy-mobilenetv3-large" => 2 + 14 * 3,
        _ => 0,
    }
}

fn decode(bytes: &[u8]) -> GraphProto {
    match ModelProto::decode(bytes) {
        Ok(m) => m.graph.unwrap_or_default(),
        Err(e) => panic!("zoo model does not decode: {e}"),
    }
}

fn initializers(g: &GraphProto) -> HashSet<&str> {
    g.initializer.iter().map(|i| i.name.as_str()).collect()
}

fn int_attr(n: &NodeProto, name: &str) -> Option<i64> {
    n.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

/// Convs whose weight is computed in the graph (not an initializer).
fn computed_weight_convs(g: &GraphProto) -> Vec<&NodeProto> {
    let inits = initializers(g);
    g.node
        .iter()
        .filter(|n| {
            n.op_type == "Conv" && n.input.get(1).is_some_and(|w| !inits.contains(w.as_str()))
        })
        .collect()
}

/// Train-form dynamic convs: Convs with an initializer weight whose output reaches a
/// ReduceSum through Reshape → Mul.
fn train_dynamic_convs(g: &GraphProto) -> usize {
    let producer = |v: &str| g.node.iter().find(|n| n.output.iter().any(|o| o == v));
    g.node
        .iter()
        .filter(|n| n.op_type == "ReduceSum")
        .filter(|n| {
            let Some(mul) = producer(&n.input[0]).filter(|m| m.op_type == "Mul") else {
                return false;
            };
            mul.input.iter().any(|i| {
                producer(i)
                    .filter(|r| r.op_type == "Reshape")
                    .and_then(|r| producer(&r.input[0]))
                    .is_some_and(|c| c.op_type == "Conv")
            })
        })
        .count()
}

fn options(form: Form, exporter: Exporter) -> Options {
    // A small image: weights (what dominates export time) do not depend on it.
    Options {
        form,
        exporter,
        height: 32,
        width: 48,
        ..Options::default()
    }
}

fn export_ok(name: &str, o: &Options) -> Vec<u8> {
    match export(name, o) {
        Ok(b) => b,
        Err(e) => panic!("{name} {o:?}: {e}"),
    }
}

/// The (form, style) pairs tested per network: all four for dynamic networks, both styles for
/// static ones (whose form changes nothing); the ResNet50-based networks (25–48 M parameters,
/// slow to draw in a debug build) get the default and, when dynamic, its opposite.
fn variants(net: &Network) -> Vec<(Form, Exporter)> {
    let heavy = net.name.contains("resnet50");
    let mut v = vec![(Form::Mix, Exporter::Legacy)];
    match (net.dynamic, heavy) {
        (true, false) => v.extend([
            (Form::Mix, Exporter::Dynamo),
            (Form::Train, Exporter::Legacy),
            (Form::Train, Exporter::Dynamo),
        ]),
        (true, true) => v.push((Form::Train, Exporter::Dynamo)),
        (false, false) => v.push((Form::Mix, Exporter::Dynamo)),
        (false, true) => {}
    }
    v
}

/// Networks per test below (split so that the test harness runs them in parallel).
const FAMILIES: [&[&str]; 4] = [
    &["dy-mobile", "mobilenetv2", "dy-shuffle", "shufflenetv2"],
    &[
        "dy-resnet18",
        "resnet18",
        "dy-mobilenetv3-small",
        "mobilenetv3-small",
    ],
    &[
        "dy-mobilenetv3-large",
        "mobilenetv3-large",
        "dy-resnet50",
        "resnet50",
    ],
    &["dy-fcn-resnet50", "fcn-resnet50"],
];

#[test]
fn families_cover_the_registry() {
    let listed: HashSet<&str> = FAMILIES.iter().flat_map(|f| f.iter().copied()).collect();
    let all: HashSet<&str> = networks().iter().map(|n| n.name).collect();
    assert_eq!(listed, all);
}

#[test]
fn mobilenetv2_and_shufflenet_export() {
    check_family(FAMILIES[0]);
}

#[test]
fn resnet18_and_mobilenetv3_small_export() {
    check_family(FAMILIES[1]);
}

#[test]
fn mobilenetv3_large_and_resnet50_export() {
    check_family(FAMILIES[2]);
}

#[test]
fn fcn_export() {
    check_family(FAMILIES[3]);
}

/// Every listed network exports in its variants, round-trips through prost, has the opset of
/// its style, one output of the task's shape, and the expected number of dynamic convs counted
/// in the graph.
fn check_family(names: &[&str]) {
    for net in names
        .iter()
        .map(|n| find(n).unwrap_or_else(|e| panic!("{e}")))
    {
        for (form, exporter) in variants(net) {
            let o = options(form, exporter);
            let built = match build(net.name, &o) {
                Ok(b) => b,
                Err(e) => panic!("{} {o:?}: {e}", net.name),
            };
            let m = built.model;
            let bytes = m.encode_to_vec();
            assert!(
                ModelProto::decode(bytes.as_slice()).is_ok_and(|d| d == m),
                "{}",
                net.name
            );
            let opset = m.opset_import.first().map(|o| o.version);
            let want = if exporter == Exporter::Legacy { 17 } else { 18 };
            assert_eq!(opset, Some(want), "{}", net.name);
            let g = m.graph.unwrap_or_default();
            let expected = expected_dynamic_convs(net.name);
            assert_eq!(net.dynamic, expected > 0);
            assert_eq!(built.dynamic_convs, expected, "{} {o:?}", net.name);
            let counted = match form {
                Form::Mix => computed_weight_convs(&g).len(),
                Form::Train => train_dynamic_convs(&g),
            };
            assert_eq!(counted, expected, "{} {o:?}", net.name);
            if form == Form::Train {
                assert!(computed_weight_convs(&g).is_empty(), "{}", net.name);
            }
            assert_eq!(g.output.len(), 1);
            assert_eq!(g.output[0].name, "output");
            let dims: Vec<_> = match g.output[0].r#type.as_ref().and_then(|t| t.value.clone()) {
                Some(type_proto::Value::TensorType(t)) => t
                    .shape
                    .map(|s| s.dim.into_iter().filter_map(|d| d.value).collect())
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            let want: &[i64] = match net.task {
                Task::Classification => &[1, 1000],
                Task::Segmentation => &[1, 19, 32, 48],
            };
            let want: Vec<_> = want.iter().map(|&d| Value::DimValue(d)).collect();
            assert_eq!(dims, want, "{}", net.name);
            // Dynamo style writes shapes as initializers, never Constant nodes.
            if exporter == Exporter::Dynamo {
                assert!(
                    g.node.iter().all(|n| n.op_type != "Constant"),
                    "{}",
                    net.name
                );
            }
        }
    }
}

#[test]
fn same_options_give_identical_bytes_and_seeds_differ() {
    for name in ["dy-shuffle", "shufflenetv2"] {
        for exporter in [Exporter::Legacy, Exporter::Dynamo] {
            let o = options(Form::Mix, exporter);
            assert_eq!(export_ok(name, &o), export_ok(name, &o), "{name}");
            let other = Options {
                seed: o.seed + 1,
                ..o.clone()
            };
            assert_ne!(export_ok(name, &o), export_ok(name, &other), "{name}");
        }
    }
}

#[test]
fn weights_are_the_same_in_every_form_and_style() {
    // The bank of the first dynamic conv: [O, g, C, 1, 1] (mix einsum/mulsum), [O, g, C]
    // (matmul) and [O·g, C, 1, 1] (train) hold the same bytes.
    let first_bank = |o: &Options| {
        let g = decode(&export_ok("dy-shuffle", o));
        g.initializer
            .iter()
            .find(|i| i.name == "stage2.1.branch2.0.conv.weight")
            .map(|i| i.raw_data.clone())
            .unwrap_or_default()
    };
    let base = first_bank(&options(Form::Mix, Exporter::Legacy));
    assert_eq!(base.len(), 29 * 6 * 29 * 4);
    for (form, exporter, mixing) in [
        (Form::Train, Exporter::Legacy, None),
        (Form::Mix, Exporter::Dynamo, Some(Mixing::Einsum)),
        (Form::Mix, Exporter::Dynamo, Some(Mixing::MatMul)),
    ] {
        let o = Options {
            mixing,
            ..options(form, exporter)
        };
        assert_eq!(first_bank(&o), base, "{form} {exporter} {mixing:?}");
    }
}

#[test]
fn mixing_ops_appear_as_requested() {
    for (mixing, op) in [
        (Mixing::Einsum, "Einsum"),
        (Mixing::MatMul, "MatMul"),
        (Mixing::MulSum, "ReduceSum"),
    ] {
        for exporter in [Exporter::Legacy, Exporter::Dynamo] {
            let o = Options {
                mixing: Some(mixing),
                ..options(Form::Mix, exporter)
            };
            let g = decode(&export_ok("dy-shuffle", &o));
            let n = g.node.iter().filter(|n| n.op_type == op).count();
            assert_eq!(n, 39, "{mixing} {exporter}");
        }
    }
    // Across the registry's defaults, every mixing op is used by both styles.
    for exporter in [Exporter::Legacy, Exporter::Dynamo] {
        let used: HashSet<String> = networks()
            .iter()
            .filter(|n| n.dynamic)
            .map(|n| n.default_mixing(exporter).to_string())
            .collect();
        assert_eq!(used.len(), 3, "{exporter}");
    }
}

#[test]
fn batch_as_groups_conv_groups() {
    // dy-mobile's first 3×3: 18 channels in groups of 6 → 3 groups per image.
    for (exporter, batch) in [
        (Exporter::Legacy, 1),
        (Exporter::Legacy, 3),
        (Exporter::Dynamo, 1),
        (Exporter::Dynamo, 3),
    ] {
        let o = Options {
            batch: Batch::Fixed(batch),
            ..options(Form::Mix, exporter)
        };
        let g = decode(&export_ok("dy-mobile", &o));
        let convs = computed_weight_convs(&g);
        let group = int_attr(convs[1], "group");
        assert_eq!(group, Some(3 * batch as i64), "{exporter} batch {batch}");
        // Dynamo at batch 1 feeds the block input straight into the conv.
        let direct =
            g.node
                .iter()
                .all(|n| n.output.first() != Some(&convs[1].input[0]))
                || !g.node.iter().any(|n| {
                    n.op_type == "Reshape" && n.output.first() == Some(&convs[1].input[0])
                });
        assert_eq!(
            direct,
            exporter == Exporter::Dynamo && batch == 1,
            "{exporter} batch {batch}"
        );
    }
}

#[test]
fn dynamic_batch_rules() {
    let dynamic = Options {
        batch: Batch::Dynamic,
        ..Options::default()
    };
    assert!(matches!(
        build("dy-resnet18", &dynamic),
        Err(ZooError::DynamicBatchMix(n)) if n == "dy-resnet18"
    ));
    for exporter in [Exporter::Legacy, Exporter::Dynamo] {
        for name in ["dy-shuffle", "shufflenetv2", "fcn-resnet50"] {
            let o = Options {
                batch: Batch::Dynamic,
                form: Form::Train,
                exporter,
                height: 32,
                width: 32,
                ..Options::default()
            };
            let g = decode(&export_ok(name, &o));
            let Some(type_proto::Value::TensorType(t)) =
                g.input[0].r#type.as_ref().and_then(|t| t.value.clone())
            else {
                panic!("input without tensor type")
            };
            let first = t
                .shape
                .and_then(|s| s.dim.first().cloned())
                .and_then(|d| d.value);
            assert_eq!(first, Some(Value::DimParam("batch".into())), "{name}");
            let has = |op: &str| g.node.iter().any(|n| n.op_type == op);
            if name == "fcn-resnet50" {
                // Resize's sizes come from the runtime shape in both styles.
                assert!(has("Shape") && has("Resize"), "{name} {exporter}");
            } else {
                // Legacy builds Reshape targets from the runtime shape; dynamo writes -1.
                for op in ["Shape", "Gather", "Unsqueeze"] {
                    assert_eq!(
                        has(op),
                        exporter == Exporter::Legacy,
                        "{name} {exporter} {op}"
                    );
                }
            }
        }
    }
}

#[test]
fn legacy_deduplicates_parameters_with_identity() {
    let legacy = decode(&export_ok(
        "dy-resnet18",
        &options(Form::Mix, Exporter::Legacy),
    ));
    let inits = initializers(&legacy);
    let identities: Vec<_> = legacy
        .node
        .iter()
        .take_while(|n| n.op_type == "Identity")
        .collect();
    assert!(!identities.is_empty());
    assert!(identities
        .iter()
        .all(|n| inits.contains(n.input[0].as_str())));
    let dynamo = decode(&export_ok(
        "dy-resnet18",
        &options(Form::Mix, Exporter::Dynamo),
    ));
    assert!(dynamo.node.iter().all(|n| n.op_type != "Identity"));
    // Dynamo shares the duplicated parameters by name: the same parameters are stored
    // (its other initializers are shape constants `val_*`).
    let params = dynamo
        .initializer
        .iter()
        .filter(|i| !i.name.starts_with("val"))
        .count();
    assert_eq!(params, legacy.initializer.len());
}

#[test]
fn rejects_bad_options() {
    assert!(matches!(
        find("dy-nope"),
        Err(ZooError::UnknownNetwork { .. })
    ));
    for (h, w) in [(0, 224), (224, MAX_SIDE + 1)] {
        let o = Options {
            height: h,
            width: w,
            ..Options::default()
        };
        assert!(matches!(
            build("resnet18", &o),
            Err(ZooError::InvalidOption(_))
        ));
    }
    let o = Options {
        batch: Batch::Fixed(0),
        ..Options::default()
    };
    assert!(matches!(
        build("resnet18", &o),
        Err(ZooError::InvalidOption(_))
    ));
    assert_eq!(parse_size("1024x2048").ok(), Some((1024, 2048)));
    for bad in ["", "224", "0x4", "ax4", "4x4x4", "99999x1"] {
        assert!(parse_size(bad).is_err(), "{bad}");
    }
    assert_eq!("dynamic".parse::<Batch>().ok(), Some(Batch::Dynamic));
    assert_eq!("8".parse::<Batch>().ok(), Some(Batch::Fixed(8)));
    assert!("0".parse::<Batch>().is_err() && "-1".parse::<Batch>().is_err());
    assert_eq!("train".parse::<Form>().ok(), Some(Form::Train));
    assert!("Train".parse::<Form>().is_err());
    assert_eq!("dynamo".parse::<Exporter>().ok(), Some(Exporter::Dynamo));
    assert_eq!("mulsum".parse::<Mixing>().ok(), Some(Mixing::MulSum));
}

#[test]
fn registry_pairs_are_consistent() {
    for n in networks() {
        let twin = match find(n.twin) {
            Ok(t) => t,
            Err(e) => panic!("{}: {e}", n.name),
        };
        assert_eq!(twin.twin, n.name);
        assert_ne!(twin.dynamic, n.dynamic);
        assert_eq!(twin.paper_ratio, n.paper_ratio);
        assert_eq!(twin.task, n.task);
    }
}
