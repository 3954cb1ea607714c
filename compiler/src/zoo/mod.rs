//! The DyNet model zoo: the paper's dynamic-convolution networks and their static twins, built
//! as ONNX by dync itself (no Python), the way PyTorch's exporters write them.
//!
//! [`export`] returns the ONNX bytes of a network for [`Options`] (batch, export form,
//! exporter style, seed, input size); [`networks`] is the registry that `dync zoo list` prints.
//! Each network family lives in its own file; [`builder`] holds the layer-level emitter and
//! documents every choice the paper leaves open.
//!
//! Contract: the same name and options give byte-identical files; the same seed gives the same
//! weights in every form and exporter style, so outputs agree across them (to rounding).
//! Rejected with a [`ZooError`]: unknown names, a batch outside 1..=[`MAX_BATCH`], a side outside
//! 1..=[`MAX_SIDE`], and `--batch dynamic` for the `mix` form of a dynamic network (ONNX's
//! `Conv.group` is static, and the mix form's group is batch × groups).

mod builder;
mod fcn;
mod mobilenetv2;
mod mobilenetv3;
mod resnet;
mod shufflenet;

use builder::{Map, Net, Vector};
use dync_onnx::proto::ModelProto;
use dync_onnx::write::WriteError;
use prost::Message;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Kernels per output channel in every dynamic conv (the paper's g).
pub const G: usize = 6;
/// The seed used when none is given.
pub const DEFAULT_SEED: u64 = 2020;
/// Largest accepted fixed batch.
pub const MAX_BATCH: usize = 1024;
/// Largest accepted image side.
pub const MAX_SIDE: usize = 8192;

/// Why a zoo export failed.
#[derive(Debug, Error)]
pub enum ZooError {
    #[error("unknown network `{name}`; known: {known}")]
    UnknownNetwork { name: String, known: String },
    #[error(
        "`--batch dynamic` is not possible for the mix form of `{0}`: its batch-as-groups Conv \
         has group = batch × groups, a static ONNX attribute; use `--form train` or a fixed batch"
    )]
    DynamicBatchMix(String),
    #[error("{0}")]
    InvalidOption(String),
    #[error("writing ONNX: {0}")]
    Write(#[from] WriteError),
    #[error("internal error building the network: {0}")]
    Internal(String),
}

/// The batch dimension of the exported graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    Fixed(usize),
    /// A symbolic `batch` dim (train form, or static networks).
    Dynamic,
}

/// How dynamic convs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Inference: mix the kernel bank per image, then one batch-as-groups Conv (DyNet Eq. 1).
    Mix,
    /// Training: Conv with all O·g kernels, weight the outputs by η and sum (DyNet Eq. 2).
    Train,
}

/// Which PyTorch exporter's style to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exporter {
    /// `torch.onnx.export(..., dynamo=False)`, opset 17.
    Legacy,
    /// `torch.onnx.export(..., dynamo=True)`, opset 18.
    Dynamo,
}

/// How the mix form combines η `[B, O, g]` with the bank `[O, g, C/groups, k, k]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mixing {
    /// `Einsum("bog,ogcij->bocij")`.
    Einsum,
    /// `MatMul(η [B, O, 1, g], bank [O, g, C/groups·k·k])`.
    MatMul,
    /// `ReduceSum(Mul(η [B, O, g, 1, 1, 1], bank), axis 2)`.
    MulSum,
}

/// Export options; `Default` gives the CLI's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub batch: Batch,
    pub form: Form,
    pub exporter: Exporter,
    pub seed: u64,
    pub height: usize,
    pub width: usize,
    /// The mix form's mixing op; `None` takes the network's default for the exporter style.
    pub mixing: Option<Mixing>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            batch: Batch::Fixed(1),
            form: Form::Mix,
            exporter: Exporter::Legacy,
            seed: DEFAULT_SEED,
            height: 224,
            width: 224,
            mixing: None,
        }
    }
}

/// What a network computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// `[B, 1000]` ImageNet logits.
    Classification,
    /// `[B, 19, H, W]` Cityscapes logits at input resolution.
    Segmentation,
}

/// The graph output a network builder returns.
pub(crate) enum Output {
    Logits(Vector),
    Segmentation(Map),
}

type BuildFn = fn(&mut Net) -> Result<Output, ZooError>;

/// One registry row.
pub struct Network {
    pub name: &'static str,
    /// The static network this dynamic one is compared with, or the dynamic one of a static net.
    pub twin: &'static str,
    pub dynamic: bool,
    pub task: Task,
    /// The paper's multiply-accumulates, in millions (`None` where the paper gives none).
    pub paper_mmacs: Option<f64>,
    /// The paper's dy/static MAC ratio of the pair.
    pub paper_ratio: Option<f64>,
    /// The mix form's default mixing op for the legacy and the dynamo style; spread over the zoo
    /// so that every mixing form appears in both styles.
    pub mixing: [Mixing; 2],
    pub summary: &'static str,
    build: BuildFn,
}

impl Network {
    /// The mixing op used for `exporter` when the options give none.
    pub fn default_mixing(&self, exporter: Exporter) -> Mixing {
        match exporter {
            Exporter::Legacy => self.mixing[0],
            Exporter::Dynamo => self.mixing[1],
        }
    }
}

use Mixing::{Einsum, MatMul, MulSum};

static NETWORKS: &[Network] = &[
    Network {
        name: "dy-mobile",
        twin: "mobilenetv2",
        dynamic: true,
        task: Task::Classification,
        paper_mmacs: Some(129.0),
        paper_ratio: Some(129.0 / 298.0),
        mixing: [Einsum, MatMul],
        summary: "MobileNetV2 with DyNet blocks: no expansion, dynamic 1x1 / 3x3 grouped (6 ch/group) / 1x1",
        build: mobilenetv2::dy_mobile,
    },
    Network {
        name: "mobilenetv2",
        twin: "dy-mobile",
        dynamic: false,
        task: Task::Classification,
        paper_mmacs: Some(298.0),
        paper_ratio: Some(129.0 / 298.0),
        mixing: [Einsum, MatMul],
        summary: "torchvision mobilenet_v2 (width 1.0)",
        build: mobilenetv2::mobilenetv2,
    },
    Network {
        name: "dy-shuffle",
        twin: "shufflenetv2",
        dynamic: true,
        task: Task::Classification,
        paper_mmacs: Some(88.0),
        paper_ratio: Some(88.0 / 146.0),
        mixing: [MulSum, Einsum],
        summary: "ShuffleNetV2 1.0 with 3:1 channel split, dynamic right branch",
        build: shufflenet::dy_shuffle,
    },
    Network {
        name: "shufflenetv2",
        twin: "dy-shuffle",
        dynamic: false,
        task: Task::Classification,
        paper_mmacs: Some(146.0),
        paper_ratio: Some(88.0 / 146.0),
        mixing: [MulSum, Einsum],
        summary: "torchvision shufflenet_v2_x1_0",
        build: shufflenet::shufflenetv2,
    },
    Network {
        name: "dy-resnet18",
        twin: "resnet18",
        dynamic: true,
        task: Task::Classification,
        paper_mmacs: Some(550.0),
        paper_ratio: Some(550.0 / 1730.0),
        mixing: [MatMul, MulSum],
        summary: "ResNet18 with dynamic basic blocks, output channels halved",
        build: resnet::dy_resnet18,
    },
    Network {
        name: "resnet18",
        twin: "dy-resnet18",
        dynamic: false,
        task: Task::Classification,
        paper_mmacs: Some(1730.0),
        paper_ratio: Some(550.0 / 1730.0),
        mixing: [MatMul, MulSum],
        summary: "torchvision resnet18",
        build: resnet::resnet18,
    },
    Network {
        name: "dy-resnet50",
        twin: "resnet50",
        dynamic: true,
        task: Task::Classification,
        paper_mmacs: Some(1075.0),
        paper_ratio: Some(1075.0 / 3890.0),
        mixing: [Einsum, MatMul],
        summary: "ResNet50 with dynamic bottlenecks, output channels halved",
        build: resnet::dy_resnet50,
    },
    Network {
        name: "resnet50",
        twin: "dy-resnet50",
        dynamic: false,
        task: Task::Classification,
        paper_mmacs: Some(3890.0),
        paper_ratio: Some(1075.0 / 3890.0),
        mixing: [Einsum, MatMul],
        summary: "torchvision resnet50",
        build: resnet::resnet50,
    },
    Network {
        name: "dy-mobilenetv3-small",
        twin: "mobilenetv3-small",
        dynamic: true,
        task: Task::Classification,
        paper_mmacs: None,
        paper_ratio: None,
        mixing: [MatMul, MulSum],
        summary: "MobileNetV3-Small with every block's convs dynamic, same widths",
        build: mobilenetv3::dy_small,
    },
    Network {
        name: "mobilenetv3-small",
        twin: "dy-mobilenetv3-small",
        dynamic: false,
        task: Task::Classification,
        paper_mmacs: None,
        paper_ratio: None,
        mixing: [MatMul, MulSum],
        summary: "torchvision mobilenet_v3_small",
        build: mobilenetv3::small,
    },
    Network {
        name: "dy-mobilenetv3-large",
        twin: "mobilenetv3-large",
        dynamic: true,
        task: Task::Classification,
        paper_mmacs: None,
        paper_ratio: None,
        mixing: [MulSum, Einsum],
        summary: "MobileNetV3-Large with every block's convs dynamic, same widths",
        build: mobilenetv3::dy_large,
    },
    Network {
        name: "mobilenetv3-large",
        twin: "dy-mobilenetv3-large",
        dynamic: false,
        task: Task::Classification,
        paper_mmacs: None,
        paper_ratio: None,
        mixing: [MulSum, Einsum],
        summary: "torchvision mobilenet_v3_large",
        build: mobilenetv3::large,
    },
    Network {
        name: "dy-fcn-resnet50",
        twin: "fcn-resnet50",
        dynamic: true,
        task: Task::Segmentation,
        paper_mmacs: Some(95_600.0),
        paper_ratio: Some(95.6 / 310.8),
        mixing: [Einsum, MulSum],
        summary: "dilated FCN (output stride 8) on Dy-ResNet50, bilinear upsampling, 19 classes",
        build: fcn::dy_fcn_resnet50,
    },
    Network {
        name: "fcn-resnet50",
        twin: "dy-fcn-resnet50",
        dynamic: false,
        task: Task::Segmentation,
        paper_mmacs: Some(310_800.0),
        paper_ratio: Some(95.6 / 310.8),
        mixing: [Einsum, MulSum],
        summary: "torchvision fcn_resnet50 (dilated ResNet50, FCN head), 19 classes",
        build: fcn::fcn_resnet50,
    },
];

/// Every network of the zoo, dynamic ones before their static twins.
pub fn networks() -> &'static [Network] {
    NETWORKS
}

/// The network called `name`.
pub fn find(name: &str) -> Result<&'static Network, ZooError> {
    NETWORKS
        .iter()
        .find(|n| n.name == name)
        .ok_or_else(|| ZooError::UnknownNetwork {
            name: name.to_string(),
            known: NETWORKS
                .iter()
                .map(|n| n.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// A built model and what was put in it.
pub struct Built {
    pub model: ModelProto,
    /// Dynamic convs written (each one mixed-weight Conv in the mix form, each O·g Conv +
    /// ReduceSum in the train form).
    pub dynamic_convs: usize,
}

fn validate(net: &Network, o: &Options) -> Result<(), ZooError> {
    match o.batch {
        Batch::Fixed(b) if !(1..=MAX_BATCH).contains(&b) => {
            return Err(ZooError::InvalidOption(format!(
                "batch {b} is outside 1..={MAX_BATCH}"
            )))
        }
        Batch::Dynamic if net.dynamic && o.form == Form::Mix => {
            return Err(ZooError::DynamicBatchMix(net.name.to_string()))
        }
        _ => {}
    }
    for (what, v) in [("height", o.height), ("width", o.width)] {
        if !(1..=MAX_SIDE).contains(&v) {
            return Err(ZooError::InvalidOption(format!(
                "image {what} {v} is outside 1..={MAX_SIDE}"
            )));
        }
    }
    Ok(())
}

/// Builds the network `name` as an ONNX model.
pub fn build(name: &str, o: &Options) -> Result<Built, ZooError> {
    let network = find(name)?;
    validate(network, o)?;
    let mixing = o.mixing.unwrap_or(network.default_mixing(o.exporter));
    let mut net = Net::new(
        o.exporter, o.form, o.batch, mixing, o.seed, o.height, o.width,
    )?;
    net.metadata("dync.zoo.network", network.name);
    net.metadata("dync.zoo.options", &describe(o, mixing));
    let out = (network.build)(&mut net)?;
    let dynamic_convs = net.dyn_convs();
    net.metadata("dync.zoo.dynamic_convs", &dynamic_convs.to_string());
    let model = match out {
        Output::Logits(v) => net.finish_vector(&v)?,
        Output::Segmentation(m) => net.finish_map(&m)?,
    };
    Ok(Built {
        model,
        dynamic_convs,
    })
}

/// The ONNX bytes of the network `name` for options `o`.
pub fn export(name: &str, o: &Options) -> Result<Vec<u8>, ZooError> {
    Ok(build(name, o)?.model.encode_to_vec())
}

fn describe(o: &Options, mixing: Mixing) -> String {
    format!(
        "batch={} form={} exporter={} seed={} size={}x{} mixing={}",
        o.batch, o.form, o.exporter, o.seed, o.height, o.width, mixing
    )
}

macro_rules! named {
    ($t:ty { $($v:ident = $s:literal),* }) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $(Self::$v => $s),* })
            }
        }
        impl FromStr for $t {
            type Err = ZooError;
            fn from_str(s: &str) -> Result<Self, ZooError> {
                match s {
                    $($s => Ok(Self::$v),)*
                    _ => Err(ZooError::InvalidOption(format!(
                        "`{s}` is not one of: {}", [$($s),*].join(", ")
                    ))),
                }
            }
        }
    };
}

named!(Form { Mix = "mix", Train = "train" });
named!(Exporter { Legacy = "legacy", Dynamo = "dynamo" });
named!(Mixing { Einsum = "einsum", MatMul = "matmul", MulSum = "mulsum" });

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Batch::Fixed(b) => write!(f, "{b}"),
            Batch::Dynamic => f.write_str("dynamic"),
        }
    }
}

impl FromStr for Batch {
    type Err = ZooError;
    fn from_str(s: &str) -> Result<Self, ZooError> {
        if s == "dynamic" {
            return Ok(Batch::Dynamic);
        }
        s.parse::<usize>()
            .ok()
            .filter(|b| (1..=MAX_BATCH).contains(b))
            .map(Batch::Fixed)
            .ok_or_else(|| {
                ZooError::InvalidOption(format!(
                    "batch `{s}` is neither `dynamic` nor a number in 1..={MAX_BATCH}"
                ))
            })
    }
}

/// Parses an image size `HxW` (e.g. `224x224`, `1024x2048`).
pub fn parse_size(s: &str) -> Result<(usize, usize), ZooError> {
    let bad = || {
        ZooError::InvalidOption(format!(
            "size `{s}` is not HxW with both sides in 1..={MAX_SIDE}"
        ))
    };
    let (h, w) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let side = |v: &str| {
        v.parse::<usize>()
            .ok()
            .filter(|v| (1..=MAX_SIDE).contains(v))
            .ok_or_else(bad)
    };
    Ok((side(h)?, side(w)?))
}

#[cfg(test)]
mod tests;
