//! Scalar math functions that generated code calls instead of inlining (`extern "C"`, f32 in
//! and out). Generated code calls them by their standard C names (`logf`, `tanhf`, `erff`,
//! `powf`), so that AOT objects need only libm. The JIT binds the same names to the functions
//! below, which evaluate in f64 and round once, like the reference interpreter; libm's versions
//! agree within an ulp or two (the AOT tests compare at atol 1e-5). `exp` is not here: it is
//! inlined as a polynomial (see `lower::math`), because softmax and sigmoid need it fast.

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
    erf(f64::from(x)) as f32
}

/// erf in f64: the Maclaurin series below 2.5, the continued fraction of erfc up to 6, and
/// ±1 beyond (erfc(6) < 3e-17); accurate far beyond f32 precision.
fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a < 2.5 {
        let a2 = a * a;
        let (mut term, mut sum) = (a, a);
        let mut n = 1.0;
        while n < 200.0 {
            term *= -a2 / n;
            let t = term / (2.0 * n + 1.0);
            sum += t;
            if t.abs() <= 1e-17 * sum.abs() {
                break;
            }
            n += 1.0;
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else if a < 6.0 {
        let mut f = a;
        for n in (1..=60).rev() {
            f = a + f64::from(n) / 2.0 / f;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
    } else {
        1.0
    };
    r.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        let cases = [
            (0.0, 0.0),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
            (3.0, 0.999_977_9),
        ];
        for (x, want) in cases {
            assert!(
                (dync_erff(x) - want).abs() < 2e-7,
                "erf({x}) = {}",
                dync_erff(x)
            );
            assert!((dync_erff(-x) + want).abs() < 2e-7);
        }
        assert!(dync_erff(f32::NAN).is_nan());
        assert_eq!(dync_erff(10.0), 1.0);
    }
}
