//! ODConv's channel attention (the dynamic conv's input times a per-sample, per-input-channel
//! α[N, C, 1, 1]) stays an elementwise multiply, and `dynconv_scale` says so in a note naming the
//! dyn_conv and the multiply; a filter attention after the dyn_conv (per output channel) folds
//! into the coefficients, and the result still equals the original.

mod common;

use common::{assert_close, dyn_convs, inputs};
use dync_ir::{parse, Op};
use dync_opt::{PassManager, PrintAfter};

const ODCONV: &str = r#"graph(%0: f32[2,2,3,3] "x", %1: f32[2,3] "coeff", %2: f32[2,2,1,1] "a", %3: f32[2,2,1,1] "f") -> ("y" = %9) {
  %4 = unary %2 {kind=sigmoid} : f32[2,2,1,1] loc("/attention/Sigmoid")
  %5 = binary %0, %4 {kind=mul} : f32[2,2,3,3] loc("/Mul")
  %6 = const f32[3,2,2,1,1] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0] loc("bank")
  %7 = dyn_conv %5, %1, %6 {strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1, bias=false, bias_bank=false} : f32[2,2,3,3] loc("/Conv")
  %8 = unary %3 {kind=sigmoid} : f32[2,2,1,1] loc("/attention/Sigmoid_1")
  %9 = binary %7, %8 {kind=mul} : f32[2,2,3,3] loc("/Mul_1")
}"#;

#[test]
fn channel_attention_is_noted_filter_attention_folded() {
    let g0 = parse(ODCONV).unwrap_or_else(|e| panic!("{e}"));
    let mut g = g0.clone();
    let mut pm = PassManager::new(PrintAfter::None);
    let pass = dync_opt::lookup("dynconv_scale").unwrap_or_else(|| panic!("a pass"));
    pm.run(pass.as_ref(), &mut g)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(pm.cx.remarks.is_empty(), "{:?}", pm.cx.remarks);
    assert_eq!(pm.cx.notes.len(), 1, "{:?}", pm.cx.notes);
    let note = pm.cx.notes[0].to_string();
    assert!(
        note.contains("\"/Conv\"") && note.contains("\"/Mul\"") && note.contains("channel"),
        "{note}"
    );
    assert_eq!(dyn_convs(&g), 1);
    // The output multiply folded into the coefficients: the dyn_conv is the output.
    let (_, out) = g.outputs[0];
    assert!(matches!(g.node(out).op, Op::DynConv(_)));
    let x = inputs(&g0, 5);
    let want = dync_interp::run(&g0, &x).unwrap_or_else(|e| panic!("{e}"));
    let got = dync_interp::run(&g, &x).unwrap_or_else(|e| panic!("{e}"));
    assert_close(&got, &want, 1e-5, 1e-5, "odconv");
}
