//! ResNet18/50 (torchvision `resnet18`/`resnet50`, v1.5: stride on the 3×3) and Dy-ResNet18/50;
//! [`backbone`] also serves the dilated FCN.
//!
//! Dy-ResNets: every conv of every residual block is dynamic with its output channels halved
//! (so a block's width, including its output and the identity path, is half the static one),
//! BatchNormalization after each; one predictor per block on the block input, GAP → Gemm
//! (C → C/4) → Relu → Gemm → Sigmoid, feeds all of the block's convs. Choices the paper leaves
//! open: the stem (7×7 conv, 64 channels, max pool) stays full-width and static, so the first
//! block of layer1 gets a static 1×1 projection shortcut (64 → 32 / 128); projection shortcuts
//! (static 1×1 conv + BN) wherever stride or width change, as in torchvision; the classifier is
//! static. Halving only some convs keeps far more MACs than the paper's ratios (0.318, 0.276);
//! halving all of them with a full stem gives 0.33 and 0.29.

use super::builder::{Act, Bn, ConvSpec, Map, Net};
use super::{Output, ZooError};

/// Which ResNet to build.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResNet {
    pub bottleneck: bool,
    pub layers: [usize; 4],
    pub dynamic: bool,
    /// Replace the strides of layer3 and layer4 by dilation (output stride 8), as torchvision's
    /// `replace_stride_with_dilation=[False, True, True]`.
    pub dilated: bool,
}

const BASE_WIDTHS: [usize; 4] = [64, 128, 256, 512];

/// Predictor hidden width of a Dy-ResNet block reading `c` channels.
fn hidden(c: usize) -> usize {
    (c / 4).max(1)
}

/// One residual block (scope set by the caller); `width` is the (possibly halved) inner width.
fn block(
    net: &mut Net,
    r: ResNet,
    x: &Map,
    width: usize,
    stride: usize,
    dilation: usize,
) -> Result<Map, ZooError> {
    let out = if r.bottleneck { width * 4 } else { width };
    let mut specs = Vec::new();
    if r.bottleneck {
        specs.push((ConvSpec::new(width, 1), Act::Relu, Bn::Unit));
        specs.push((
            ConvSpec::new(width, 3).stride(stride).dilation(dilation),
            Act::Relu,
            Bn::Unit,
        ));
        specs.push((ConvSpec::new(out, 1), Act::None, Bn::Residual));
    } else {
        specs.push((
            ConvSpec::new(width, 3).stride(stride).dilation(dilation),
            Act::Relu,
            Bn::Unit,
        ));
        specs.push((
            ConvSpec::new(out, 3).dilation(dilation),
            Act::None,
            Bn::Residual,
        ));
    }
    let mut y = x.clone();
    if r.dynamic {
        let outs: Vec<usize> = specs.iter().map(|s| s.0.cout).collect();
        let mut eta = net.predictor(x, &outs, Some(hidden(x.c)))?;
        for (i, (spec, act, bn)) in specs.into_iter().enumerate() {
            y = net.dyn_conv_bn(&format!("conv{}", i + 1), &y, &mut eta, spec, act, bn)?;
        }
        net.finish_coeffs(&eta)?;
    } else {
        for (i, (spec, act, bn)) in specs.into_iter().enumerate() {
            y = net.conv_bn(&format!("conv{}", i + 1), &y, spec, act, bn)?;
        }
    }
    let shortcut = if stride != 1 || x.c != out {
        let spec = ConvSpec::new(out, 1).stride(stride);
        net.conv_bn("downsample", x, spec, Act::None, Bn::Unit)?
    } else {
        x.clone()
    };
    let y = net.add(&y, &shortcut)?;
    net.act(&y, Act::Relu)
}

/// Stem and the four layers; returns layer4's output.
pub(crate) fn backbone(net: &mut Net, r: ResNet) -> Result<Map, ZooError> {
    let x = net.input();
    let spec = ConvSpec::new(64, 7).stride(2);
    let x = net.conv_bn("conv1", &x, spec, Act::Relu, Bn::Unit)?;
    let mut x = net.max_pool(&x, 3, 2)?;
    let mut dilation = 1;
    for (l, (&n, &base)) in r.layers.iter().zip(&BASE_WIDTHS).enumerate() {
        let width = if r.dynamic { base / 2 } else { base };
        let mut stride = if l == 0 { 1 } else { 2 };
        let previous = dilation;
        if r.dilated && l >= 2 {
            dilation *= stride;
            stride = 1;
        }
        for i in 0..n {
            let (s, d) = if i == 0 {
                (stride, previous)
            } else {
                (1, dilation)
            };
            x = net.scope(&format!("layer{}.{i}", l + 1), |net| {
                block(net, r, &x, width, s, d)
            })?;
        }
    }
    Ok(x)
}

fn classifier(net: &mut Net, r: ResNet) -> Result<Output, ZooError> {
    let x = backbone(net, r)?;
    let v = net.gap(&x)?;
    Ok(Output::Logits(net.linear(
        "fc",
        &v,
        1000,
        1.0,
        (-0.1, 0.1),
    )?))
}

pub(crate) const RESNET18: ResNet = ResNet {
    bottleneck: false,
    layers: [2, 2, 2, 2],
    dynamic: false,
    dilated: false,
};

pub(crate) const RESNET50: ResNet = ResNet {
    bottleneck: true,
    layers: [3, 4, 6, 3],
    dynamic: false,
    dilated: false,
};

pub(crate) fn resnet18(net: &mut Net) -> Result<Output, ZooError> {
    classifier(net, RESNET18)
}

pub(crate) fn dy_resnet18(net: &mut Net) -> Result<Output, ZooError> {
    classifier(
        net,
        ResNet {
            dynamic: true,
            ..RESNET18
        },
    )
}

pub(crate) fn resnet50(net: &mut Net) -> Result<Output, ZooError> {
    classifier(net, RESNET50)
}

pub(crate) fn dy_resnet50(net: &mut Net) -> Result<Output, ZooError> {
    classifier(
        net,
        ResNet {
            dynamic: true,
            ..RESNET50
        },
    )
}
