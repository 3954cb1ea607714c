//! ShuffleNetV2 1.0 (torchvision `shufflenet_v2_x1_0`) and Dy-shuffle.
//!
//! Dy-shuffle: in every stride-1 unit the channels split 3:1 instead of 1:1; the left 3/4 pass
//! unchanged, the right 1/4 go through dynamic 1×1 → 3×3 depthwise → 1×1 (BatchNormalization
//! after each, ReLU after the 1×1s, as in ShuffleNetV2) with one predictor on the right-branch
//! input; concat and channel shuffle (2 groups) as in ShuffleNetV2. Choices the paper leaves
//! open: the downsampling units (no split) stay ShuffleNetV2's, static; stem, conv5 and the
//! classifier are static. (Making the downsampling units' right branch dynamic too gives a
//! dy/static MAC ratio of 0.66, at the edge of the paper's 0.603 ± 10 %; static gives 0.65.)

use super::builder::{Act, Bn, ConvSpec, Map, Net};
use super::{Output, ZooError};

/// Stage repeats and output widths of ShuffleNetV2 1.0.
const STAGES: [(usize, usize); 3] = [(4, 116), (8, 232), (4, 464)];

fn downsample_unit(net: &mut Net, x: &Map, c: usize) -> Result<Map, ZooError> {
    let half = c / 2;
    let dw = |ch: usize| ConvSpec::new(ch, 3).stride(2).groups(ch);
    let left = net.scope("branch1", |net| {
        let y = net.conv_bn("0", x, dw(x.c), Act::None, Bn::Unit)?;
        net.conv_bn("2", &y, ConvSpec::new(half, 1), Act::Relu, Bn::Unit)
    })?;
    let right = net.scope("branch2", |net| {
        let y = net.conv_bn("0", x, ConvSpec::new(half, 1), Act::Relu, Bn::Unit)?;
        let y = net.conv_bn("3", &y, dw(half), Act::None, Bn::Unit)?;
        net.conv_bn("5", &y, ConvSpec::new(half, 1), Act::Relu, Bn::Unit)
    })?;
    let y = net.concat(&[&left, &right])?;
    net.channel_shuffle(&y, 2)
}

fn static_branch(net: &mut Net, x: &Map) -> Result<Map, ZooError> {
    let c = x.c;
    net.scope("branch2", |net| {
        let y = net.conv_bn("0", x, ConvSpec::new(c, 1), Act::Relu, Bn::Unit)?;
        let y = net.conv_bn("3", &y, ConvSpec::new(c, 3).groups(c), Act::None, Bn::Unit)?;
        net.conv_bn("5", &y, ConvSpec::new(c, 1), Act::Relu, Bn::Unit)
    })
}

fn dynamic_branch(net: &mut Net, x: &Map) -> Result<Map, ZooError> {
    let c = x.c;
    net.scope("branch2", |net| {
        let mut eta = net.predictor(x, &[c, c, c], None)?;
        let y = net.dyn_conv_bn("0", x, &mut eta, ConvSpec::new(c, 1), Act::Relu, Bn::Unit)?;
        let dw = ConvSpec::new(c, 3).groups(c);
        let y = net.dyn_conv_bn("3", &y, &mut eta, dw, Act::None, Bn::Unit)?;
        let y = net.dyn_conv_bn("5", &y, &mut eta, ConvSpec::new(c, 1), Act::Relu, Bn::Unit)?;
        net.finish_coeffs(&eta)?;
        Ok(y)
    })
}

/// `dynamic`: Dy-shuffle's 3:1 split and dynamic right branch; else ShuffleNetV2's 1:1.
fn network(net: &mut Net, dynamic: bool) -> Result<Output, ZooError> {
    let x = net.input();
    let spec = ConvSpec::new(24, 3).stride(2);
    let x = net.conv_bn("conv1", &x, spec, Act::Relu, Bn::Unit)?;
    let mut x = net.max_pool(&x, 3, 2)?;
    for (s, (repeats, c)) in STAGES.into_iter().enumerate() {
        for i in 0..repeats {
            x = net.scope(&format!("stage{}.{i}", s + 2), |net| {
                if i == 0 {
                    return downsample_unit(net, &x, c);
                }
                let right = if dynamic { x.c / 4 } else { x.c / 2 };
                let parts = net.split(&x, &[x.c - right, right])?;
                let branch = if dynamic {
                    dynamic_branch(net, &parts[1])?
                } else {
                    static_branch(net, &parts[1])?
                };
                let y = net.concat(&[&parts[0], &branch])?;
                net.channel_shuffle(&y, 2)
            })?;
        }
    }
    let x = net.conv_bn("conv5", &x, ConvSpec::new(1024, 1), Act::Relu, Bn::Unit)?;
    let v = net.mean_hw(&x)?;
    Ok(Output::Logits(net.linear(
        "fc",
        &v,
        1000,
        1.0,
        (-0.1, 0.1),
    )?))
}

pub(crate) fn shufflenetv2(net: &mut Net) -> Result<Output, ZooError> {
    network(net, false)
}

pub(crate) fn dy_shuffle(net: &mut Net) -> Result<Output, ZooError> {
    network(net, true)
}
