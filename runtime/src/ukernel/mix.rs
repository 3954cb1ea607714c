//! The kernel-mixing micro-kernel: a dynamic convolution's per-image kernels `Σₑ cₑ · bankₑ`,
//! written straight into the GEMM tile's packed `A` layout (rows of [`M0`] floats).
//!
//! At batch 1 a dyn_conv's mixing streams its whole bank (g kernels per output channel) from
//! memory for one use: CondConv's 7×7 layers read 3.5 MB of bank for a 0.1 ms GEMM, ResNet's
//! 3×3 256-channel dyn_convs 14 MB. The compiler stores banks in the order the mixing reads
//! them, each step's experts side by side (`compiler/codegen/src/pack.rs`: `expert_ld = M0`,
//! `step_ld = experts·M0`), so one call reads one contiguous block, and the caller's next call
//! the block after it, which the hardware prefetchers follow: a read loop of that pattern
//! streamed 48 GB/s from memory on an earlier machine, against 12 GB/s with each expert's
//! steps in a block of its own (one 4 KB page per expert and block, too short for the
//! prefetchers). (The kernels used to prefetch the caller's next block into L1 as they read
//! this one, a hint argument: on this Sapphire Rapids VM that made every batch-1 dynamic
//! network 1–6 % slower, CondConv 4 experts 6.52 → 6.20 ms without it, in alternating runs.)
//! Each output sums its even experts and its odd ones in two
//! chains, then adds them: the AVX-512 kernel then mixes a step's two adjacent experts (16
//! floats, one load) per FMA, each bank vector for up to four images, half the instructions
//! of one expert's 8 lanes per FMA, which bound the mixing at batch 8 (CondConv 8 experts'
//! 7×7 dyn_convs at batch 8 took 23 % less time than with a load per image) and, at batch 1,
//! held the tiles of a fused dyn_conv back from the next bank block. The AVX2 kernel mixes
//! one expert's `M0 = 8` lanes per instruction. Generated code mixes in 4-lane Cranelift code.
//!
//! # Contract
//! `mix_f32(steps, bank, expert_ld, step_ld, experts, coefs, images, dst, dst_ld)`
//! ([`MixF32Fn`], a field of [`super::UkernelTable`]): for `i < images`, `s < steps`, `l < M0`,
//!
//! ```text
//! even = +0.0, odd = +0.0
//! even = fma(coefs[(i·experts + e)·M0 + l], bank[e·expert_ld + s·step_ld + l], even)   for e = 0, 2, 4, …
//! odd  = fma(coefs[(i·experts + e)·M0 + l], bank[e·expert_ld + s·step_ld + l], odd)    for e = 1, 3, 5, …
//! dst[i·dst_ld + s·M0 + l] = even + odd
//! ```
//!
//! with `fma` the fused multiply-add (one rounding), each chain's experts in increasing order:
//! every variant computes the same bits as each other and as the compiler's Cranelift mixing
//! (`compiler/codegen/src/lower/conv_gemm.rs`, `Mix::step`), which performs the same
//! operations. Nothing else is read or written; `steps == 0` or `images == 0` does nothing.
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
);

/// One output of the contract: experts `e` of coefficient `c[e·M0]` and bank element
/// `b[e·eld]`, summed in the even and the odd chain, then added. (Out of line: the portable
/// variant's loops, vectorised, cost the runtime kilobytes it must not grow by.)
///
/// # Safety
/// The `experts` elements of each are readable.
#[inline(never)]
unsafe fn chains(c: *const f32, b: *const f32, eld: usize, experts: usize) -> f32 {
    let mut acc = [0.0f32; 2];
    for e in 0..experts {
        // SAFETY: the caller's.
        acc[e % 2] = unsafe { (*c.add(e * M0)).mul_add(*b.add(e * eld), acc[e % 2]) };
    }
    acc[0] + acc[1]
}

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
) {
    for i in 0..images {
        for s in 0..steps {
            for l in 0..M0 {
                let (c, b) = (
                    coefs.wrapping_add(i * experts * M0 + l),
                    bank.wrapping_add(s * step_ld + l),
                );
                // SAFETY: the elements the contract names.
                unsafe { *dst.add(i * dst_ld + s * M0 + l) = chains(c, b, expert_ld, experts) };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::M0;
    use std::arch::x86_64::*;

    /// Experts whose coefficient vectors the x86 kernels keep in arrays; more take the
    /// portable loop (no published dynamic conv has more than 8).
    const MAX_EXPERTS: usize = 16;
    /// Steps [`pairs`] mixes at a time (independent accumulators).
    const U: usize = 4;

    /// Images the AVX-512 kernel mixes from each load of the bank ([`group16`]).
    const GROUP: usize = 4;
    /// Vectors of two steps each [`group16`] mixes at a time: its `2 · GROUP · V`
    /// accumulators are enough independent chains at `V = 1` (72 against 64 G elements a
    /// second at 2, and half the code).
    const V: usize = 1;

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
    ) {
        // SAFETY: the same contract; only reachable when the CPU has AVX2 and FMA.
        unsafe {
            if experts > MAX_EXPERTS {
                super::mix_generic(
                    steps, bank, expert_ld, step_ld, experts, coefs, images, dst, dst_ld,
                )
            } else {
                avx2(
                    steps,
                    (bank, expert_ld, step_ld, experts),
                    coefs,
                    images,
                    (dst, dst_ld),
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
    ) {
        if experts > MAX_EXPERTS {
            // SAFETY: the same contract.
            unsafe {
                super::mix_generic(
                    steps, bank, expert_ld, step_ld, experts, coefs, images, dst, dst_ld,
                )
            };
            return;
        }
        let bank = (bank, expert_ld, step_ld, experts);
        // Groups of `GROUP` images two steps per vector, the steps past a multiple of `2V` by
        // the 8-lane kernel; the other images (all of them below `GROUP`) one by one. (One
        // instance of each: the runtime's code must stay small.)
        let (done, full) = (steps - steps % (2 * V), images - images % GROUP);
        for first in (0..full).step_by(GROUP) {
            let coefs = coefs.wrapping_add(first * experts * M0);
            let dst = (dst.wrapping_add(first * dst_ld), dst_ld);
            // SAFETY: images first.. of the caller's coefficients and destinations; the CPU
            // has AVX-512F.
            unsafe { group16(done, bank, coefs, dst) };
        }
        // SAFETY (all): the contract's steps and images; the CPU has AVX-512F (which implies
        // AVX2 and FMA). An empty remainder calls nothing (a fused dyn_conv calls this kernel
        // for every panel and chunk).
        unsafe {
            if full > 0 && steps > done {
                let bank = (
                    bank.0.wrapping_add(done * step_ld),
                    expert_ld,
                    step_ld,
                    experts,
                );
                let dst = (dst.wrapping_add(done * M0), dst_ld);
                avx2(steps - done, bank, coefs, full, dst);
            }
            for i in full..images {
                let (coefs, dst) = (
                    coefs.wrapping_add(i * experts * M0),
                    dst.wrapping_add(i * dst_ld),
                );
                pairs(steps, bank, coefs, dst);
            }
        }
    }

    /// [`GROUP`] images, two steps per 16-lane vector (each expert's rows of the two steps
    /// loaded as halves), [`V`] vectors at a time, each bank vector feeding the even or odd
    /// chain of every image, whose coefficient vectors come from a table on the stack; the
    /// chains' sum is the two steps' rows. Loading the bank once per image instead (two loads
    /// and an insert per FMA) ran slower than the 8-lane kernel at batch 8: 30 against 33 G
    /// mixed elements a second over a bank block in L2 at 8 experts and 8 images; this runs
    /// 73–76 G (bench `mix_f32_images`).
    ///
    /// # Safety
    /// As [`super::MixF32Fn`] for [`GROUP`] images, at most [`MAX_EXPERTS`] experts and
    /// `done` steps, a multiple of `2V`; AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn group16(
        done: usize,
        (bank, eld, sld, experts): (*const f32, usize, usize, usize),
        coefs: *const f32,
        (dst, dld): (*mut f32, usize),
    ) {
        let mut c = [[_mm512_setzero_ps(); MAX_EXPERTS]; GROUP];
        for (i, ci) in c.iter_mut().enumerate() {
            for (e, ce) in ci.iter_mut().enumerate().take(experts) {
                // SAFETY: coefs[(i·experts + e)·M0 ..][..M0], duplicated into both halves.
                *ce = unsafe {
                    let row = coefs.add((i * experts + e) * M0);
                    halves(row, row)
                };
            }
        }
        // SAFETY: steps s..s + 2V < done are within the bank's steps and each image's
        // destination.
        for s in (0..done).step_by(2 * V) {
            let (mut even, mut odd) = (
                [[_mm512_setzero_ps(); V]; GROUP],
                [[_mm512_setzero_ps(); V]; GROUP],
            );
            // Expert e into the chains `acc` (no run-time index picks one: they stay in
            // registers).
            let fma = |acc: &mut [[__m512; V]; GROUP], e: usize| {
                let mut b = [_mm512_setzero_ps(); V];
                for (u, v) in b.iter_mut().enumerate() {
                    let at = e * eld + (s + 2 * u) * sld;
                    // SAFETY: expert e's rows of steps s + 2u and s + 2u + 1.
                    *v = unsafe { halves(bank.add(at), bank.add(at + sld)) };
                }
                for (ai, ci) in acc.iter_mut().zip(&c) {
                    for (a, &v) in ai.iter_mut().zip(&b) {
                        *a = _mm512_fmadd_ps(ci[e], v, *a);
                    }
                }
            };
            for e in (0..experts).step_by(2) {
                fma(&mut even, e);
                if e + 1 < experts {
                    fma(&mut odd, e + 1);
                }
            }
            for (i, (ei, oi)) in even.into_iter().zip(odd).enumerate() {
                for (u, (e, o)) in ei.into_iter().zip(oi).enumerate() {
                    // SAFETY: image i's rows of steps s + 2u and s + 2u + 1.
                    unsafe {
                        _mm512_storeu_ps(dst.add(i * dld + (s + 2 * u) * M0), _mm512_add_ps(e, o))
                    };
                }
            }
        }
    }

    /// One image, a step per 16-lane vector: lanes `0..8` sum the even experts, lanes
    /// `8..16` the odd ones, each pair of adjacent experts one FMA of one load (two halves
    /// when the experts are not adjacent, `eld ≠ M0`); an odd last expert joins the even chain
    /// in 8 lanes, and the halves' sum is the step's row. [`U`] steps at a time, then one by
    /// one. Half the loads and
    /// FMAs of the 8-lane kernel: a 3.5 MB bank of 4 experts streamed at 74 against 62 GiB/s
    /// (bench `mix_f32`). (Four steps at a time: at two, CondConv 4 experts' 7×7 rows were
    /// 3 % slower.)
    ///
    /// # Safety
    /// As [`super::MixF32Fn`] for one image and at most [`MAX_EXPERTS`] experts; AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn pairs(
        steps: usize,
        (bank, eld, sld, experts): (*const f32, usize, usize, usize),
        coefs: *const f32,
        dst: *mut f32,
    ) {
        let row = |e: usize| coefs.wrapping_add(e * M0);
        let mut c = [_mm512_setzero_ps(); MAX_EXPERTS / 2];
        for (p, cp) in c.iter_mut().enumerate().take(experts / 2) {
            // SAFETY: coefficient rows 2p and 2p + 1.
            *cp = unsafe { halves(row(2 * p), row(2 * p + 1)) };
        }
        let last = if experts % 2 == 1 {
            // SAFETY: the last expert's coefficient row.
            unsafe { _mm256_loadu_ps(row(experts - 1)) }
        } else {
            _mm256_setzero_ps()
        };
        let full = steps - steps % U;
        let args = (bank, eld, sld, experts);
        // SAFETY: steps s..s + U (or s) are within the bank and the destination.
        unsafe {
            for s in (0..full).step_by(U) {
                pair_steps::<U>(s, args, (&c, last), dst);
            }
            for s in full..steps {
                pair_steps::<1>(s, args, (&c, last), dst);
            }
        }
    }

    /// Steps `s .. s + W` of [`pairs`].
    ///
    /// # Safety
    /// The steps are within the bank and the destination; AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn pair_steps<const W: usize>(
        s: usize,
        (bank, eld, sld, experts): (*const f32, usize, usize, usize),
        (c, last): (&[__m512; MAX_EXPERTS / 2], __m256),
        dst: *mut f32,
    ) {
        let mut acc = [_mm512_setzero_ps(); W];
        for (p, &cp) in c.iter().enumerate().take(experts / 2) {
            for (u, a) in acc.iter_mut().enumerate() {
                let at = 2 * p * eld + (s + u) * sld;
                // SAFETY: experts 2p and 2p + 1 of step s + u.
                let v = unsafe {
                    if eld == M0 {
                        _mm512_loadu_ps(bank.add(at))
                    } else {
                        halves(bank.add(at), bank.add(at + eld))
                    }
                };
                *a = _mm512_fmadd_ps(cp, v, *a);
            }
        }
        for (u, a) in acc.into_iter().enumerate() {
            let mut even = _mm512_castps512_ps256(a);
            let odd = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
            if experts % 2 == 1 {
                let at = (experts - 1) * eld + (s + u) * sld;
                // SAFETY: the last expert of step s + u.
                even = _mm256_fmadd_ps(last, unsafe { _mm256_loadu_ps(bank.add(at)) }, even);
            }
            // SAFETY: the destination's row of step s + u.
            unsafe { _mm256_storeu_ps(dst.add((s + u) * M0), _mm256_add_ps(even, odd)) };
        }
    }

    /// The 8 floats at `lo`, then the 8 at `hi`, as 16 lanes (AVX-512F only: a 256-bit insert
    /// of doubles).
    ///
    /// # Safety
    /// `lo` and `hi` are readable for 8 floats each.
    #[inline(always)]
    unsafe fn halves(lo: *const f32, hi: *const f32) -> __m512 {
        // SAFETY: the caller's; reachable only from `pairs`, on a CPU with AVX-512F.
        unsafe {
            let hi = _mm256_castps_pd(_mm256_loadu_ps(hi));
            let lo = _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(lo)));
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(lo, hi))
        }
    }

    /// One step (8 floats) per vector, one step at a time.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(
        steps: usize,
        (bank, eld, sld, experts): (*const f32, usize, usize, usize),
        coefs: *const f32,
        images: usize,
        (dst, dld): (*mut f32, usize),
    ) {
        for i in 0..images {
            let mut c = [_mm256_setzero_ps(); MAX_EXPERTS];
            for (e, ce) in c.iter_mut().enumerate().take(experts) {
                // SAFETY: coefs[(i·experts + e)·M0 ..][..M0].
                *ce = unsafe { _mm256_loadu_ps(coefs.add((i * experts + e) * M0)) };
            }
            let d = dst.wrapping_add(i * dld);
            // SAFETY: step s is within the bank's `steps` steps and the image's destination.
            // (One step at a time: this kernel mixes AVX2 machines'
            // banks and the AVX-512 kernels' last steps, and the runtime's code must stay
            // small.)
            for s in 0..steps {
                unsafe { step(s, (bank, eld, sld, experts), &c, d) };
            }
        }
    }

    /// Step `s` of one image into `d`: each expert's row times its coefficient vector, the
    /// even and the odd experts summed in two chains in order, then added.
    ///
    /// # Safety
    /// The step is within the bank and the image's destination.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn step(
        s: usize,
        (bank, eld, sld, experts): (*const f32, usize, usize, usize),
        c: &[__m256; MAX_EXPERTS],
        d: *mut f32,
    ) {
        let mut acc = [_mm256_setzero_ps(); 2];
        // Expert e into chain `h` (a constant: the chains stay in registers).
        let mut fma = |h: usize, e: usize| {
            let at = e * eld + s * sld;
            // SAFETY: the caller's.
            acc[h] = _mm256_fmadd_ps(c[e], unsafe { _mm256_loadu_ps(bank.add(at)) }, acc[h]);
        };
        for e in (0..experts).step_by(2) {
            fma(0, e);
            if e + 1 < experts {
                fma(1, e + 1);
            }
        }
        // SAFETY: the caller's.
        unsafe { _mm256_storeu_ps(d.add(s * M0), _mm256_add_ps(acc[0], acc[1])) };
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
                let run = |f: MixF32Fn| {
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
                        )
                    };
                    dst
                };
                let want = run(super::mix_generic);
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
                for (name, f) in &kernels {
                    let got = run(*f);
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
