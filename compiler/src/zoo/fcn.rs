//! Dilated FCN on ResNet50 (torchvision `fcn_resnet50` without the auxiliary head) and on
//! Dy-ResNet50, for 19 Cityscapes classes.
//!
//! Backbone: [`resnet::backbone`] with layer3/layer4 strides replaced by dilations 2 and 4
//! (output stride 8; a stage's first block keeps the previous dilation, as torchvision does).
//! Head: 3×3 conv → 512 + BN + Relu (Dropout vanishes in eval exports), 1×1 conv → 19 with bias,
//! then bilinear upsampling (`align_corners=False`) back to the input size with Resize.
//! Choice the paper leaves open: Dy-FCN's head is the same static head, reading the
//! half-width backbone's 1024 channels (3×3 1024 → 512), giving a MAC ratio of 0.32 against the
//! paper's 0.308 at any input size.

use super::builder::{Act, Bn, ConvSpec, Net};
use super::resnet::{self, ResNet, RESNET50};
use super::{Output, ZooError};

/// Cityscapes' evaluated classes.
const CLASSES: usize = 19;

fn network(net: &mut Net, dynamic: bool) -> Result<Output, ZooError> {
    let input = net.input();
    let r = ResNet {
        dynamic,
        dilated: true,
        ..RESNET50
    };
    let x = net.scope("backbone", |net| resnet::backbone(net, r))?;
    let y = net.scope("classifier", |net| {
        let y = net.conv_bn("0", &x, ConvSpec::new(512, 3), Act::Relu, Bn::Unit)?;
        net.conv_bias("4", &y, ConvSpec::new(CLASSES, 1), 1.0, (-0.1, 0.1))
    })?;
    Ok(Output::Segmentation(
        net.resize_bilinear(&y, input.h, input.w)?,
    ))
}

pub(crate) fn fcn_resnet50(net: &mut Net) -> Result<Output, ZooError> {
    network(net, false)
}

pub(crate) fn dy_fcn_resnet50(net: &mut Net) -> Result<Output, ZooError> {
    network(net, true)
}
