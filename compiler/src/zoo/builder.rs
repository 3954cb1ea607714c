//! A network-building layer over the ONNX writer: the zoo's networks call layer-level methods
//! (`conv_bn`, `dyn_conv_bn`, `predictor`, `gap`, …) on a [`Net`], which emits them the way
//! PyTorch's exporters write the equivalent modules, in the requested export form and style.
//!
//! Contract:
//! - Weights come from one ChaCha8 stream seeded by the user's seed and are drawn in layer order,
//!   independently of form, exporter style and batch: the same seed gives the same function in
//!   every export (the `train` and `mix` forms agree to rounding), and the same options give
//!   byte-identical files.
//! - Activations are `[batch, C, H, W]` maps or `[batch, n]` vectors; every size is static except
//!   the batch, which may be symbolic (`Batch::Dynamic`, only for forms whose ONNX admits it).
//!   The caller ([`super::build`]) has bounded batch and image size, so products of
//!   dims fit easily in `usize`/`i64`; they are still computed with checked arithmetic.
//! - A layer that cannot be built (an internal inconsistency, e.g. coefficients left unused)
//!   is a [`ZooError`], never a panic.
//!
//! # Choices the paper leaves open (also in docs/zoo.md)
//! - **Dynamic conv** (DyNet Eq. 1/2): g = 6 kernels per output channel, bank laid out
//!   `[O, g, C/groups, k, k]` (train form: the same data as a `[O·g, C/groups, k, k]` conv
//!   weight), no bias (BatchNormalization follows every conv, eval mode, unfolded).
//! - **Predictor**: global average of the block input → Gemm (→ Relu → Gemm for Dy-ResNets,
//!   hidden width C/4) → Sigmoid; one Gemm output of g·ΣO for all dynamic convs of the block,
//!   sliced per conv in block order (`Slice` on axis 1) and viewed as η `[B, O, g]`. The output
//!   Gemm's bias is uniform in (−2, 2), so η spreads over about (0.12, 0.88) whatever the input
//!   and every kernel of a bank matters; Dy-ResNets' hidden Gemm bias starts at zero, and these
//!   equal zero tensors are what makes the legacy exporter write `Identity(initializer)` chains.
//! - **Initialisation**: conv weights uniform with He variance gain/fan-in (gain 2 before ReLU or
//!   ReLU6, 3 before HardSwish, 1 before a linear output); a bank's kernels are further scaled by
//!   1/√1.9, E[Σᵢ ηᵢ²] for the η above, so that the mixed kernel Σᵢ ηᵢ·Wᵢ keeps He variance.
//!   BatchNormalization statistics are random but consistent: running variance U(0.5, 1.5),
//!   running mean U(−0.1, 0.1), bias U(−0.1, 0.1), and a weight making the effective scale
//!   weight/√var uniform in (0.75, 1.25), or in (0.2, 0.4) on the last BN of a residual branch.
//!   Squeeze-excitation gate biases are uniform in (1.5, 2.5) (HardSigmoid gate ≈ 0.8). With
//!   these, every network's outputs stay O(0.1–3) for unit-variance inputs.
//! - **Export styles** (observed with torch 2.15): legacy (TorchScript exporter, opset 17):
//!   GlobalAveragePool → Flatten, Gemm(transB=1), shapes as `Constant` nodes, dynamic-batch
//!   Reshape targets as Shape → Gather → Unsqueeze → Concat, `Identity(initializer)` for
//!   duplicated parameters, output names `/scope/Op_output_0`, Transpose [1,0,2,3] before the
//!   final Reshape of a batch-as-groups conv. Dynamo (opset 18): ReduceMean(axes input) →
//!   Reshape, Gemm, shapes as int64 initializers (`-1` for a dynamic batch), duplicated
//!   parameters shared by name, `allowzero = 1` on Reshape, and at batch 1 no input Reshape
//!   before the batch-as-groups conv (group = groups).

use super::{Batch, Exporter, Form, Mixing, ZooError, G};
use dync_ir::{DType, Tensor};
use dync_onnx::write::{Attr, Dedup, Dim, ModelBuilder};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A feature map `[batch, c, h, w]`.
#[derive(Clone, Debug)]
pub(crate) struct Map {
    pub name: String,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

/// A batch of vectors `[batch, n]`.
#[derive(Clone, Debug)]
pub(crate) struct Vector {
    pub name: String,
    pub n: usize,
}

/// Activation applied after a conv's BatchNormalization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Act {
    None,
    Relu,
    /// ReLU6, exported as Clip(0, 6).
    Relu6,
    HardSwish,
}

impl Act {
    /// He gain of the conv feeding this activation.
    fn gain(self) -> f32 {
        match self {
            Act::None => 1.0,
            Act::Relu | Act::Relu6 => 2.0,
            // 1 / E[hardswish(z)²] for z ~ N(0, 1).
            Act::HardSwish => 3.0,
        }
    }
}

/// Which BatchNormalization initialisation to use (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bn {
    Unit,
    /// Last BN of a residual branch: small effective scale.
    Residual,
}

/// A 2-D convolution's static description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvSpec {
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl ConvSpec {
    /// A k×k conv with "same" padding (dilation·(k−1)/2), stride 1, dilation 1, one group.
    pub fn new(cout: usize, k: usize) -> Self {
        ConvSpec {
            cout,
            k,
            stride: 1,
            dilation: 1,
            groups: 1,
        }
    }
    pub fn stride(self, stride: usize) -> Self {
        ConvSpec { stride, ..self }
    }
    pub fn dilation(self, dilation: usize) -> Self {
        ConvSpec { dilation, ..self }
    }
    pub fn groups(self, groups: usize) -> Self {
        ConvSpec { groups, ..self }
    }
    fn pad(&self) -> usize {
        self.dilation * (self.k - 1) / 2
    }
}

/// The coefficients of one block's predictor, `[batch, g·ΣO]`, handed out conv by conv.
#[derive(Debug)]
pub(crate) struct Coeffs {
    name: String,
    total: usize,
    used: usize,
}

/// One dim of a Reshape target.
#[derive(Clone, Copy, Debug)]
enum SDim {
    Batch,
    /// batch × n (fixed batch only: the batch-as-groups form).
    BatchTimes(usize),
    N(usize),
}

/// Bank kernels are scaled by 1/√MIX_ENERGY: E[Σᵢ ηᵢ²] for g = 6 coefficients ηᵢ = sigmoid(z),
/// z = a LOGIT_BIAS-uniform bias plus an input term of scale ≤ 1.
const MIX_ENERGY: f32 = 1.9;
/// The range of the predictor's output biases: spreads η over about (0.12, 0.88) whatever the
/// input, so that every kernel of a bank matters.
const LOGIT_BIAS: (f32, f32) = (-2.0, 2.0);
const BN_EPS: f32 = 1e-5;

fn internal(msg: impl Into<String>) -> ZooError {
    ZooError::Internal(msg.into())
}

fn mul(a: usize, b: usize) -> Result<usize, ZooError> {
    a.checked_mul(b)
        .ok_or_else(|| internal(format!("size {a}×{b} overflows")))
}

fn to_i64(v: usize) -> Result<i64, ZooError> {
    i64::try_from(v).map_err(|_| internal(format!("size {v} does not fit in int64")))
}

/// The network under construction.
pub(crate) struct Net {
    mb: ModelBuilder,
    exporter: Exporter,
    form: Form,
    batch: Batch,
    mixing: Mixing,
    rng: ChaCha8Rng,
    scope: Vec<String>,
    dyn_convs: usize,
    input: Map,
}

impl Net {
    /// An empty network whose graph input `input` is `[batch, 3, height, width]`.
    pub fn new(
        exporter: Exporter,
        form: Form,
        batch: Batch,
        mixing: Mixing,
        seed: u64,
        height: usize,
        width: usize,
    ) -> Result<Net, ZooError> {
        let opset = match exporter {
            Exporter::Legacy => 17,
            Exporter::Dynamo => 18,
        };
        let mut net = Net {
            mb: ModelBuilder::new(opset),
            exporter,
            form,
            batch,
            mixing,
            rng: ChaCha8Rng::seed_from_u64(seed),
            scope: Vec::new(),
            dyn_convs: 0,
            input: Map {
                name: "input".to_string(),
                c: 3,
                h: height,
                w: width,
            },
        };
        let dims = [
            net.batch_dim(),
            Dim::Fixed(3),
            Dim::Fixed(height),
            Dim::Fixed(width),
        ];
        net.mb.input("input", DType::F32, &dims)?;
        Ok(net)
    }

    pub fn input(&self) -> Map {
        self.input.clone()
    }

    /// Dynamic convs emitted so far.
    pub fn dyn_convs(&self) -> usize {
        self.dyn_convs
    }

    pub fn metadata(&mut self, key: &str, value: &str) {
        self.mb.metadata(key, value);
    }

    fn batch_dim(&self) -> Dim {
        match self.batch {
            Batch::Fixed(b) => Dim::Fixed(b),
            Batch::Dynamic => Dim::Symbolic("batch".to_string()),
        }
    }

    /// Runs `f` inside the module scope `name` (parameter prefix `name.`, node prefix `/name`).
    pub fn scope<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Net) -> Result<T, ZooError>,
    ) -> Result<T, ZooError> {
        self.scope.push(name.to_string());
        let r = f(self);
        self.scope.pop();
        r
    }

    // ---- random numbers -------------------------------------------------------------------

    /// A uniform sample in [0, 1) with 24 random bits (exact in f32).
    fn unit(&mut self) -> f32 {
        (self.rng.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
    }

    fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| lo + (hi - lo) * self.unit()).collect()
    }

    /// `n` samples of zero mean and variance `var` (uniform, so bounded).
    fn weights(&mut self, n: usize, var: f32) -> Vec<f32> {
        let a = (3.0 * var).sqrt();
        self.uniform(n, -a, a)
    }

    // ---- names, constants, parameters -----------------------------------------------------

    fn param_name(&self, local: &str) -> String {
        if self.scope.is_empty() {
            local.to_string()
        } else {
            format!("{}.{local}", self.scope.join("."))
        }
    }

    /// Adds a parameter (an initializer named after the scope), deduplicated the exporter's way.
    fn param(&mut self, local: &str, t: Tensor) -> Result<String, ZooError> {
        let name = self.param_name(local);
        let mode = match self.exporter {
            Exporter::Legacy => Dedup::Identity,
            Exporter::Dynamo => Dedup::Share,
        };
        Ok(self.mb.initializer_dedup(&name, &t, mode)?)
    }

    /// Emits one node with one output, named in the exporter's style; returns the output name.
    /// `hint` is the dynamo-style output name (the aten op it stands for).
    fn emit(
        &mut self,
        op: &str,
        hint: &str,
        inputs: &[&str],
        attrs: &[Attr],
    ) -> Result<String, ZooError> {
        self.emit_n(op, hint, inputs, attrs, 1)?
            .into_iter()
            .next()
            .ok_or_else(|| internal(format!("{op} emitted no output")))
    }

    fn emit_n(
        &mut self,
        op: &str,
        hint: &str,
        inputs: &[&str],
        attrs: &[Attr],
        outputs: usize,
    ) -> Result<Vec<String>, ZooError> {
        let (node, outs) = match self.exporter {
            Exporter::Legacy => {
                let node = self.mb.fresh(&format!("/{}", self.path(op)));
                let outs = (0..outputs).map(|i| format!("{node}_output_{i}")).collect();
                (node, outs)
            }
            Exporter::Dynamo => {
                let outs: Vec<String> = if outputs == 1 {
                    vec![self.mb.fresh(hint)]
                } else {
                    let base = self.mb.fresh(hint);
                    (0..outputs).map(|i| format!("{base}_split_{i}")).collect()
                };
                (self.mb.fresh(&format!("node_{op}")), outs)
            }
        };
        let out_refs: Vec<&str> = outs.iter().map(String::as_str).collect();
        self.mb.node(op, &node, inputs, &out_refs, attrs)?;
        Ok(outs)
    }

    fn path(&self, op: &str) -> String {
        let mut p = self.scope.join("/");
        if !p.is_empty() {
            p.push('/');
        }
        p.push_str(op);
        p
    }

    /// An int64 constant: a `Constant` node (legacy) or an initializer `val_N` (dynamo).
    fn const_i64(&mut self, shape: &[usize], vals: Vec<i64>) -> Result<String, ZooError> {
        let t = Tensor::from_i64(shape.to_vec(), vals)
            .map_err(|e| internal(format!("constant: {e}")))?;
        self.constant(t)
    }

    fn const_f32_scalar(&mut self, v: f32) -> Result<String, ZooError> {
        self.constant(Tensor::scalar_f32(v))
    }

    fn constant(&mut self, t: Tensor) -> Result<String, ZooError> {
        match self.exporter {
            Exporter::Legacy => {
                let node = self.mb.fresh(&format!("/{}", self.path("Constant")));
                let out = format!("{node}_output_0");
                self.mb.constant(&node, &out, t)?;
                Ok(out)
            }
            Exporter::Dynamo => {
                let name = self.mb.fresh("val");
                self.mb.initializer(&name, &t)?;
                Ok(name)
            }
        }
    }

    /// A 1-D int64 vector constant.
    fn ints(&mut self, vals: &[i64]) -> Result<String, ZooError> {
        self.const_i64(&[vals.len()], vals.to_vec())
    }

    fn usizes(&mut self, vals: &[usize]) -> Result<String, ZooError> {
        let v = vals
            .iter()
            .map(|&d| to_i64(d))
            .collect::<Result<Vec<_>, _>>()?;
        self.ints(&v)
    }

    /// A Reshape target. With a fixed batch, a constant; with a dynamic batch, `-1` for the
    /// batch (dynamo) or the legacy exporter's Shape(src) → Gather(0) → Unsqueeze → Concat.
    fn shape_target(&mut self, dims: &[SDim], batch_src: &str) -> Result<String, ZooError> {
        match self.batch {
            Batch::Fixed(b) => {
                let v = dims
                    .iter()
                    .map(|d| match *d {
                        SDim::Batch => to_i64(b),
                        SDim::BatchTimes(n) => to_i64(mul(b, n)?),
                        SDim::N(n) => to_i64(n),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.ints(&v)
            }
            Batch::Dynamic => {
                if dims.iter().any(|d| matches!(d, SDim::BatchTimes(_))) {
                    return Err(internal("a batch-as-groups reshape needs a fixed batch"));
                }
                match self.exporter {
                    Exporter::Dynamo => {
                        let v = dims
                            .iter()
                            .map(|d| match *d {
                                SDim::N(n) => to_i64(n),
                                _ => Ok(-1),
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        self.ints(&v)
                    }
                    Exporter::Legacy => {
                        let shape = self.emit("Shape", "sym_size", &[batch_src], &[])?;
                        let zero = self.const_i64(&[], vec![0])?;
                        let b = self.emit(
                            "Gather",
                            "getitem",
                            &[&shape, &zero],
                            &[Attr::int("axis", 0)],
                        )?;
                        let mut parts = Vec::with_capacity(dims.len());
                        for d in dims {
                            parts.push(match *d {
                                SDim::N(n) => self.ints(&[to_i64(n)?])?,
                                _ => {
                                    let axes = self.ints(&[0])?;
                                    self.emit("Unsqueeze", "unsqueeze", &[&b, &axes], &[])?
                                }
                            });
                        }
                        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
                        self.emit("Concat", "cat", &refs, &[Attr::int("axis", 0)])
                    }
                }
            }
        }
    }

    fn reshape(&mut self, x: &str, dims: &[SDim], batch_src: &str) -> Result<String, ZooError> {
        let target = self.shape_target(dims, batch_src)?;
        let allowzero = match self.exporter {
            Exporter::Legacy => 0,
            Exporter::Dynamo => 1,
        };
        self.emit(
            "Reshape",
            "view",
            &[x, &target],
            &[Attr::int("allowzero", allowzero)],
        )
    }

    // ---- layers ---------------------------------------------------------------------------

    fn out_dim(&self, len: usize, spec: &ConvSpec) -> Result<usize, ZooError> {
        let span = spec.dilation * (spec.k - 1) + 1;
        let padded = len + 2 * spec.pad();
        padded
            .checked_sub(span)
            .map(|d| d / spec.stride + 1)
            .ok_or_else(|| internal(format!("input of size {len} is smaller than the kernel")))
    }

    fn conv_attrs(&self, spec: &ConvSpec, group: usize) -> Result<Vec<Attr>, ZooError> {
        let k = to_i64(spec.k)?;
        let s = to_i64(spec.stride)?;
        let d = to_i64(spec.dilation)?;
        let p = to_i64(spec.pad())?;
        let g = to_i64(group)?;
        Ok(match self.exporter {
            Exporter::Legacy => vec![
                Attr::ints("dilations", &[d, d]),
                Attr::int("group", g),
                Attr::ints("kernel_shape", &[k, k]),
                Attr::ints("pads", &[p, p, p, p]),
                Attr::ints("strides", &[s, s]),
            ],
            Exporter::Dynamo => vec![
                Attr::int("group", g),
                Attr::ints("pads", &[p, p, p, p]),
                Attr::string("auto_pad", "NOTSET"),
                Attr::ints("strides", &[s, s]),
                Attr::ints("dilations", &[d, d]),
                Attr::ints("kernel_shape", &[k, k]),
            ],
        })
    }

    fn check_groups(x: &Map, spec: &ConvSpec) -> Result<(), ZooError> {
        if spec.groups == 0
            || !x.c.is_multiple_of(spec.groups)
            || !spec.cout.is_multiple_of(spec.groups)
        {
            return Err(internal(format!(
                "conv with {} groups on {} → {} channels",
                spec.groups, x.c, spec.cout
            )));
        }
        Ok(())
    }

    /// A static conv (no bias) whose weight is drawn with He variance `gain / fan_in`.
    fn conv_raw(
        &mut self,
        x: &Map,
        spec: ConvSpec,
        gain: f32,
        bias: Option<(f32, f32)>,
    ) -> Result<Map, ZooError> {
        Self::check_groups(x, &spec)?;
        let cin_g = x.c / spec.groups;
        let fan_in = mul(cin_g, mul(spec.k, spec.k)?)?;
        let n = mul(spec.cout, fan_in)?;
        let w = self.weights(n, gain / fan_in as f32);
        let w = Tensor::from_f32([spec.cout, cin_g, spec.k, spec.k], w)
            .map_err(|e| internal(e.to_string()))?;
        let w = self.param("weight", w)?;
        let mut inputs = vec![x.name.clone(), w];
        if let Some((lo, hi)) = bias {
            let b = self.uniform(spec.cout, lo, hi);
            let b = Tensor::from_f32([spec.cout], b).map_err(|e| internal(e.to_string()))?;
            inputs.push(self.param("bias", b)?);
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let attrs = self.conv_attrs(&spec, spec.groups)?;
        let name = self.emit("Conv", "conv2d", &refs, &attrs)?;
        Ok(Map {
            name,
            c: spec.cout,
            h: self.out_dim(x.h, &spec)?,
            w: self.out_dim(x.w, &spec)?,
        })
    }

    /// Static conv → BatchNormalization → activation, in module scopes `conv`/`bn` of `scope`.
    pub fn conv_bn(
        &mut self,
        scope: &str,
        x: &Map,
        spec: ConvSpec,
        act: Act,
        bn: Bn,
    ) -> Result<Map, ZooError> {
        self.scope(scope, |n| {
            let y = n.scope("conv", |n| n.conv_raw(x, spec, act.gain(), None))?;
            let y = n.scope("bn", |n| n.batch_norm(&y, bn))?;
            n.act(&y, act)
        })
    }

    /// A static conv with a bias uniform in `bias` and no BatchNormalization (heads,
    /// squeeze-excitation).
    pub fn conv_bias(
        &mut self,
        scope: &str,
        x: &Map,
        spec: ConvSpec,
        gain: f32,
        bias: (f32, f32),
    ) -> Result<Map, ZooError> {
        self.scope(scope, |n| n.conv_raw(x, spec, gain, Some(bias)))
    }

    fn batch_norm(&mut self, x: &Map, bn: Bn) -> Result<Map, ZooError> {
        let c = x.c;
        let (lo, hi) = match bn {
            Bn::Unit => (0.75, 1.25),
            Bn::Residual => (0.2, 0.4),
        };
        let var = self.uniform(c, 0.5, 1.5);
        let scale = self.uniform(c, lo, hi);
        let weight: Vec<f32> = scale
            .iter()
            .zip(&var)
            .map(|(s, v)| s * (v + BN_EPS).sqrt())
            .collect();
        let bias = self.uniform(c, -0.1, 0.1);
        let mean = self.uniform(c, -0.1, 0.1);
        let t = |v: Vec<f32>| Tensor::from_f32([c], v).map_err(|e| internal(e.to_string()));
        let w = self.param("weight", t(weight)?)?;
        let b = self.param("bias", t(bias)?)?;
        let m = self.param("running_mean", t(mean)?)?;
        let v = self.param("running_var", t(var)?)?;
        let attrs = match self.exporter {
            Exporter::Legacy => vec![
                Attr::float("epsilon", BN_EPS),
                Attr::float("momentum", 0.9),
                Attr::int("training_mode", 0),
            ],
            Exporter::Dynamo => vec![Attr::float("momentum", 0.9), Attr::float("epsilon", BN_EPS)],
        };
        let name = self.emit(
            "BatchNormalization",
            "batch_norm",
            &[&x.name, &w, &b, &m, &v],
            &attrs,
        )?;
        Ok(Map { name, ..x.clone() })
    }

    /// Applies an activation to a feature map.
    pub fn act(&mut self, x: &Map, act: Act) -> Result<Map, ZooError> {
        let name = self.act_name(&x.name, act)?;
        Ok(Map { name, ..x.clone() })
    }

    fn act_name(&mut self, x: &str, act: Act) -> Result<String, ZooError> {
        match act {
            Act::None => Ok(x.to_string()),
            Act::Relu => self.emit("Relu", "relu", &[x], &[]),
            Act::HardSwish => self.emit("HardSwish", "hardswish", &[x], &[]),
            Act::Relu6 => {
                let lo = self.const_f32_scalar(0.0)?;
                let hi = self.const_f32_scalar(6.0)?;
                self.emit("Clip", "hardtanh", &[x, &lo, &hi], &[])
            }
        }
    }

    /// Elementwise sum of two equal-shape maps (a residual connection).
    pub fn add(&mut self, a: &Map, b: &Map) -> Result<Map, ZooError> {
        let name = self.emit("Add", "add", &[&a.name, &b.name], &[])?;
        Ok(Map { name, ..a.clone() })
    }

    /// k×k max pooling with padding (k−1)/2.
    pub fn max_pool(&mut self, x: &Map, k: usize, stride: usize) -> Result<Map, ZooError> {
        let spec = ConvSpec::new(x.c, k).stride(stride);
        let (ki, si, pi) = (to_i64(k)?, to_i64(stride)?, to_i64(spec.pad())?);
        let attrs = vec![
            Attr::int("ceil_mode", 0),
            Attr::ints("dilations", &[1, 1]),
            Attr::ints("kernel_shape", &[ki, ki]),
            Attr::ints("pads", &[pi, pi, pi, pi]),
            Attr::ints("strides", &[si, si]),
        ];
        let name = self.emit("MaxPool", "max_pool2d", &[&x.name], &attrs)?;
        Ok(Map {
            name,
            c: x.c,
            h: self.out_dim(x.h, &spec)?,
            w: self.out_dim(x.w, &spec)?,
        })
    }

    /// Global average pooling kept 4-D `[B, C, 1, 1]` (squeeze-excitation's adaptive pool).
    pub fn gap_keep(&mut self, x: &Map) -> Result<Map, ZooError> {
        let name = match self.exporter {
            Exporter::Legacy => self.emit("GlobalAveragePool", "mean", &[&x.name], &[])?,
            Exporter::Dynamo => {
                let axes = self.ints(&[-1, -2])?;
                self.emit(
                    "ReduceMean",
                    "mean",
                    &[&x.name, &axes],
                    &[
                        Attr::int("noop_with_empty_axes", 0),
                        Attr::int("keepdims", 1),
                    ],
                )?
            }
        };
        Ok(Map {
            name,
            c: x.c,
            h: 1,
            w: 1,
        })
    }

    /// `adaptive_avg_pool2d(x, 1).flatten(1)`: `[B, C]`.
    pub fn gap(&mut self, x: &Map) -> Result<Vector, ZooError> {
        let pooled = self.gap_keep(x)?;
        let name = match self.exporter {
            Exporter::Legacy => self.emit(
                "Flatten",
                "flatten",
                &[&pooled.name],
                &[Attr::int("axis", 1)],
            )?,
            Exporter::Dynamo => {
                self.reshape(&pooled.name, &[SDim::Batch, SDim::N(x.c)], &x.name)?
            }
        };
        Ok(Vector { name, n: x.c })
    }

    /// `x.mean([2, 3])` (ShuffleNetV2's head): ReduceMean with keepdims 0, axes as an attribute
    /// (legacy, opset 17) or an input (dynamo, opset 18).
    pub fn mean_hw(&mut self, x: &Map) -> Result<Vector, ZooError> {
        let name = match self.exporter {
            Exporter::Legacy => self.emit(
                "ReduceMean",
                "mean",
                &[&x.name],
                &[Attr::ints("axes", &[2, 3]), Attr::int("keepdims", 0)],
            )?,
            Exporter::Dynamo => {
                let axes = self.ints(&[2, 3])?;
                self.emit(
                    "ReduceMean",
                    "mean",
                    &[&x.name, &axes],
                    &[
                        Attr::int("noop_with_empty_axes", 0),
                        Attr::int("keepdims", 0),
                    ],
                )?
            }
        };
        Ok(Vector { name, n: x.c })
    }

    fn gemm_attrs(&self) -> Vec<Attr> {
        match self.exporter {
            Exporter::Legacy => vec![
                Attr::float("alpha", 1.0),
                Attr::float("beta", 1.0),
                Attr::int("transB", 1),
            ],
            Exporter::Dynamo => vec![
                Attr::float("beta", 1.0),
                Attr::int("transB", 1),
                Attr::float("alpha", 1.0),
                Attr::int("transA", 0),
            ],
        }
    }

    /// `nn.Linear(v.n, out)` in scope `scope`: Gemm(transB = 1) with weight variance
    /// `gain / in` and a bias uniform in `bias` (all `bias.0` when the range is empty).
    pub fn linear(
        &mut self,
        scope: &str,
        v: &Vector,
        out: usize,
        gain: f32,
        bias: (f32, f32),
    ) -> Result<Vector, ZooError> {
        self.scope(scope, |n| {
            let w = n.weights(mul(out, v.n)?, gain / v.n as f32);
            let w = Tensor::from_f32([out, v.n], w).map_err(|e| internal(e.to_string()))?;
            let w = n.param("weight", w)?;
            let (lo, hi) = bias;
            let b = if lo < hi {
                n.uniform(out, lo, hi)
            } else {
                vec![lo; out]
            };
            let b = Tensor::from_f32([out], b).map_err(|e| internal(e.to_string()))?;
            let b = n.param("bias", b)?;
            let attrs = n.gemm_attrs();
            let name = n.emit("Gemm", "linear", &[&v.name, &w, &b], &attrs)?;
            Ok(Vector { name, n: out })
        })
    }

    /// An activation on a vector.
    pub fn act_vec(&mut self, v: &Vector, act: Act) -> Result<Vector, ZooError> {
        let name = self.act_name(&v.name, act)?;
        Ok(Vector { name, n: v.n })
    }

    /// Splits channels into consecutive parts (`torch.split(x, sizes, 1)`).
    pub fn split(&mut self, x: &Map, sizes: &[usize]) -> Result<Vec<Map>, ZooError> {
        if sizes.iter().sum::<usize>() != x.c {
            return Err(internal(format!("split {sizes:?} of {} channels", x.c)));
        }
        let split = self.usizes(sizes)?;
        let names = self.emit_n(
            "Split",
            "split_with_sizes",
            &[&x.name, &split],
            &[Attr::int("axis", 1)],
            sizes.len(),
        )?;
        Ok(names
            .into_iter()
            .zip(sizes)
            .map(|(name, &c)| Map {
                name,
                c,
                ..x.clone()
            })
            .collect())
    }

    /// Channel concatenation of maps of equal spatial size.
    pub fn concat(&mut self, parts: &[&Map]) -> Result<Map, ZooError> {
        let first = parts.first().ok_or_else(|| internal("concat of nothing"))?;
        let refs: Vec<&str> = parts.iter().map(|m| m.name.as_str()).collect();
        let name = self.emit("Concat", "cat", &refs, &[Attr::int("axis", 1)])?;
        Ok(Map {
            name,
            c: parts.iter().map(|m| m.c).sum(),
            ..(*first).clone()
        })
    }

    /// ShuffleNet's channel shuffle: view [B, groups, C/groups, H, W] → transpose(1, 2) → view.
    pub fn channel_shuffle(&mut self, x: &Map, groups: usize) -> Result<Map, ZooError> {
        if groups == 0 || !x.c.is_multiple_of(groups) {
            return Err(internal(format!(
                "shuffle of {} channels in {groups} groups",
                x.c
            )));
        }
        let dims = [
            SDim::Batch,
            SDim::N(groups),
            SDim::N(x.c / groups),
            SDim::N(x.h),
            SDim::N(x.w),
        ];
        let v = self.reshape(&x.name, &dims, &x.name)?;
        let t = self.emit(
            "Transpose",
            "transpose",
            &[&v],
            &[Attr::ints("perm", &[0, 2, 1, 3, 4])],
        )?;
        let dims = [SDim::Batch, SDim::N(x.c), SDim::N(x.h), SDim::N(x.w)];
        let name = self.reshape(&t, &dims, &x.name)?;
        Ok(Map { name, ..x.clone() })
    }

    /// Squeeze-excitation (torchvision's): pool → 1×1 conv (bias) → Relu → 1×1 conv (bias) →
    /// HardSigmoid → scale.
    pub fn squeeze_excitation(&mut self, x: &Map, squeeze: usize) -> Result<Map, ZooError> {
        self.scope("se", |n| {
            let p = n.gap_keep(x)?;
            let s = n.conv_bias("fc1", &p, ConvSpec::new(squeeze, 1), 2.0, (-0.1, 0.1))?;
            let s = n.act(&s, Act::Relu)?;
            // Gate biases near 2 keep HardSigmoid's gate around 0.8 rather than 0.5, so that
            // stacked blocks do not shrink the activations.
            let s = n.conv_bias("fc2", &s, ConvSpec::new(x.c, 1), 1.0, (1.5, 2.5))?;
            let s = n.emit(
                "HardSigmoid",
                "hardsigmoid",
                &[&s.name],
                &[Attr::float("alpha", 1.0 / 6.0), Attr::float("beta", 0.5)],
            )?;
            let name = n.emit("Mul", "mul", &[&s, &x.name], &[])?;
            Ok(Map { name, ..x.clone() })
        })
    }

    /// Bilinear upsampling to `h`×`w` (`F.interpolate(..., mode="bilinear", align_corners=False)`):
    /// Resize with `sizes`; legacy builds them from Shape → Slice → Concat.
    pub fn resize_bilinear(&mut self, x: &Map, h: usize, w: usize) -> Result<Map, ZooError> {
        let sizes = match (self.exporter, self.batch) {
            (Exporter::Dynamo, Batch::Fixed(b)) => self.usizes(&[b, x.c, h, w])?,
            (Exporter::Dynamo, Batch::Dynamic) => {
                let nc = self.emit(
                    "Shape",
                    "sym_size",
                    &[&x.name],
                    &[Attr::int("end", 2), Attr::int("start", 0)],
                )?;
                let hw = self.usizes(&[h, w])?;
                self.emit("Concat", "cat", &[&nc, &hw], &[Attr::int("axis", 0)])?
            }
            (Exporter::Legacy, _) => {
                let shape = self.emit("Shape", "sym_size", &[&x.name], &[])?;
                let axes = self.ints(&[0])?;
                let starts = self.ints(&[0])?;
                let ends = self.ints(&[2])?;
                let nc = self.emit("Slice", "slice", &[&shape, &starts, &ends, &axes], &[])?;
                let hw = self.usizes(&[h, w])?;
                self.emit("Concat", "cat", &[&nc, &hw], &[Attr::int("axis", 0)])?
            }
        };
        let mut attrs = vec![
            Attr::string("coordinate_transformation_mode", "half_pixel"),
            Attr::float("cubic_coeff_a", -0.75),
            Attr::string("mode", "linear"),
            Attr::string("nearest_mode", "floor"),
        ];
        if self.exporter == Exporter::Dynamo {
            attrs.extend([
                Attr::string("keep_aspect_ratio_policy", "stretch"),
                Attr::int("antialias", 0),
                Attr::float("extrapolation_value", 0.0),
                Attr::int("exclude_outside", 0),
            ]);
        }
        let name = self.emit(
            "Resize",
            "upsample_bilinear2d",
            &[&x.name, "", "", &sizes],
            &attrs,
        )?;
        Ok(Map { name, c: x.c, h, w })
    }

    // ---- dynamic convolution --------------------------------------------------------------

    /// The coefficient predictor of a block whose dynamic convs have `outs` output channels:
    /// GAP(x) → Gemm(→ Relu → Gemm, when `hidden` is given) → Sigmoid, `[B, g·Σouts]`.
    pub fn predictor(
        &mut self,
        x: &Map,
        outs: &[usize],
        hidden: Option<usize>,
    ) -> Result<Coeffs, ZooError> {
        let total = outs.iter().try_fold(0usize, |acc, &o| {
            acc.checked_add(mul(o, G)?)
                .ok_or_else(|| internal("predictor width overflows"))
        })?;
        self.scope("route", |n| {
            let pooled = n.gap(x)?;
            let logits = match hidden {
                None => n.linear("fc", &pooled, total, 1.0, LOGIT_BIAS)?,
                Some(h) => {
                    let v = n.linear("fc1", &pooled, h, 2.0, (0.0, 0.0))?;
                    let v = n.act_vec(&v, Act::Relu)?;
                    n.linear("fc2", &v, total, 2.0, LOGIT_BIAS)?
                }
            };
            let name = n.emit("Sigmoid", "sigmoid", &[&logits.name], &[])?;
            Ok(Coeffs {
                name,
                total,
                used: 0,
            })
        })
    }

    /// Checks that a block's predictor fed exactly its dynamic convs.
    pub fn finish_coeffs(&self, c: &Coeffs) -> Result<(), ZooError> {
        if c.used != c.total {
            return Err(internal(format!(
                "predictor `{}` has {} outputs but its convs used {}",
                c.name, c.total, c.used
            )));
        }
        Ok(())
    }

    /// The next conv's η, `[B, O·g]`: a Slice of the block's coefficients on axis 1 (or all
    /// of them when the block has one conv).
    fn take_coeffs(&mut self, c: &mut Coeffs, o: usize) -> Result<String, ZooError> {
        let n = mul(o, G)?;
        let start = c.used;
        let end = start
            .checked_add(n)
            .filter(|&e| e <= c.total)
            .ok_or_else(|| internal(format!("predictor `{}` has too few outputs", c.name)))?;
        c.used = end;
        if start == 0 && end == c.total {
            return Ok(c.name.clone());
        }
        let starts = self.usizes(&[start])?;
        let ends = self.usizes(&[end])?;
        let axes = self.ints(&[1])?;
        let steps = self.ints(&[1])?;
        self.emit(
            "Slice",
            "slice",
            &[&c.name, &starts, &ends, &axes, &steps],
            &[],
        )
    }

    /// A dynamic conv (η from `coeffs`) → BatchNormalization → activation, in module scope
    /// `scope`, written in the net's export form. Batch-as-groups (mix) needs a fixed batch.
    pub fn dyn_conv_bn(
        &mut self,
        scope: &str,
        x: &Map,
        coeffs: &mut Coeffs,
        spec: ConvSpec,
        act: Act,
        bn: Bn,
    ) -> Result<Map, ZooError> {
        Self::check_groups(x, &spec)?;
        self.dyn_convs += 1;
        self.scope(scope, |n| {
            let y = n.scope("conv", |n| n.dyn_conv(x, coeffs, spec, act.gain()))?;
            let y = n.scope("bn", |n| n.batch_norm(&y, bn))?;
            n.act(&y, act)
        })
    }

    fn dyn_conv(
        &mut self,
        x: &Map,
        coeffs: &mut Coeffs,
        spec: ConvSpec,
        gain: f32,
    ) -> Result<Map, ZooError> {
        let (o, k) = (spec.cout, spec.k);
        let cin_g = x.c / spec.groups;
        let fan_in = mul(cin_g, mul(k, k)?)?;
        let ckk = fan_in;
        let bank = self.weights(
            mul(mul(o, G)?, fan_in)?,
            gain / (fan_in as f32 * MIX_ENERGY),
        );
        let h = self.out_dim(x.h, &spec)?;
        let w = self.out_dim(x.w, &spec)?;
        let eta = self.take_coeffs(coeffs, o)?;
        let out = match self.form {
            Form::Train => {
                let wt = Tensor::from_f32([mul(o, G)?, cin_g, k, k], bank)
                    .map_err(|e| internal(e.to_string()))?;
                let wt = self.param("weight", wt)?;
                let attrs = self.conv_attrs(&spec, spec.groups)?;
                let y = self.emit("Conv", "conv2d", &[&x.name, &wt], &attrs)?;
                let dims = [SDim::Batch, SDim::N(o), SDim::N(G), SDim::N(h), SDim::N(w)];
                let y = self.reshape(&y, &dims, &x.name)?;
                let dims = [SDim::Batch, SDim::N(o), SDim::N(G), SDim::N(1), SDim::N(1)];
                let e = self.reshape(&eta, &dims, &x.name)?;
                let m = self.emit("Mul", "mul", &[&y, &e], &[])?;
                self.reduce_sum_axis2(&m)?
            }
            Form::Mix => {
                let Batch::Fixed(b) = self.batch else {
                    return Err(internal("the mix form needs a fixed batch"));
                };
                let e3 = [SDim::Batch, SDim::N(o), SDim::N(G)];
                let mixed = match self.mixing {
                    Mixing::Einsum => {
                        let t = Tensor::from_f32([o, G, cin_g, k, k], bank)
                            .map_err(|e| internal(e.to_string()))?;
                        let bank = self.param("weight", t)?;
                        let e = self.reshape(&eta, &e3, &x.name)?;
                        self.emit(
                            "Einsum",
                            "einsum",
                            &[&e, &bank],
                            &[Attr::string("equation", "bog,ogcij->bocij")],
                        )?
                    }
                    Mixing::MatMul => {
                        let t = Tensor::from_f32([o, G, ckk], bank)
                            .map_err(|e| internal(e.to_string()))?;
                        let bank = self.param("weight", t)?;
                        let e = self.reshape(&eta, &e3, &x.name)?;
                        let axes = self.ints(&[2])?;
                        let e = self.emit("Unsqueeze", "unsqueeze", &[&e, &axes], &[])?;
                        self.emit("MatMul", "matmul", &[&e, &bank], &[])?
                    }
                    Mixing::MulSum => {
                        let t = Tensor::from_f32([o, G, cin_g, k, k], bank)
                            .map_err(|e| internal(e.to_string()))?;
                        let bank = self.param("weight", t)?;
                        let e6 = [
                            SDim::Batch,
                            SDim::N(o),
                            SDim::N(G),
                            SDim::N(1),
                            SDim::N(1),
                            SDim::N(1),
                        ];
                        let e = match self.exporter {
                            // `eta.view(B, O, g)` then `.view(B, O, g, 1, 1, 1)`.
                            Exporter::Legacy => {
                                let e = self.reshape(&eta, &e3, &x.name)?;
                                self.reshape(&e, &e6, &x.name)?
                            }
                            Exporter::Dynamo => self.reshape(&eta, &e6, &x.name)?,
                        };
                        let m = self.emit("Mul", "mul", &[&e, &bank], &[])?;
                        self.reduce_sum_axis2(&m)?
                    }
                };
                let wdims = [SDim::BatchTimes(o), SDim::N(cin_g), SDim::N(k), SDim::N(k)];
                let wmix = self.reshape(&mixed, &wdims, &x.name)?;
                let xin = if self.exporter == Exporter::Dynamo && b == 1 {
                    x.name.clone()
                } else {
                    let d = [
                        SDim::N(1),
                        SDim::BatchTimes(x.c),
                        SDim::N(x.h),
                        SDim::N(x.w),
                    ];
                    self.reshape(&x.name, &d, &x.name)?
                };
                let attrs = self.conv_attrs(&spec, mul(b, spec.groups)?)?;
                let y = self.emit("Conv", "conv2d", &[&xin, &wmix], &attrs)?;
                let y = self.emit(
                    "Transpose",
                    "permute",
                    &[&y],
                    &[Attr::ints("perm", &[1, 0, 2, 3])],
                )?;
                self.reshape(
                    &y,
                    &[SDim::Batch, SDim::N(o), SDim::N(h), SDim::N(w)],
                    &x.name,
                )?
            }
        };
        Ok(Map {
            name: out,
            c: o,
            h,
            w,
        })
    }

    /// `t.sum(2)`: ReduceSum over axis 2 (axes as an input since opset 13), keepdims 0.
    fn reduce_sum_axis2(&mut self, x: &str) -> Result<String, ZooError> {
        let axes = self.ints(&[2])?;
        let mut attrs = vec![Attr::int("keepdims", 0)];
        if self.exporter == Exporter::Dynamo {
            attrs.insert(0, Attr::int("noop_with_empty_axes", 0));
        }
        self.emit("ReduceSum", "sum", &[x, &axes], &attrs)
    }

    // ---- outputs --------------------------------------------------------------------------

    /// Finishes with the graph output `output`: the vector `v` (classifier logits).
    pub fn finish_vector(self, v: &Vector) -> Result<dync_onnx::proto::ModelProto, ZooError> {
        let dims = [self.batch_dim(), Dim::Fixed(v.n)];
        self.finish(&v.name, &dims)
    }

    /// Finishes with the graph output `output`: the map `m` (segmentation logits).
    pub fn finish_map(self, m: &Map) -> Result<dync_onnx::proto::ModelProto, ZooError> {
        let dims = [
            self.batch_dim(),
            Dim::Fixed(m.c),
            Dim::Fixed(m.h),
            Dim::Fixed(m.w),
        ];
        self.finish(&m.name, &dims)
    }

    fn finish(
        mut self,
        value: &str,
        dims: &[Dim],
    ) -> Result<dync_onnx::proto::ModelProto, ZooError> {
        self.mb.rename(value, "output")?;
        self.mb.output("output", DType::F32, dims)?;
        Ok(self.mb.finish())
    }
}
