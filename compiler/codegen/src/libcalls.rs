//! Scalar math functions that generated code calls instead of inlining (`extern "C"`, f32 in
//! and out). Generated code calls them by their standard C names (`logf`, `tanhf`, `erff`,
//! `powf`), so that AOT objects need only libm. The JIT binds the same names to the functions
//! below, which evaluate in f64 and round once, like the reference interpreter (erf is the
//! interpreter's own, `dync_ir::math::erf`); libm's versions agree within an ulp or two (the AOT
//! tests compare at atol 1e-5). `exp` is not here: it is inlined as a polynomial (see
//! `lower::math`), because softmax and sigmoid need it fast.

/// A math function generated code may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MathFn {
    Log,
    Tanh,
    Erf,
    Pow,
}

impl MathFn {
    pub const ALL: [MathFn; 4] = [MathFn::Log, MathFn::Tanh, MathFn::Erf, MathFn::Pow];

    /// The symbol name: the C math library's.
    pub fn symbol(self) -> &'static str {
        match self {
            MathFn::Log => "logf",
            MathFn::Tanh => "tanhf",
            MathFn::Erf => "erff",
            MathFn::Pow => "powf",
        }
    }

    /// Number of f32 arguments.
    pub fn arity(self) -> usize {
        match self {
            MathFn::Log | MathFn::Tanh | MathFn::Erf => 1,
            MathFn::Pow => 2,
        }
    }

    /// Address of the in-process implementation (for the JIT's symbol table).
    pub fn address(self) -> *const u8 {
        match self {
            MathFn::Log => dync_logf as *const u8,
            MathFn::Tanh => dync_tanhf as *const u8,
            MathFn::Erf => dync_erff as *const u8,
            MathFn::Pow => dync_powf as *const u8,
        }
    }
}

pub extern "C" fn dync_logf(x: f32) -> f32 {
    f64::from(x).ln() as f32
}

pub extern "C" fn dync_tanhf(x: f32) -> f32 {
    f64::from(x).tanh() as f32
}

pub extern "C" fn dync_powf(x: f32, y: f32) -> f32 {
    f64::from(x).powf(f64::from(y)) as f32
}

pub extern "C" fn dync_erff(x: f32) -> f32 {
    dync_ir::math::erf(f64::from(x)) as f32
}
