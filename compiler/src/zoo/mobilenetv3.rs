//! MobileNetV3-Small/Large (torchvision `mobilenet_v3_small`/`_large`) and their DyNet versions.
//!
//! Dy-MobileNetV3 (the paper gives no architecture, only "about the baseline's cost"): the same
//! widths, with every conv of every inverted residual dynamic — expansion 1×1 (when present),
//! depthwise k×k, projection 1×1 — fed by one predictor per block on the block input;
//! squeeze-excitation, activations (ReLU / HardSwish), stem, last conv and classifier are
//! MobileNetV3's and static.

use super::builder::{Act, Bn, ConvSpec, Map, Net};
use super::{Output, ZooError};

/// One inverted-residual setting: kernel, expanded width, output width, squeeze-excitation,
/// HardSwish (else ReLU), stride.
type Setting = (usize, usize, usize, bool, bool, usize);

const LARGE: [Setting; 15] = [
    (3, 16, 16, false, false, 1),
    (3, 64, 24, false, false, 2),
    (3, 72, 24, false, false, 1),
    (5, 72, 40, true, false, 2),
    (5, 120, 40, true, false, 1),
    (5, 120, 40, true, false, 1),
    (3, 240, 80, false, true, 2),
    (3, 200, 80, false, true, 1),
    (3, 184, 80, false, true, 1),
    (3, 184, 80, false, true, 1),
    (3, 480, 112, true, true, 1),
    (3, 672, 112, true, true, 1),
    (5, 672, 160, true, true, 2),
    (5, 960, 160, true, true, 1),
    (5, 960, 160, true, true, 1),
];

const SMALL: [Setting; 11] = [
    (3, 16, 16, true, false, 2),
    (3, 72, 24, false, false, 2),
    (3, 88, 24, false, false, 1),
    (5, 96, 40, true, true, 2),
    (5, 240, 40, true, true, 1),
    (5, 240, 40, true, true, 1),
    (5, 120, 48, true, true, 1),
    (5, 144, 48, true, true, 1),
    (5, 288, 96, true, true, 2),
    (5, 576, 96, true, true, 1),
    (5, 576, 96, true, true, 1),
];

/// torchvision's `_make_divisible(v, 8)`: round to a multiple of 8, never below 90 % of `v`.
fn make_divisible(v: usize) -> usize {
    let d = 8;
    let r = ((v + d / 2) / d * d).max(d);
    if r * 10 < v * 9 {
        r + d
    } else {
        r
    }
}

fn block(net: &mut Net, x: &Map, s: Setting, dynamic: bool) -> Result<Map, ZooError> {
    let (k, exp, out, se, hs, stride) = s;
    let act = if hs { Act::HardSwish } else { Act::Relu };
    let residual = stride == 1 && x.c == out;
    let res_bn = if residual { Bn::Residual } else { Bn::Unit };
    let expand = exp != x.c;
    let dw = ConvSpec::new(exp, k).stride(stride).groups(exp);
    let mut y = x.clone();
    if dynamic {
        let mut outs = vec![exp, out];
        if expand {
            outs.insert(0, exp);
        }
        let mut eta = net.predictor(x, &outs, None)?;
        if expand {
            y = net.dyn_conv_bn("expand", &y, &mut eta, ConvSpec::new(exp, 1), act, Bn::Unit)?;
        }
        y = net.dyn_conv_bn("dw", &y, &mut eta, dw, act, Bn::Unit)?;
        if se {
            y = net.squeeze_excitation(&y, make_divisible(exp / 4))?;
        }
        y = net.dyn_conv_bn(
            "project",
            &y,
            &mut eta,
            ConvSpec::new(out, 1),
            Act::None,
            res_bn,
        )?;
        net.finish_coeffs(&eta)?;
    } else {
        if expand {
            y = net.conv_bn("expand", &y, ConvSpec::new(exp, 1), act, Bn::Unit)?;
        }
        y = net.conv_bn("dw", &y, dw, act, Bn::Unit)?;
        if se {
            y = net.squeeze_excitation(&y, make_divisible(exp / 4))?;
        }
        y = net.conv_bn("project", &y, ConvSpec::new(out, 1), Act::None, res_bn)?;
    }
    if residual {
        y = net.add(x, &y)?;
    }
    Ok(y)
}

fn network(
    net: &mut Net,
    settings: &[Setting],
    last: usize,
    dynamic: bool,
) -> Result<Output, ZooError> {
    let x = net.input();
    let spec = ConvSpec::new(16, 3).stride(2);
    let mut x = net.conv_bn("features.0", &x, spec, Act::HardSwish, Bn::Unit)?;
    for (i, &s) in settings.iter().enumerate() {
        x = net.scope(&format!("features.{}", i + 1), |net| {
            block(net, &x, s, dynamic)
        })?;
    }
    let head = format!("features.{}", settings.len() + 1);
    let x = net.conv_bn(
        &head,
        &x,
        ConvSpec::new(6 * x.c, 1),
        Act::HardSwish,
        Bn::Unit,
    )?;
    let v = net.gap(&x)?;
    let v = net.linear("classifier.0", &v, last, 3.0, (-0.1, 0.1))?;
    let v = net.act_vec(&v, Act::HardSwish)?;
    let v = net.linear("classifier.3", &v, 1000, 1.0, (-0.1, 0.1))?;
    Ok(Output::Logits(v))
}

pub(crate) fn large(net: &mut Net) -> Result<Output, ZooError> {
    network(net, &LARGE, 1280, false)
}

pub(crate) fn dy_large(net: &mut Net) -> Result<Output, ZooError> {
    network(net, &LARGE, 1280, true)
}

pub(crate) fn small(net: &mut Net) -> Result<Output, ZooError> {
    network(net, &SMALL, 1024, false)
}

pub(crate) fn dy_small(net: &mut Net) -> Result<Output, ZooError> {
    network(net, &SMALL, 1024, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn squeeze_widths_match_torchvision() {
        let sq: Vec<usize> = [16, 72, 96, 120, 144, 240, 288, 480, 576, 672, 960]
            .iter()
            .map(|e| super::make_divisible(e / 4))
            .collect();
        assert_eq!(sq, [8, 24, 24, 32, 40, 64, 72, 120, 144, 168, 240]);
    }
}
