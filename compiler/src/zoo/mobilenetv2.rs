//! MobileNetV2 (torchvision `mobilenet_v2`, width 1.0) and Dy-mobile.
//!
//! Dy-mobile replaces every inverted residual by a DyNet block: no expansion; dynamic 1×1
//! (C_in → C) → 3×3 grouped with 6 channels per group (C → C, stride here) → 1×1 (C → C), each
//! followed by BatchNormalization, ReLU6 after the first two (the last is linear, as in
//! MobileNetV2); one predictor on the block input feeds all three; a residual add when the
//! stride is 1 and the widths match. Choices the paper leaves open: widths are MobileNetV2's
//! rounded to the nearest multiple of 6 (ties up) so that groups of 6 divide them
//! (16→18, 32→30, 64→66, 160→162, 320→318; 24 and 96 stay); stem, last 1×1 conv (→ 1280) and
//! classifier are MobileNetV2's and static.

use super::builder::{Act, Bn, ConvSpec, Map, Net};
use super::{Output, ZooError};

/// MobileNetV2's inverted-residual settings: expansion t, width c, repeats n, first stride s.
const SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// Channels per group of Dy-mobile's 3×3 conv.
const GROUP_WIDTH: usize = 6;

fn round6(c: usize) -> usize {
    (c + GROUP_WIDTH / 2) / GROUP_WIDTH * GROUP_WIDTH
}

/// Stem, blocks (`block(net, x, t, c, stride)` inside scope `features.i`), head, classifier.
fn network(
    net: &mut Net,
    block: fn(&mut Net, &Map, usize, usize, usize) -> Result<Map, ZooError>,
) -> Result<Output, ZooError> {
    let x = net.input();
    let spec = ConvSpec::new(32, 3).stride(2);
    let mut x = net.conv_bn("features.0", &x, spec, Act::Relu6, Bn::Unit)?;
    let mut index = 1;
    for (t, c, n, s) in SETTINGS {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            x = net.scope(&format!("features.{index}"), |net| {
                block(net, &x, t, c, stride)
            })?;
            index += 1;
        }
    }
    let head = format!("features.{index}");
    let x = net.conv_bn(&head, &x, ConvSpec::new(1280, 1), Act::Relu6, Bn::Unit)?;
    let v = net.gap(&x)?;
    let v = net.linear("classifier.1", &v, 1000, 1.0, (-0.1, 0.1))?;
    Ok(Output::Logits(v))
}

fn inverted_residual(
    net: &mut Net,
    x: &Map,
    t: usize,
    c: usize,
    stride: usize,
) -> Result<Map, ZooError> {
    let residual = stride == 1 && x.c == c;
    let hidden = x.c * t;
    let mut y = x.clone();
    if t != 1 {
        y = net.conv_bn("expand", &y, ConvSpec::new(hidden, 1), Act::Relu6, Bn::Unit)?;
    }
    let dw = ConvSpec::new(hidden, 3).stride(stride).groups(hidden);
    y = net.conv_bn("dw", &y, dw, Act::Relu6, Bn::Unit)?;
    let bn = if residual { Bn::Residual } else { Bn::Unit };
    y = net.conv_bn("project", &y, ConvSpec::new(c, 1), Act::None, bn)?;
    if residual {
        y = net.add(x, &y)?;
    }
    Ok(y)
}

fn dy_block(net: &mut Net, x: &Map, _t: usize, c: usize, stride: usize) -> Result<Map, ZooError> {
    let c = round6(c);
    let residual = stride == 1 && x.c == c;
    let mut eta = net.predictor(x, &[c, c, c], None)?;
    let y = net.dyn_conv_bn(
        "conv1",
        x,
        &mut eta,
        ConvSpec::new(c, 1),
        Act::Relu6,
        Bn::Unit,
    )?;
    let spec = ConvSpec::new(c, 3).stride(stride).groups(c / GROUP_WIDTH);
    let y = net.dyn_conv_bn("conv2", &y, &mut eta, spec, Act::Relu6, Bn::Unit)?;
    let bn = if residual { Bn::Residual } else { Bn::Unit };
    let mut y = net.dyn_conv_bn("conv3", &y, &mut eta, ConvSpec::new(c, 1), Act::None, bn)?;
    net.finish_coeffs(&eta)?;
    if residual {
        y = net.add(x, &y)?;
    }
    Ok(y)
}

pub(crate) fn mobilenetv2(net: &mut Net) -> Result<Output, ZooError> {
    network(net, inverted_residual)
}

pub(crate) fn dy_mobile(net: &mut Net) -> Result<Output, ZooError> {
    network(net, dy_block)
}

#[cfg(test)]
mod tests {
    #[test]
    fn widths_round_to_groups_of_six() {
        let r: Vec<usize> = super::SETTINGS.iter().map(|s| super::round6(s.1)).collect();
        assert_eq!(r, [18, 24, 30, 66, 96, 162, 318]);
    }
}
