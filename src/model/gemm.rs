//! A matrix multiply whose bits do not depend on the CPU it runs on, for T5's and MiniLM's linear layers.
//!
//! libtorch sends float32 matrix multiplies on the CPU to MKL. Under hsx's portable pins MKL runs its
//! COMPATIBLE branch (the one code path it has for Intel and AMD processors alike), which is correct
//! and portable but slow: about 2.3× slower than MKL's native branch on an AMD EPYC and 2.5× on an Intel
//! Xeon (measured in `benches/RESULTS.md`). T5 and MiniLM spend most of their time in those multiplies.
//!
//! This module multiplies with the `matrixmultiply` crate instead, pinned to one version and built
//! without its AVX-512 kernel, so that every x86-64 processor with AVX2 and FMA (the machines the
//! `ATEN_CPU_CAPABILITY=avx2` pin already assumes) runs the same 8×8 FMA micro-kernel with the same
//! fixed blocking (k in blocks of 256): each output element is summed in the same order everywhere.
//! The output is split into blocks of whole 8-row (or 8-column) tiles, run on libtorch's own intra-op
//! threads (so they do not compete with its OpenMP team); an element's result does not depend on the
//! split or on which thread computed it, so the bits do not depend on the thread count either. Operands may have any strides (a transpose is a stride swap): the crate packs them
//! before the micro-kernel runs, so an operand's layout does not move a result's bits.
//!
//! Two entry points:
//! - [`linear`]: `x · wᵀ + b` for MiniLM (inference only; the bias is added afterwards, in libtorch);
//! - [`matmul_t`]: `x · wᵀ` for T5's bias-free projections (attention q/k/v/o, feed-forward wi/wo, the
//!   LoRA factors, the vocabulary head), in training as in inference: an autograd node in the C++ shim
//!   (`src/shim/portable_linear.cpp`) computes the forward product and, in backward, the input gradient
//!   `dy · w` and the weight gradient `dyᵀ · x` with this same multiply.
//!
//! Only float32 tensors on the CPU outside a bf16 autocast region take this path; CUDA, bf16 and
//! anything else go to libtorch unchanged. [`facts`] says which kernel this CPU runs, for the ledger.
use serde::{Deserialize, Serialize};
use std::os::raw::{c_char, c_int};
use tch::{Device, Kind, Tensor};

/// The `matrixmultiply` version Cargo.toml pins (`=`); a unit test checks Cargo.lock agrees.
pub const MATRIXMULTIPLY_VERSION: &str = "0.3.11";

type SgemmFn = unsafe extern "C" fn(i64, i64, i64, *const f32, i64, i64, *const f32, i64, i64, *mut f32);

extern "C" {
    fn hsx_register_sgemm(f: SgemmFn);
    fn hsx_portable_linear(
        x: *mut torch_sys::C_tensor,
        w: *mut torch_sys::C_tensor,
        out: *mut *mut torch_sys::C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
}

/// Which matrix multiply kernel hsx's portable path runs on this CPU: recorded in every entry's
/// environment, so a CPU that would pick another kernel (other bits) is named, not silently different.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GemmFacts {
    /// The library and its version (`matrixmultiply 0.3.11`).
    pub library: String,
    /// The micro-kernel this CPU selects: `fma+avx2` is the portable one; `avx` or `fallback` give other
    /// bits (a CPU without AVX2 and FMA also fails the `ATEN_CPU_CAPABILITY=avx2` pin).
    pub kernel: String,
    /// What takes this path.
    pub used_for: String,
}

/// The portable kernel's name in [`GemmFacts::kernel`].
pub const PORTABLE_KERNEL: &str = "fma+avx2";

/// This process's [`GemmFacts`].
pub fn facts() -> GemmFacts {
    GemmFacts {
        library: format!("matrixmultiply {MATRIXMULTIPLY_VERSION}"),
        kernel: kernel().to_owned(),
        used_for: "float32 CPU linear layers of T5 (forward and backward, LoRA factors, vocabulary head) and \
                   MiniLM; CUDA and bf16 use libtorch"
            .to_owned(),
    }
}

/// The sgemm micro-kernel `matrixmultiply` selects here (its own order of checks, AVX-512 built out).
fn kernel() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2") {
            return PORTABLE_KERNEL;
        }
        if std::arch::is_x86_feature_detected!("avx") {
            return "avx";
        }
    }
    "fallback"
}

/// `x · wᵀ + b` for `x` [m, k], `w` [n, k], `b` [n]: portable bits on the CPU (see the module note),
/// libtorch's `linear` elsewhere.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    linear_threads(x, w, b, threads())
}

fn threads() -> usize {
    usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1)
}

/// [`linear`] with the output split into `threads` blocks (the result is the same for any count).
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
        // SAFETY: x [m, k] and w [n, k] are contiguous float32 CPU tensors, read as x and wᵀ through
        // their strides; out is a fresh contiguous [m, n]; all alive for the whole call.
        unsafe {
            sgemm(
                Operand { ptr: x.data_ptr() as *const f32, rs: k as isize, cs: 1 },
                Operand { ptr: w.data_ptr() as *const f32, rs: 1, cs: k as isize },
                out.data_ptr() as *mut f32,
                (m, k, n),
                threads,
            )
        };
    }
    out += b;
    out
}

/// `x · wᵀ` for `x` [..., k] and `w` [n, k], with autograd: on the CPU in float32 (outside bf16
/// autocast) through the portable multiply, forward and backward (see the module note); elsewhere
/// libtorch's `matmul`.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Tensor {
    let portable = x.device() == Device::Cpu
        && w.device() == Device::Cpu
        && x.kind() == Kind::Float
        && w.kind() == Kind::Float
        && w.dim() == 2
        && x.dim() >= 1
        && x.size().last() == w.size().get(1)
        && !crate::runtime::bf16_autocast_active(Device::Cpu);
    if !portable {
        return x.matmul(&w.tr());
    }
    let mut shape = x.size();
    let k = shape[shape.len() - 1];
    let mut x2 = x.reshape([-1, k]);
    let mut w = w.shallow_clone();
    register();
    let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
    let mut err = [0 as c_char; 512];
    // SAFETY: both pointers are live tch tensors for the call; on success the shim hands over a new
    // tensor that `from_ptr` takes ownership of (tch frees it on drop).
    let rc = unsafe { hsx_portable_linear(x2.as_mut_ptr(), w.as_mut_ptr(), &mut out, err.as_mut_ptr(), err.len()) };
    if rc != 0 || out.is_null() {
        // The shape and kind were checked above, so this is libtorch refusing something unexpected (out of
        // memory): a bug or a broken machine, not an input error.
        let msg: Vec<u8> = err.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        panic!("hsx portable linear failed: {}", String::from_utf8_lossy(&msg));
    }
    // SAFETY: `out` is the shim's freshly allocated tensor, owned by nobody else.
    let y = unsafe { Tensor::from_ptr(out) };
    let last = shape.len() - 1;
    shape[last] = w.size()[0];
    y.view(shape.as_slice())
}

/// Hands the shim the multiply its autograd node calls (once per process).
fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: `sgemm_callback` matches the shim's `hsx_sgemm_fn` and lives for the whole process.
    ONCE.call_once(|| unsafe { hsx_register_sgemm(sgemm_callback) });
}

/// The shim's callback: c[m, n] = a[m, k] · b[k, n], operands with the strides given, c row-major.
///
/// # Safety
/// The pointers must address float32 matrices of the sizes and strides given (the shim passes its
/// tensors' data pointers and strides), c a fresh [m, n] buffer.
unsafe extern "C" fn sgemm_callback(
    m: i64,
    k: i64,
    n: i64,
    a: *const f32,
    rsa: i64,
    csa: i64,
    b: *const f32,
    rsb: i64,
    csb: i64,
    c: *mut f32,
) {
    let dims = (m as usize, k as usize, n as usize);
    // A panic must not unwind into C++: matrixmultiply does not panic on valid sizes, and if it ever did
    // the process stops here rather than continuing with a half-written matrix.
    let run = std::panic::catch_unwind(|| unsafe {
        sgemm(
            Operand { ptr: a, rs: rsa as isize, cs: csa as isize },
            Operand { ptr: b, rs: rsb as isize, cs: csb as isize },
            c,
            dims,
            threads(),
        )
    });
    if run.is_err() {
        std::process::abort();
    }
}

/// A matrix operand: element (i, j) at `ptr[i * rs + j * cs]`.
#[derive(Clone, Copy)]
struct Operand {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

/// One multiply split into blocks of whole 8-row (or 8-column) tiles of the row-major output `c`.
struct Job {
    a: Operand,
    b: Operand,
    c: *mut f32,
    k: usize,
    /// The output's rows and columns.
    m: usize,
    n: usize,
    by_rows: bool,
    /// Rows (or columns) per block; the last block takes the rest.
    per: usize,
}

impl Job {
    fn extent(&self) -> usize {
        if self.by_rows {
            self.m
        } else {
            self.n
        }
    }

    fn blocks(&self) -> usize {
        self.extent().div_ceil(self.per)
    }

    /// Computes block `i` (rows or columns `i·per ..`).
    ///
    /// # Safety
    /// The job's pointers must be valid for its sizes; blocks write disjoint parts of `c`.
    unsafe fn run(&self, i: usize) {
        let start = i * self.per;
        let len = self.per.min(self.extent() - start);
        let ((r0, rows), (c0, cols)) =
            if self.by_rows { ((start, len), (0, self.n)) } else { ((0, self.m), (start, len)) };
        // SAFETY: rows r0..r0+rows and columns c0..c0+cols lie inside the matrices (the caller's contract).
        unsafe {
            matrixmultiply::sgemm(
                rows,
                self.k,
                cols,
                1.0,
                self.a.ptr.offset(r0 as isize * self.a.rs),
                self.a.rs,
                self.a.cs,
                self.b.ptr.offset(c0 as isize * self.b.cs),
                self.b.rs,
                self.b.cs,
                0.0,
                self.c.add(r0 * self.n + c0),
                self.n as isize,
                1,
            )
        }
    }
}

type BlockFn = unsafe extern "C" fn(*const std::ffi::c_void, i64);

extern "C" {
    fn hsx_parallel_blocks(n: i64, f: BlockFn, ctx: *const std::ffi::c_void) -> c_int;
}

/// The shim's per-block callback: `ctx` is a `&Job`.
unsafe extern "C" fn run_block(ctx: *const std::ffi::c_void, i: i64) {
    // SAFETY: `sgemm` passes a live `Job` and block indices below its block count.
    let job = unsafe { &*(ctx as *const Job) };
    if std::panic::catch_unwind(|| unsafe { job.run(i as usize) }).is_err() {
        std::process::abort();
    }
}

/// c[m, n] (row-major) = a[m, k] · b[k, n]. The output is split into `blocks` blocks of whole 8-row
/// tiles, or of whole 8-column tiles when there are too few rows (one decoding step), run on libtorch's
/// intra-op threads; a block's bits do not depend on the split or on the thread that runs it.
unsafe fn sgemm(a: Operand, b: Operand, c: *mut f32, (m, k, n): (usize, usize, usize), blocks: usize) {
    let by_rows = m.div_ceil(8) >= blocks || m >= n;
    let extent = if by_rows { m } else { n };
    let blocks = blocks.min(extent.div_ceil(8)).max(1);
    let per = extent.div_ceil(blocks).div_ceil(8) * 8;
    let job = Job { a, b, c, k, m, n, by_rows, per };
    if job.blocks() == 1 {
        // SAFETY: the caller's contract; one block covers the whole output.
        unsafe { job.run(0) };
        return;
    }
    // SAFETY: `job` outlives the call; `run_block` reads it and runs blocks below `job.blocks()`.
    let rc = unsafe { hsx_parallel_blocks(job.blocks() as i64, run_block, &job as *const Job as *const _) };
    if rc != 0 {
        // at::parallel_for failed to start its team: compute the blocks here, one after another.
        for i in 0..job.blocks() {
            // SAFETY: as above.
            unsafe { job.run(i) };
        }
    }
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

    /// The documented order for a general product: c[i, j] = Σ_l a(i, l) · b(l, j), l in blocks of 256.
    fn reference_mm(
        a: impl Fn(usize, usize) -> f32,
        b: impl Fn(usize, usize) -> f32,
        m: usize,
        k: usize,
        n: usize,
    ) -> Vec<u32> {
        let mut c = vec![0u32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut total = 0f32;
                for (blk, l0) in (0..k).step_by(256).enumerate() {
                    let mut acc = 0f32;
                    for l in l0..(l0 + 256).min(k) {
                        acc = a(i, l).mul_add(b(l, j), acc);
                    }
                    total = if blk == 0 { acc + 0.0 } else { total + acc };
                }
                c[i * n + j] = total.to_bits();
            }
        }
        c
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).expect("float tensor")
    }

    fn assert_bits(what: &str, got: &Tensor, want: &[u32]) {
        let differ = bits(got).iter().zip(want).filter(|(a, b)| a != b).count();
        assert_eq!(
            differ, 0,
            "{what}: {differ} elements differ from the documented order; matrixmultiply chose another kernel on \
             this CPU (it needs AVX2 and FMA, and must be built without its avx512 feature)"
        );
    }

    /// T5's projections at flan-t5-base shape (d_model 768, d_ff 2048, the 32,128-row vocabulary head),
    /// the tiny profile's and a LoRA factor's (r 8), forward and both gradients, against the scalar order.
    /// The last shape's 261 rows cross the 256 k-block in the weight gradient (whose sum runs over tokens).
    #[test]
    fn t5_shapes_forward_and_backward_match_the_documented_order() {
        for (m, k, n) in [(3, 768, 32128), (20, 768, 2048), (20, 2048, 768), (19, 768, 8), (37, 8, 768), (261, 64, 256)]
        {
            let x = seeded(m, k, 11).set_requires_grad(true);
            let w = seeded(n, k, 12).set_requires_grad(true);
            let dy = seeded(m, n, 13);
            let y = matmul_t(&x, &w);
            let (xs, ws, dys) = (values(&x), values(&w), values(&dy));
            let (mu, ku, nu) = (m as usize, k as usize, n as usize);
            assert_bits(
                &format!("forward {m}×{k}·{n}"),
                &y,
                &reference_mm(|i, l| xs[i * ku + l], |l, j| ws[j * ku + l], mu, ku, nu),
            );
            (&y * &dy).sum(Kind::Float).backward();
            assert_bits(
                &format!("input gradient {m}×{k}·{n}"),
                &x.grad(),
                &reference_mm(|i, j| dys[i * nu + j], |j, l| ws[j * ku + l], mu, nu, ku),
            );
            assert_bits(
                &format!("weight gradient {m}×{k}·{n}"),
                &w.grad(),
                &reference_mm(|j, i| dys[i * nu + j], |i, l| xs[i * ku + l], nu, mu, ku),
            );
        }
    }

    #[test]
    fn a_frozen_weight_gets_no_gradient_and_batches_keep_their_shape() {
        let x = seeded(2 * 5, 16, 14).view([2, 5, 16]).set_requires_grad(true);
        let w = seeded(24, 16, 15);
        let y = matmul_t(&x, &w);
        assert_eq!(y.size(), vec![2, 5, 24]);
        y.sum(Kind::Float).backward();
        assert!(x.grad().defined() && !w.grad().defined(), "only the input needs a gradient");
        let torch = x.matmul(&w.tr());
        let diff = (&y - &torch).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "against libtorch's matmul: max-abs {diff}");
        // Under bf16 autocast, and for other kinds, libtorch computes it.
        let half = matmul_t(&x.to_kind(Kind::BFloat16), &w.to_kind(Kind::BFloat16));
        assert_eq!(half.kind(), Kind::BFloat16);
        let inside = crate::runtime::with_bf16_autocast(true, Device::Cpu, || matmul_t(&x, &w));
        assert_eq!(inside.kind(), Kind::BFloat16, "autocast's bf16 matmul, not the portable path");
    }

    #[test]
    fn few_rows_split_by_columns_without_moving_bits() {
        // One decoding step: 3 rows against a vocabulary head, split by columns.
        let x = seeded(3, 64, 16);
        let w = seeded(1003, 64, 17);
        let b = Tensor::zeros([1003], (Kind::Float, Device::Cpu));
        let one = linear_threads(&x, &w, &b, 1);
        for t in [2, 3, 7] {
            assert_eq!(bits(&one), bits(&linear_threads(&x, &w, &b, t)), "{t} threads");
        }
    }

    #[test]
    fn the_recorded_version_is_the_locked_one() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).expect("Cargo.lock");
        let entry = format!("name = \"matrixmultiply\"\nversion = \"{MATRIXMULTIPLY_VERSION}\"");
        assert!(lock.contains(&entry), "Cargo.lock does not lock matrixmultiply {MATRIXMULTIPLY_VERSION}");
        assert_eq!(facts().kernel, PORTABLE_KERNEL, "this CPU lacks AVX2+FMA: the portable kernel does not run here");
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
