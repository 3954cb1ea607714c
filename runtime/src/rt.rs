//! Run-time services of compiled models: the 64-byte aligned arena, latency statistics, CPU
//! feature checks, the seeded random inputs shared with `dync run`, and the top-5 report of a
//! classifier output.
//!
//! The random generator is part of the user-visible contract: `dync run --seed S` and a compiled
//! executable run with `--seed S` produce the same inputs (SplitMix64; f32 standard normal by
//! Box–Muller; integers uniform in [0, 10); bools from the low bit), drawn input after input in
//! the model's input order, element after element in C order.

use crate::model::ARENA_ALIGN;
use crate::npy::{NpyArray, NpyDType, NpyData};
use std::alloc::Layout;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
#[error("cannot allocate {0} bytes")]
pub struct AllocError(pub usize);

/// A zero-initialized, 64-byte aligned block of memory (the workspace of generated code).
pub struct Arena {
    ptr: *mut u8,
    len: usize,
}

impl Arena {
    /// `len` bytes (a zero-length arena holds a dangling, aligned pointer).
    pub fn new(len: usize) -> Result<Arena, AllocError> {
        if len == 0 {
            return Ok(Arena {
                ptr: std::ptr::without_provenance_mut(ARENA_ALIGN),
                len,
            });
        }
        let layout = Layout::from_size_align(len, ARENA_ALIGN).map_err(|_| AllocError(len))?;
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(AllocError(len));
        }
        Ok(Arena { ptr, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: allocated in `new` with this size and alignment.
            unsafe {
                std::alloc::dealloc(
                    self.ptr,
                    Layout::from_size_align_unchecked(self.len, ARENA_ALIGN),
                )
            };
        }
    }
}

/// Latency statistics of a benchmark.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub iters: usize,
    pub median: Duration,
    pub min: Duration,
    pub p90: Duration,
    pub mean: Duration,
}

impl Stats {
    /// Statistics of `times` (None when empty). The median of an even count is the upper one;
    /// p90 is the nearest-rank 90th percentile.
    pub fn of(times: &[Duration]) -> Option<Stats> {
        let mut t = times.to_vec();
        t.sort_unstable();
        let n = t.len();
        let sum: Duration = t.iter().sum();
        Some(Stats {
            iters: n,
            median: *t.get(n / 2)?,
            min: *t.first()?,
            p90: *t.get((n * 9).div_ceil(10).saturating_sub(1))?,
            mean: sum / u32::try_from(n).ok()?,
        })
    }
}

/// The features of `list` (Rust's names, e.g. `avx2`) that this CPU lacks; names this build
/// cannot test are reported as missing too (better a clear refusal than an illegal
/// instruction).
pub fn missing_cpu_features(list: &[String]) -> Vec<String> {
    list.iter().filter(|f| !has_feature(f)).cloned().collect()
}

#[cfg(target_arch = "x86_64")]
fn has_feature(f: &str) -> bool {
    use std::arch::is_x86_feature_detected as d;
    match f {
        "sse3" => d!("sse3"),
        "ssse3" => d!("ssse3"),
        "sse4.1" => d!("sse4.1"),
        "sse4.2" => d!("sse4.2"),
        "popcnt" => d!("popcnt"),
        "avx" => d!("avx"),
        "avx2" => d!("avx2"),
        "fma" => d!("fma"),
        "bmi1" => d!("bmi1"),
        "bmi2" => d!("bmi2"),
        "lzcnt" => d!("lzcnt"),
        "cmpxchg16b" => d!("cmpxchg16b"),
        "avx512f" => d!("avx512f"),
        "avx512vl" => d!("avx512vl"),
        "avx512dq" => d!("avx512dq"),
        "avx512bitalg" => d!("avx512bitalg"),
        "avx512vbmi" => d!("avx512vbmi"),
        "avx512vnni" => d!("avx512vnni"),
        "avxvnni" => d!("avxvnni"),
        _ => false,
    }
}

#[cfg(target_arch = "aarch64")]
fn has_feature(f: &str) -> bool {
    use std::arch::is_aarch64_feature_detected as d;
    match f {
        "lse" => d!("lse"),
        "paca" => d!("paca"),
        "fp16" => d!("fp16"),
        _ => false,
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn has_feature(_: &str) -> bool {
    false
}

/// SplitMix64: a tiny, well-known generator; enough for reproducible test inputs.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal by Box–Muller.
    pub fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

/// A random array of `dtype` and `shape` drawn from `rng` (see the module contract).
pub fn random_array(
    dtype: NpyDType,
    shape: &[usize],
    rng: &mut SplitMix,
) -> Result<NpyArray, AllocError> {
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or(AllocError(usize::MAX))?;
    let bytes = n.saturating_mul(dtype.itemsize());
    fn vec<T>(n: usize, bytes: usize, f: impl FnMut() -> T) -> Result<Vec<T>, AllocError> {
        let mut v = Vec::new();
        v.try_reserve_exact(n).map_err(|_| AllocError(bytes))?;
        v.extend(std::iter::repeat_with(f).take(n));
        Ok(v)
    }
    let data = match dtype {
        NpyDType::F32 => NpyData::F32(vec(n, bytes, || rng.normal())?),
        NpyDType::I64 => NpyData::I64(vec(n, bytes, || (rng.next_u64() % 10) as i64)?),
        NpyDType::I32 => NpyData::I32(vec(n, bytes, || (rng.next_u64() % 10) as i32)?),
        NpyDType::Bool => NpyData::Bool(vec(n, bytes, || rng.next_u64() & 1 == 1)?),
    };
    Ok(NpyArray {
        shape: shape.to_vec(),
        data,
    })
}

/// The top-5 lines of a classifier output: for a `[B, K]` or `[B, K, 1, 1]` f32 array with
/// K > 1, one line per sample, `top-5 of "name"[b]: class (score), ...`; otherwise none.
pub fn top5_lines(name: &str, shape: &[usize], data: &[f32]) -> Vec<String> {
    let classes = match shape {
        [_, k] | [_, k, 1, 1] if *k > 1 => *k,
        _ => return Vec::new(),
    };
    data.chunks(classes)
        .enumerate()
        .map(|(b, row)| {
            let mut idx: Vec<usize> = (0..row.len()).collect();
            idx.sort_by(|&i, &j| row[j].total_cmp(&row[i]).then(i.cmp(&j)));
            let top: Vec<String> = idx
                .iter()
                .take(5)
                .map(|&i| format!("{i} ({:.4})", row[i]))
                .collect();
            format!("top-5 of {name:?}[{b}]: {}", top.join(", "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_pick_median_min_and_p90() {
        let ms = |v: u64| Duration::from_millis(v);
        let times: Vec<Duration> = (1..=10).rev().map(ms).collect();
        let s = Stats::of(&times).unwrap();
        assert_eq!((s.min, s.median, s.p90), (ms(1), ms(6), ms(9)));
        assert_eq!(s.mean, Duration::from_micros(5500));
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn arena_is_aligned_and_zeroed() {
        for len in [0, 64, 4096] {
            let mut a = Arena::new(len).unwrap();
            assert_eq!(a.as_mut_ptr() as usize % ARENA_ALIGN, 0);
            if len > 0 {
                // SAFETY: `len` bytes were allocated.
                let s = unsafe { std::slice::from_raw_parts(a.as_mut_ptr(), len) };
                assert!(s.iter().all(|&b| b == 0));
            }
        }
    }

    #[test]
    fn random_inputs_follow_the_seed() {
        let draw = |seed| {
            let mut r = SplitMix(seed);
            random_array(NpyDType::F32, &[2, 3], &mut r).unwrap()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let NpyData::F32(v) = draw(0).data else {
            panic!("f32 expected")
        };
        assert!(v.iter().all(|x| x.is_finite() && x.abs() < 10.0));
        let mut r = SplitMix(1);
        let NpyData::I64(v) = random_array(NpyDType::I64, &[100], &mut r).unwrap().data else {
            panic!("i64 expected")
        };
        assert!(v.iter().all(|&x| (0..10).contains(&x)));
    }

    #[test]
    fn top5_ranks_scores_and_ignores_non_classifiers() {
        let lines = top5_lines("y", &[1, 6], &[0.1, 0.9, 0.3, 0.9, -1.0, 0.5]);
        assert_eq!(
            lines,
            ["top-5 of \"y\"[0]: 1 (0.9000), 3 (0.9000), 5 (0.5000), 2 (0.3000), 0 (0.1000)"]
        );
        assert!(top5_lines("y", &[1, 1], &[1.0]).is_empty());
        assert!(top5_lines("y", &[1, 3, 4], &[0.0; 12]).is_empty());
    }
}
