//! The kernel-mixing micro-kernel: a dynamic convolution's per-image kernels `Σₑ cₑ · bankₑ`,
//! written straight into the GEMM tile's packed `A` layout (rows of [`M0`] floats).
//!
//! At batch 1 a dyn_conv's mixing streams its whole bank (g kernels per output channel) from
//! memory for one use: CondConv's 7×7 layers read 3.5 MB of bank for a 0.1 ms GEMM, ResNet's
//! 3×3 256-channel dyn_convs 14 MB. The compiler stores banks in the order the mixing reads
//! them, each step's experts side by side (`compiler/codegen/src/pack.rs`: `expert_ld = M0`,
//! `step_ld = experts·M0`), so one call reads one contiguous block, and the caller's next call
//! the block after it (`next`), which the x86 kernel prefetches meanwhile: a read loop of that
//! pattern streamed 48 GB/s from memory here, against 12 GB/s with each expert's steps in a
//! block of its own (one 4 KB page per expert and block, too short for the prefetchers) and 34
//! GB/s without the prefetch. The AVX2 kernel mixes one step's `M0 = 8` lanes per
//! instruction, the AVX-512 one two steps (their rows loaded as halves of a vector) for up to
//! four images from each load of the bank, which matters when several images are mixed
//! (batch 8: the instructions, not memory, bound it; CondConv 8 experts' 7×7 dyn_convs at
//! batch 8 took 23 % less time than with a load per image). Generated code mixes in 4-lane
//! Cranelift code.
//!
//! # Contract
//! `mix_f32(steps, bank, expert_ld, step_ld, experts, coefs, images, dst, dst_ld, next)`
//! ([`MixF32Fn`], a field of [`super::UkernelTable`]): for `i < images`, `s < steps`, `l < M0`,
//!
//! ```text
//! acc = +0.0
//! acc = fma(coefs[(i·experts + e)·M0 + l], bank[e·expert_ld + s·step_ld + l], acc)   for e = 0, 1, …
//! dst[i·dst_ld + s·M0 + l] = acc
//! ```
//!
//! with `fma` the fused multiply-add (one rounding), experts in increasing order: every
//! variant computes the same bits as each other and as the compiler's Cranelift mixing
//! (`compiler/codegen/src/lower/conv_gemm.rs`, `Mix::step`), which performs the same
//! operations. Nothing else is read or written; `steps == 0` or `images == 0` does nothing.
//! `next` is a hint, never dereferenced: where the caller's next call's `bank` will be (null
//! for none); variants may prefetch the elements this call reads, offset to it.
//! Reentrant, no allocation, no global state; no alignment needed beyond `f32`'s.

use super::GEMM_F32_M0 as M0;

/// The mixing kernel's type; see the module documentation.
///
/// # Safety
/// `bank` is readable for `(experts − 1)·expert_ld + (steps − 1)·step_ld + M0` floats (when
/// `experts > 0` and `steps > 0`), `coefs` for `images·experts·M0`, `dst` writable for
/// `(images − 1)·dst_ld + steps·M0` (when `images > 0`); `dst` overlaps neither.
pub type MixF32Fn = unsafe extern "C" fn(
    steps: usize,
    bank: *const f32,
    expert_ld: usize,
    step_ld: usize,
    experts: usize,
    coefs: *const f32,
    images: usize,
    dst: *mut f32,
    dst_ld: usize,
    next: *const f32,
);

/// The portable variant (and the reference of the others).
///
/// # Safety
/// As [`MixF32Fn`].
#[allow(clippy::too_many_arguments)] // the C signature of the contract
pub unsafe extern "C" fn mix_generic(
    steps: usize,
    bank: *const f32,
    expert_ld: usize,
    step_ld: usize,
    experts: usize,
    coefs: *const f32,
    images: usize,
    dst: *mut f32,
    dst_ld: usize,
    _next: *const f32,
) {
    for i in 0..images {
        for s in 0..steps {
            for l in 0..M0 {
                let mut acc = 0.0f32;
                for e in 0..experts {
                    // SAFETY: the elements the contract names.
                    unsafe {
                        let c = *coefs.add((i * experts + e) * M0 + l);
                        acc = c.mul_add(*bank.add(e * expert_ld + s * step_ld + l), acc);
                    }
                }
                // SAFETY: as above.
                unsafe { *dst.add(i * dst_ld + s * M0 + l) = acc };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::M0;
    use std::arch::x86_64::*;

    /// Experts whose coefficient vectors the x86 kernel keeps in an array; more take the
    /// portable loop (no published dynamic conv has more than 8).
    const MAX_EXPERTS: usize = 16;
    /// Steps mixed at a time (independent accumulators).
    const U: usize = 4;
    /// Images the AVX-512 kernel mixes from each load of the bank ([`group16`]: `GROUP · U`
    /// accumulators and `U` bank vectors fit the 32 vector registers).
    const GROUP: usize = 4;

    /// # Safety
    /// As [`super::MixF32Fn`], on a CPU with AVX2 and FMA.
    #[allow(clippy::too_many_arguments)] // the C signature of the contract
    pub(in crate::ukernel) unsafe extern "C" fn mix_avx2(
        steps: usize,
        bank: *const f32,
        expert_ld: usize,
        step_ld: usize,
        experts: usize,
        coefs: *const f32,
        images: usize,
        dst: *mut f32,
        dst_ld: usize,
        next: *const f32,
    ) {
        // SAFETY: the same contract; only reachable when the CPU has AVX2 and FMA.
        unsafe {
            if experts > MAX_EXPERTS {
                super::mix_generic(
                    steps, bank, expert_ld, step_ld, experts, coefs, images, dst, dst_ld, next,
                )
            } else {
                avx2(
                    steps,
                    (bank, expert_ld, step_ld, experts),
                    coefs,
                    images,
                    (dst, dst_ld),
                    next,
                )
            }
        }
    }

    /// # Safety
    /// As [`super::MixF32Fn`], on a CPU with AVX-512F.
    #[allow(clippy::too_many_arguments)] // the C signature of the contract
    pub(in crate::ukernel) unsafe extern "C" fn mix_avx512(
        steps: usize,
        bank: *const f32,
        expert_ld: usize,
        step_ld: usize,
        experts: usize,
        coefs: *const f32,
        images: usize,
        dst: *mut f32,
        dst_ld: usize,
        next: *const f32,
    ) {
        // SAFETY: the same contract; only reachable when the CPU has AVX-512F (which implies
        // AVX2 and FMA). One image is bound by memory, and the 8-lane loop streams it faster
        // (dy-resnet18 9.46 → 9.06 ms at one thread); several are bound by the FMAs. The
        // 8-lane kernel mixes the remaining steps (and everything past `MAX_EXPERTS`).
        unsafe {
            let done = if images > 1 && experts <= MAX_EXPERTS {
                let bank = (bank, expert_ld, step_ld, experts);
                avx512(steps, bank, coefs, images, (dst, dst_ld), next)
            } else {
                0
            };
            mix_avx2(
                steps - done,
                bank.add(done * step_ld),
                expert_ld,
                step_ld,
                experts,
                coefs,
                images,
                dst.add(done * M0),
                dst_ld,
                next.wrapping_add(done * step_ld),
            )
        }
    }

    /// The first `steps − steps mod 2U` steps, two per 16-lane vector (each expert's rows of
    /// the two steps loaded as halves), [`U`] vectors at a time, for groups of up to
    /// [`GROUP`] images ([`group16`]); prefetching as [`avx2`] during the first group; returns
    /// how many steps it mixed. At batch 8 the mixing is bound by its instructions, not by
    /// memory.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn avx512(
        steps: usize,
        bank: (*const f32, usize, usize, usize),
        coefs: *const f32,
        images: usize,
        (dst, dld): (*mut f32, usize),
        next: *const f32,
    ) -> usize {
        let done = steps - steps % (2 * U);
        let experts = bank.3;
        for first in (0..images).step_by(GROUP) {
            let next = if first == 0 { next } else { std::ptr::null() };
            let coefs = coefs.wrapping_add(first * experts * M0);
            let dst = (dst.wrapping_add(first * dld), dld);
            // SAFETY: images first.. of the caller's coefficients and destinations.
            unsafe {
                match images - first {
                    1 => group16::<1>(done, bank, coefs, dst, next),
                    2 => group16::<2>(done, bank, coefs, dst, next),
                    3 => group16::<3>(done, bank, coefs, dst, next),
                    _ => group16::<GROUP>(done, bank, coefs, dst, next),
                }
            }
        }
        done
    }

    /// [`avx512`] for `N` images: each expert's two-step vectors are loaded once and feed
    /// every image's accumulators (each still sums the experts in order, so the bits do not
    /// change), whose coefficient vectors come from a table on the stack. Loading the bank
    /// rows once per image instead (two loads and an insert per FMA) ran slower than the 8-lane
    /// kernel at batch 8: 30 against 33 G mixed elements a second over a bank block in L2 at
    /// 8 experts and 8 images.
    ///
    /// # Safety
    /// As [`avx512`], with `N` images at `coefs` and `dst`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn group16<const N: usize>(
        done: usize,
        (bank, eld, sld, experts): (*const f32, usize, usize, usize),
        coefs: *const f32,
        (dst, dld): (*mut f32, usize),
        next: *const f32,
    ) {
        let prefetch = !next.is_null();
        let mut c = [[_mm512_setzero_ps(); MAX_EXPERTS]; N];
        for (i, ci) in c.iter_mut().enumerate() {
            for (e, ce) in ci.iter_mut().enumerate().take(experts) {
                // SAFETY: coefs[(i·experts + e)·M0 ..][..M0], duplicated into both halves.
                *ce = unsafe {
                    let row = coefs.add((i * experts + e) * M0);
                    halves(row, row)
                };
            }
        }
        // SAFETY: steps s..s + 2U < done are within the bank's steps and each image's
        // destination; prefetches never fault.
        for s in (0..done).step_by(2 * U) {
            let mut acc = [[_mm512_setzero_ps(); U]; N];
            for e in 0..experts {
                let mut b = [_mm512_setzero_ps(); U];
                for (u, v) in b.iter_mut().enumerate() {
                    let at = e * eld + (s + 2 * u) * sld;
                    if prefetch {
                        _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(at).cast());
                        _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(at + sld).cast());
                    }
                    *v = unsafe { halves(bank.add(at), bank.add(at + sld)) };
                }
                for (ai, ci) in acc.iter_mut().zip(&c) {
                    for (a, &v) in ai.iter_mut().zip(&b) {
                        *a = _mm512_fmadd_ps(ci[e], v, *a);
                    }
                }
            }
            for (i, ai) in acc.into_iter().enumerate() {
                for (u, a) in ai.into_iter().enumerate() {
                    unsafe { _mm512_storeu_ps(dst.add(i * dld + (s + 2 * u) * M0), a) };
                }
            }
        }
    }

    /// The 8 floats at `lo`, then the 8 at `hi`, as 16 lanes (AVX-512F only: a 256-bit insert
    /// of doubles).
    ///
    /// # Safety
    /// `lo` and `hi` are readable for 8 floats each.
    #[inline(always)]
    unsafe fn halves(lo: *const f32, hi: *const f32) -> __m512 {
        // SAFETY: the caller's; reachable only from `avx512`, on a CPU with AVX-512F.
        unsafe {
            let hi = _mm256_castps_pd(_mm256_loadu_ps(hi));
            let lo = _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(lo)));
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(lo, hi))
        }
    }

    /// One step (8 floats) per vector, [`U`] steps at a time; the first image's pass
    /// prefetches every line it reads at the same place from `next` (the others repeat this
    /// call's lines from L1).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(
        steps: usize,
        (bank, eld, sld, experts): (*const f32, usize, usize, usize),
        coefs: *const f32,
        images: usize,
        (dst, dld): (*mut f32, usize),
        next: *const f32,
    ) {
        let prefetch = !next.is_null();
        for i in 0..images {
            let mut c = [_mm256_setzero_ps(); MAX_EXPERTS];
            for (e, ce) in c.iter_mut().enumerate().take(experts) {
                // SAFETY: coefs[(i·experts + e)·M0 ..][..M0].
                *ce = unsafe { _mm256_loadu_ps(coefs.add((i * experts + e) * M0)) };
            }
            let d = dst.wrapping_add(i * dld);
            let full = steps - steps % U;
            // SAFETY (all): steps s..s + n are within the bank's `steps` steps and the image's
            // destination; prefetches never fault.
            for s in (0..full).step_by(U) {
                unsafe {
                    group::<U>(
                        s,
                        (bank, eld, sld, experts),
                        &c,
                        (d, i == 0 && prefetch, next),
                    )
                };
            }
            // The last steps one by one (a run of them with a variable count, whose stores
            // LLVM turns into a call of memcpy through the stack: 5 % of dy-resnet50 at one
            // thread when every group went that way).
            for s in full..steps {
                unsafe {
                    group::<1>(
                        s,
                        (bank, eld, sld, experts),
                        &c,
                        (d, i == 0 && prefetch, next),
                    )
                };
            }
        }
    }

    /// Steps `s .. s + N` of one image into `d`: each expert's row of each step times its
    /// coefficient vector, summed over the experts in order; prefetching `next`'s lines at the
    /// same places when `prefetch`.
    ///
    /// # Safety
    /// The steps are within the bank and the image's destination.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn group<const N: usize>(
        s: usize,
        (bank, eld, sld, experts): (*const f32, usize, usize, usize),
        c: &[__m256; MAX_EXPERTS],
        (d, prefetch, next): (*mut f32, bool, *const f32),
    ) {
        let mut acc = [_mm256_setzero_ps(); N];
        for (e, &ce) in c.iter().enumerate().take(experts) {
            for (u, a) in acc.iter_mut().enumerate() {
                let at = e * eld + (s + u) * sld;
                if prefetch {
                    _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(at).cast());
                }
                // SAFETY: the caller's.
                *a = _mm256_fmadd_ps(ce, unsafe { _mm256_loadu_ps(bank.add(at)) }, *a);
            }
        }
        for (u, a) in acc.into_iter().enumerate() {
            // SAFETY: the caller's.
            unsafe { _mm256_storeu_ps(d.add((s + u) * M0), a) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MixF32Fn, M0};
    use crate::rt::SplitMix;
    use crate::ukernel::{same_bits, variants};

    /// Every variant this CPU runs against the portable one, bit for bit, in both bank layouts,
    /// with guards around each destination and NaN in the bank's gaps (never read).
    #[test]
    fn variants_match_the_portable_kernel_bit_for_bit() {
        let mut rng = SplitMix(7);
        let kernels: Vec<(&str, MixF32Fn)> = variants(|t| Some(t.mix_f32));
        let layouts = |experts: usize, steps: usize| {
            let gap = 5;
            // Each expert's steps together, and each step's experts side by side, with gaps.
            [(steps * M0 + gap, M0), (M0, experts * M0 + gap)]
        };
        for (experts, steps, (eld, sld)) in [0, 1, 4, 6, 8, 17].into_iter().flat_map(|e| {
            [0, 1, 2, 3, 7, 8, 9, 64, 65]
                .into_iter()
                .flat_map(move |s| layouts(e, s).map(|l| (e, s, l)))
        }) {
            for images in [1, 2, 3, 4, 5, 8] {
                let len = experts.max(1) * eld + steps.max(1) * sld;
                let mut bank = vec![f32::NAN; len];
                for e in 0..experts {
                    for s in 0..steps {
                        for l in 0..M0 {
                            bank[e * eld + s * sld + l] = rng.normal();
                        }
                    }
                }
                let coefs: Vec<f32> = (0..images * experts * M0).map(|_| rng.normal()).collect();
                let dld = steps * M0 + 3;
                // A hint past the bank's end (prefetched, never read) and none.
                let run = |f: MixF32Fn, next: *const f32| {
                    let mut dst = vec![-7.25e30f32; images * dld + 3];
                    // SAFETY: the buffers are as large as the contract requires.
                    unsafe {
                        f(
                            steps,
                            bank.as_ptr(),
                            eld,
                            sld,
                            experts,
                            coefs.as_ptr(),
                            images,
                            dst.as_mut_ptr(),
                            dld,
                            next,
                        )
                    };
                    dst
                };
                let past = bank.as_ptr().wrapping_add(bank.len());
                let want = run(super::mix_generic, std::ptr::null());
                for (j, x) in want.iter().enumerate() {
                    let written = j < images * dld && j % dld < steps * M0;
                    assert!(written || *x == -7.25e30, "element {j} was written");
                }
                for i in 0..images {
                    for s in 0..steps {
                        for l in 0..M0 {
                            let mut r = 0f64;
                            for e in 0..experts {
                                r += f64::from(coefs[(i * experts + e) * M0 + l])
                                    * f64::from(bank[e * eld + s * sld + l]);
                            }
                            let got = f64::from(want[i * dld + s * M0 + l]);
                            assert!((got - r).abs() <= 1e-5 * (1.0 + r.abs()), "{got} vs {r}");
                        }
                    }
                }
                for ((name, f), next) in kernels
                    .iter()
                    .flat_map(|k| [(k, std::ptr::null()), (k, past)])
                {
                    let got = run(*f, next);
                    let same = same_bits(&got, &want);
                    assert!(
                        same,
                        "{name}: experts {experts}, steps {steps}, images {images}"
                    );
                }
            }
        }
    }
}
