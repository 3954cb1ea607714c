//! The kernel-mixing micro-kernel: a dynamic convolution's per-image kernels `Σₑ cₑ · bankₑ`,
//! written straight into the GEMM tile's packed `A` layout (rows of [`M0`] floats).
//!
//! At batch 1 a dyn_conv's mixing streams its whole bank (g kernels per output channel) from
//! memory for one use: CondConv's 7×7 layers read 3.5 MB of bank for a 0.1 ms GEMM. Generated
//! code mixes in 4-lane Cranelift code that waits on each load; these kernels mix 16 (AVX-512)
//! or 8 (AVX2) lanes per instruction, and prefetch the bank of the caller's next call (`next`)
//! while they mix this one: a fused dyn_conv (7×7 maps) mixes a chunk of one channel panel,
//! runs the GEMM tile on it, then mixes the same chunk of the next panel, 73 KB further in
//! each expert (ResNet's 3×3 256-channel convs), so neither hardware prefetchers nor a fixed
//! distance ahead find it; prefetched one call ahead, it arrives during the GEMM.
//!
//! # Contract
//! `mix_f32(steps, bank, expert_ld, experts, coefs, images, dst, dst_ld, next)` ([`MixF32Fn`],
//! a field of [`super::UkernelTable`]): for `i < images`, `s < steps`, `l < M0`,
//!
//! ```text
//! acc = +0.0
//! acc = fma(coefs[(i·experts + e)·M0 + l], bank[e·expert_ld + s·M0 + l], acc)   for e = 0, 1, …
//! dst[i·dst_ld + s·M0 + l] = acc
//! ```
//!
//! with `fma` the fused multiply-add (one rounding), experts in increasing order: every
//! variant computes the same bits as each other and as the compiler's Cranelift mixing
//! (`compiler/codegen/src/lower/conv_gemm.rs`, `Mix::step`), which performs the same
//! operations. Nothing else is read or written; `steps == 0` or `images == 0` does nothing.
//! `next` is a hint, never dereferenced: where the caller's next call's `bank` will be (null
//! for none); variants may prefetch `steps · M0` floats of each expert from it.
//! Reentrant, no allocation, no global state; no alignment needed beyond `f32`'s.

use super::GEMM_F32_M0 as M0;

/// The mixing kernel's type; see the module documentation.
///
/// # Safety
/// `bank` is readable for `(experts − 1)·expert_ld + steps·M0` floats (when `experts > 0`),
/// `coefs` for `images·experts·M0`, `dst` writable for `(images − 1)·dst_ld + steps·M0`
/// (when `images > 0`); `dst` overlaps neither.
pub type MixF32Fn = unsafe extern "C" fn(
    steps: usize,
    bank: *const f32,
    expert_ld: usize,
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
                        acc = c.mul_add(*bank.add(e * expert_ld + s * M0 + l), acc);
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

    /// Experts whose coefficient vectors the x86 kernels keep on the stack; more take the
    /// portable loop (no published dynamic conv has more than 8).
    const MAX_EXPERTS: usize = 16;

    /// # Safety
    /// As [`super::MixF32Fn`], on a CPU with AVX-512F.
    #[allow(clippy::too_many_arguments)] // the C signature of the contract
    pub(in crate::ukernel) unsafe extern "C" fn mix_avx512(
        steps: usize,
        bank: *const f32,
        expert_ld: usize,
        experts: usize,
        coefs: *const f32,
        images: usize,
        dst: *mut f32,
        dst_ld: usize,
        next: *const f32,
    ) {
        // SAFETY: the same contract; only reachable when the CPU has AVX-512F.
        unsafe {
            if experts > MAX_EXPERTS {
                super::mix_generic(
                    steps, bank, expert_ld, experts, coefs, images, dst, dst_ld, next,
                )
            } else {
                avx512(
                    steps,
                    (bank, expert_ld, experts),
                    coefs,
                    images,
                    (dst, dst_ld),
                    next,
                )
            }
        }
    }

    /// Two steps (16 floats) per vector, four vectors at a time; the first image's pass
    /// prefetches the next call's bank (the others repeat this call's from L1).
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512(
        steps: usize,
        (bank, eld, experts): (*const f32, usize, usize),
        coefs: *const f32,
        images: usize,
        (dst, dld): (*mut f32, usize),
        next: *const f32,
    ) {
        const U: usize = 4;
        let floats = steps * M0;
        for i in 0..images {
            let mut c = [_mm512_setzero_ps(); MAX_EXPERTS];
            for (e, ce) in c.iter_mut().enumerate().take(experts) {
                // SAFETY: coefs[(i·experts + e)·M0 ..][..M0], duplicated into both halves.
                *ce = unsafe {
                    let row = _mm256_loadu_ps(coefs.add((i * experts + e) * M0));
                    _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(row)))
                };
            }
            let d = dst.wrapping_add(i * dld);
            let mut j = 0;
            // SAFETY (all loops): j + 16·U <= floats (or the masked tail) stays within each
            // expert's `steps·M0` floats and the image's destination; prefetches never fault.
            while j + 16 * U <= floats {
                let mut acc = [_mm512_setzero_ps(); U];
                for (e, &ce) in c.iter().enumerate().take(experts) {
                    let be = bank.wrapping_add(e * eld + j);
                    if i == 0 && !next.is_null() {
                        let ne = next.wrapping_add(e * eld + j);
                        for u in 0..U {
                            _mm_prefetch::<_MM_HINT_T0>(ne.wrapping_add(16 * u).cast());
                        }
                    }
                    for (u, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(ce, unsafe { _mm512_loadu_ps(be.add(16 * u)) }, *a);
                    }
                }
                for (u, a) in acc.into_iter().enumerate() {
                    unsafe { _mm512_storeu_ps(d.add(j + 16 * u), a) };
                }
                j += 16 * U;
            }
            while j < floats {
                let left = floats - j;
                let mask: __mmask16 = if left >= 16 { !0 } else { (1u16 << left) - 1 };
                let mut acc = _mm512_setzero_ps();
                for (e, &ce) in c.iter().enumerate().take(experts) {
                    let be = bank.wrapping_add(e * eld + j);
                    acc = _mm512_fmadd_ps(ce, unsafe { _mm512_maskz_loadu_ps(mask, be) }, acc);
                }
                unsafe { _mm512_mask_storeu_ps(d.add(j), mask, acc) };
                j += 16;
            }
        }
    }

    /// # Safety
    /// As [`super::MixF32Fn`], on a CPU with AVX2 and FMA.
    #[allow(clippy::too_many_arguments)] // the C signature of the contract
    pub(in crate::ukernel) unsafe extern "C" fn mix_avx2(
        steps: usize,
        bank: *const f32,
        expert_ld: usize,
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
                    steps, bank, expert_ld, experts, coefs, images, dst, dst_ld, next,
                )
            } else {
                avx2(
                    steps,
                    (bank, expert_ld, experts),
                    coefs,
                    images,
                    (dst, dst_ld),
                    next,
                )
            }
        }
    }

    /// One step (8 floats) per vector, four at a time; prefetching as in [`avx512`].
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(
        steps: usize,
        (bank, eld, experts): (*const f32, usize, usize),
        coefs: *const f32,
        images: usize,
        (dst, dld): (*mut f32, usize),
        next: *const f32,
    ) {
        const U: usize = 4;
        for i in 0..images {
            let mut c = [_mm256_setzero_ps(); MAX_EXPERTS];
            for (e, ce) in c.iter_mut().enumerate().take(experts) {
                // SAFETY: coefs[(i·experts + e)·M0 ..][..M0].
                *ce = unsafe { _mm256_loadu_ps(coefs.add((i * experts + e) * M0)) };
            }
            let d = dst.wrapping_add(i * dld);
            let mut s = 0;
            // SAFETY (both loops): steps s..s + U (or s) are within each expert's `steps`
            // rows and the image's destination; prefetches never fault.
            while s + U <= steps {
                let mut acc = [_mm256_setzero_ps(); U];
                for (e, &ce) in c.iter().enumerate().take(experts) {
                    let be = bank.wrapping_add(e * eld + s * M0);
                    if i == 0 && !next.is_null() {
                        let ne = next.wrapping_add(e * eld + s * M0);
                        for u in (0..U).step_by(2) {
                            _mm_prefetch::<_MM_HINT_T0>(ne.wrapping_add(M0 * u).cast());
                        }
                    }
                    for (u, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(ce, unsafe { _mm256_loadu_ps(be.add(M0 * u)) }, *a);
                    }
                }
                for (u, a) in acc.into_iter().enumerate() {
                    unsafe { _mm256_storeu_ps(d.add((s + u) * M0), a) };
                }
                s += U;
            }
            while s < steps {
                let mut acc = _mm256_setzero_ps();
                for (e, &ce) in c.iter().enumerate().take(experts) {
                    let be = bank.wrapping_add(e * eld + s * M0);
                    acc = _mm256_fmadd_ps(ce, unsafe { _mm256_loadu_ps(be) }, acc);
                }
                unsafe { _mm256_storeu_ps(d.add(s * M0), acc) };
                s += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MixF32Fn, M0};
    use crate::rt::SplitMix;
    use crate::ukernel::{table, Isa};

    /// Every variant this CPU runs against the portable one, bit for bit, with guards around
    /// each destination and NaN in the bank's gaps between experts (never read).
    #[test]
    fn variants_match_the_portable_kernel_bit_for_bit() {
        let mut rng = SplitMix(7);
        let kernels: Vec<(&str, MixF32Fn)> = Isa::ALL
            .into_iter()
            .filter_map(table)
            .map(|t| (t.isa.name(), t.mix_f32))
            .collect();
        for experts in [0, 1, 4, 6, 8, 17] {
            for steps in [0, 1, 2, 3, 7, 8, 9, 64, 65] {
                for images in [1, 2, 4] {
                    let gap = 5;
                    let eld = steps * M0 + gap;
                    let mut bank = vec![f32::NAN; experts.max(1) * eld];
                    for e in 0..experts {
                        for x in &mut bank[e * eld..e * eld + steps * M0] {
                            *x = rng.normal();
                        }
                    }
                    let coefs: Vec<f32> =
                        (0..images * experts * M0).map(|_| rng.normal()).collect();
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
                                        * f64::from(bank[e * eld + s * M0 + l]);
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
                        let same = got
                            .iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "{name}: experts {experts}, steps {steps}, images {images}"
                        );
                    }
                }
            }
        }
    }
}
