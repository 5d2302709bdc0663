//! A matrix multiply whose bits do not depend on the CPU it runs on, for MiniLM's linear layers.
//!
//! libtorch sends float32 matrix multiplies on the CPU to MKL. Under hsx's portable pins MKL runs its
//! COMPATIBLE branch (the one code path it has for Intel and AMD processors alike), which is correct
//! and portable but about 2.3× slower than MKL's native branch on the same machine (measured in
//! `benches/RESULTS.md`). MiniLM spends about 80% of its time in those multiplies.
//!
//! This module computes `x · wᵀ + b` with the `matrixmultiply` crate instead, pinned to one version and
//! built without its AVX-512 kernel, so that every x86-64 processor with AVX2 and FMA (the machines the
//! `ATEN_CPU_CAPABILITY=avx2` pin already assumes) runs the same 8×8 FMA micro-kernel with the same
//! fixed blocking (k in blocks of 256): each output element is summed in the same order everywhere.
//! Rows are split between threads; a row's result does not depend on which thread computed it or how
//! many there were, so the bits do not depend on the thread count either (`tests/metrics.rs` checks
//! 1, 2 and 3 threads against each other). The bias is added afterwards, in libtorch.
//!
//! Only float32 tensors on the CPU that need no gradient take this path; anything else (CUDA, bf16,
//! autograd) goes to libtorch's `linear` unchanged.
use tch::{Device, Kind, Tensor};

/// `x · wᵀ + b` for `x` [m, k], `w` [n, k], `b` [n]: portable bits on the CPU (see the module note),
/// libtorch's `linear` elsewhere.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
    linear_threads(x, w, b, threads)
}

/// [`linear`] with the rows split between `threads` threads (the result is the same for any count).
pub fn linear_threads(x: &Tensor, w: &Tensor, b: &Tensor, threads: usize) -> Tensor {
    let on_cpu = x.device() == Device::Cpu && w.device() == Device::Cpu;
    let float_matrices = x.kind() == Kind::Float && w.kind() == Kind::Float && x.dim() == 2 && w.dim() == 2;
    // A shape mismatch goes to libtorch too, which raises its own error.
    if !on_cpu || !float_matrices || x.requires_grad() || w.requires_grad() || w.size()[1] != x.size()[1] {
        return x.linear(w, Some(b));
    }
    let (m, k, n) = (x.size()[0] as usize, x.size()[1] as usize, w.size()[0] as usize);
    let x = x.contiguous();
    let w = w.contiguous();
    let mut out = Tensor::empty([m as i64, n as i64], (Kind::Float, Device::Cpu));
    if m > 0 && n > 0 {
        // SAFETY: x, w and out are contiguous float32 CPU tensors of the sizes given, alive for the
        // whole call; each thread writes a disjoint block of rows of `out`.
        unsafe {
            sgemm_rows(
                Ptrs { x: x.data_ptr() as *const f32, w: w.data_ptr() as *const f32, c: out.data_ptr() as *mut f32 },
                m,
                k,
                n,
                threads,
            )
        };
    }
    out += b;
    out
}

/// Raw pointers that may cross into scoped threads (each thread touches its own rows only).
#[derive(Clone, Copy)]
struct Ptrs {
    x: *const f32,
    w: *const f32,
    c: *mut f32,
}
unsafe impl Send for Ptrs {}
unsafe impl Sync for Ptrs {}

/// c[m, n] = x[m, k] · w[n, k]ᵀ, all row-major, rows of c split into at most `threads` blocks of whole
/// 8-row micro-tiles; the calling thread computes the last block.
unsafe fn sgemm_rows(p: Ptrs, m: usize, k: usize, n: usize, threads: usize) {
    // SAFETY (for each call): rows r0..r0+rows of x and c lie inside the tensors (r0 + rows ≤ m).
    let block = move |p: Ptrs, r0: usize, rows: usize| unsafe {
        matrixmultiply::sgemm(
            rows,
            k,
            n,
            1.0,
            p.x.add(r0 * k),
            k as isize,
            1,
            p.w,
            1,
            k as isize,
            0.0,
            p.c.add(r0 * n),
            n as isize,
            1,
        )
    };
    let threads = threads.min(m.div_ceil(8)).max(1);
    let per = m.div_ceil(threads).div_ceil(8) * 8;
    std::thread::scope(|s| {
        let mut r0 = 0;
        while r0 + per < m {
            let start = r0;
            s.spawn(move || block(p, start, per));
            r0 += per;
        }
        block(p, r0, m - r0);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summation order the module note promises, written out in scalar Rust: for each output
    /// element, k in blocks of 256; inside a block one fused multiply-add after another from zero;
    /// the blocks' sums added to the running result in order.
    fn reference(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut total = 0f32;
                for (blk, k0) in (0..k).step_by(256).enumerate() {
                    let mut acc = 0f32;
                    for kk in k0..(k0 + 256).min(k) {
                        acc = x[i * k + kk].mul_add(w[j * k + kk], acc);
                    }
                    total = if blk == 0 { acc + 0.0 } else { total + acc };
                }
                c[i * n + j] = total;
            }
        }
        c
    }

    fn seeded(rows: i64, cols: i64, seed: i64) -> Tensor {
        tch::manual_seed(seed);
        Tensor::randn([rows, cols], (Kind::Float, Device::Cpu))
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).expect("float tensor").iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn matches_the_documented_summation_order_bit_for_bit() {
        // MiniLM's shapes (k 384 and 1536: one and several k-blocks), with row and column counts that are
        // not multiples of the 8×8 tile, so the edge path is covered too.
        for (m, k, n) in [(37, 384, 1152), (13, 1536, 384), (8, 384, 1536), (1, 300, 5)] {
            let x = seeded(m, k, 1);
            let w = seeded(n, k, 2);
            let b = Tensor::zeros([n], (Kind::Float, Device::Cpu));
            let got = linear_threads(&x, &w, &b, 2);
            let xs = Vec::<f32>::try_from(x.flatten(0, -1)).unwrap();
            let ws = Vec::<f32>::try_from(w.flatten(0, -1)).unwrap();
            let want: Vec<u32> =
                reference(&xs, &ws, m as usize, k as usize, n as usize).iter().map(|v| v.to_bits()).collect();
            let differ = bits(&got).iter().zip(&want).filter(|(a, b)| a != b).count();
            assert_eq!(
                differ, 0,
                "{m}×{k}·{n}: {differ} elements differ from the documented order; matrixmultiply chose another kernel \
                 on this CPU (it needs AVX2 and FMA, and must be built without its avx512 feature: cargo tree -e features -i matrixmultiply)"
            );
        }
    }

    #[test]
    fn thread_count_does_not_move_bits_and_bias_is_added() {
        let x = seeded(203, 384, 3);
        let w = seeded(1152, 384, 4);
        let b = seeded(1, 1152, 5).squeeze_dim(0);
        let one = linear_threads(&x, &w, &b, 1);
        for t in [2, 3, 7] {
            assert_eq!(bits(&one), bits(&linear_threads(&x, &w, &b, t)), "{t} threads");
        }
        let torch = x.linear(&w, Some(&b));
        let diff = (&one - &torch).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "against libtorch's linear: max-abs {diff}");
    }

    #[test]
    fn autograd_and_odd_inputs_go_to_libtorch() {
        let x = seeded(4, 6, 6).set_requires_grad(true);
        let w = seeded(3, 6, 7);
        let b = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        let y = linear_threads(&x, &w, &b, 2);
        assert!(y.requires_grad(), "a tensor that needs gradients keeps its graph");
        let x3 = seeded(8, 6, 8).view([2, 4, 6]);
        assert_eq!(linear_threads(&x3, &w, &b, 2).size(), vec![2, 4, 3]);
        let empty = Tensor::zeros([0, 6], (Kind::Float, Device::Cpu));
        assert_eq!(linear_threads(&empty, &w, &b, 2).size(), vec![0, 3]);
    }
}
