//! libtorch runtime controls and facts: threads, seeds, determinism, CPU capability, CUDA, and the
//! portable CPU pins.
//!
//! `tch` binds most of these; the ones it does not (deterministic algorithms, ATen's CPU capability,
//! MKL's conditional numerical reproducibility branch, inter-op threads) come from the C++ shim in
//! `src/shim/torch_shim.cpp`, compiled by `build.rs`.
//! `hsx --json run ...` records what this module reports in every ledger entry's `env`.
//!
//! The portable CPU pins are in [`pins`] (re-exported here).
use serde::Serialize;
use std::os::raw::{c_char, c_int};

mod cuda;
mod pins;
pub use cuda::{cuda_facts, cuda_version, cudnn_version, gpu_differences, CudaDeterminism, CudaFacts, GpuFacts};
pub use pins::*;

extern "C" {
    fn hsx_set_deterministic_algorithms(on: c_int) -> c_int;
    fn hsx_deterministic_algorithms() -> c_int;
    fn hsx_set_benchmark_cudnn(on: c_int) -> c_int;
    fn hsx_load_torch_cuda(err: *mut c_char, len: usize) -> c_int;
    fn hsx_autocast_enter(cuda: c_int) -> c_int;
    fn hsx_autocast_exit(cuda: c_int, prev: c_int) -> c_int;
    fn hsx_autocast_bf16_active(cuda: c_int) -> c_int;
    fn hsx_set_num_interop_threads(n: c_int) -> c_int;
}

/// Runs `f` under bf16 autocast for `device` when `on`: matrix products and the other ops on
/// libtorch's autocast lists compute in bf16 (on CUDA, and on CPU too), the rest in fp32; weights stay
/// fp32. Off, `f` runs in fp32 as is. Regions nest; the previous state is restored on the way out.
pub fn with_bf16_autocast<T>(on: bool, device: tch::Device, f: impl FnOnce() -> T) -> T {
    if !on {
        return f();
    }
    let cuda = c_int::from(device.is_cuda());
    // SAFETY: plain calls into libtorch's thread-local autocast state; exit restores what enter found.
    let prev = unsafe { hsx_autocast_enter(cuda) };
    assert!(prev >= 0, "libtorch refused to enter a bf16 autocast region on {device:?}");
    let out = f();
    // SAFETY: as above.
    unsafe { hsx_autocast_exit(cuda, prev) };
    out
}

/// Makes libtorch's CUDA backend available: loads `libtorch_cuda.so` beside `libtorch_cpu.so` once per
/// process (the binary does not link it, so CPU-only work never pays for loading it). Ok(false): this
/// libtorch has no CUDA library.
pub fn load_cuda() -> Result<bool, String> {
    static LOADED: std::sync::OnceLock<Result<bool, String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let mut buf = [0 as c_char; 512];
            // SAFETY: the shim writes a NUL-terminated message of at most `len` bytes into `buf`.
            let rc = unsafe { hsx_load_torch_cuda(buf.as_mut_ptr(), buf.len()) };
            match rc {
                1 => Ok(true),
                0 => Ok(false),
                _ => {
                    // SAFETY: NUL-terminated by snprintf.
                    let msg = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned();
                    Err(format!("cannot load libtorch's CUDA library: {msg}"))
                }
            }
        })
        .clone()
}

/// bf16 autocast on the CPU is fast only with the processor's own bf16 kernels (AVX-512 BF16 or AMX, via
/// oneDNN): under the portable pins (AVX2) libtorch falls back to reference kernels. Measured on a 2-core
/// AMD EPYC (Zen 4): one flan-t5-base LoRA step on 8 × 200 tokens took 4.4 s in bf16 unpinned, 17 s in
/// fp32 pinned, and 277 s in bf16 pinned. So a CPU run in bf16 must say `HSX_CPU_PINS=native`.
pub fn check_cpu_bf16() -> Result<(), String> {
    match pin_mode()? {
        PinMode::Native => Ok(()),
        mode => Err(format!(
            "runtime.precision = \"bf16\" on the CPU under {PIN_MODE_VAR}={}: the portable pins hold libtorch at \
             AVX2, where bf16 runs on reference kernels about 60 times slower than fp32; run with \
             {PIN_MODE_VAR}=native (recorded in every entry; `make rehearse` does), or set precision = \"fp32\"",
            mode.as_str()
        )),
    }
}

/// Whether bf16 autocast is on for `device` in this thread (inside [`with_bf16_autocast`]).
pub fn bf16_autocast_active(device: tch::Device) -> bool {
    // SAFETY: reads libtorch's thread-local autocast state.
    unsafe { hsx_autocast_bf16_active(c_int::from(device.is_cuda())) == 1 }
}

/// The libtorch version this binary was built against (tch 0.24 expects exactly this).
pub const LIBTORCH_VERSION: &str = "2.11.0";

/// Deterministic settings for one process: deterministic algorithms, no cuDNN benchmarking, and the
/// cuBLAS workspace configuration that makes cuBLAS deterministic (must be set before CUDA starts).
///
/// With `on`, the CPU pins are checked to be in effect (see [`check_pins`]) and inter-op threads are
/// fixed at one; a pin that did not take is an error that names it.
pub fn set_deterministic(on: bool) -> Result<(), String> {
    if on {
        check_pins()?;
        // SAFETY: a call into libtorch's thread-pool setup, which refuses (-1) once inter-op work ran.
        unsafe { hsx_set_num_interop_threads(1) };
    }
    if on && std::env::var_os("CUBLAS_WORKSPACE_CONFIG").is_none() {
        // SAFETY: called at start-up before any other thread reads the environment.
        unsafe { std::env::set_var("CUBLAS_WORKSPACE_CONFIG", ":4096:8") };
    }
    // SAFETY: plain calls into libtorch's global context.
    let rc = unsafe { hsx_set_deterministic_algorithms(on as c_int) };
    if rc != 0 {
        return Err("libtorch refused to set deterministic algorithms".into());
    }
    let rc = unsafe { hsx_set_benchmark_cudnn(0) };
    if rc != 0 {
        return Err("libtorch refused to turn off cuDNN benchmarking".into());
    }
    Ok(())
}

/// Sets libtorch's intra-op thread count (inter-op stays libtorch's default and is recorded).
pub fn set_threads(n: usize) {
    tch::set_num_threads(n as i32);
}

/// Seeds libtorch's generators (CPU and, when present, CUDA) for one stage.
pub fn seed(seed: u64) {
    tch::manual_seed(seed as i64);
}

/// What the ledger records about libtorch for one stage.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct TorchFacts {
    pub libtorch: String,
    pub cpu_capability: String,
    pub intra_op_threads: i64,
    pub inter_op_threads: i64,
    pub deterministic_algorithms: bool,
    pub cudnn_benchmark: bool,
    pub cublas_workspace_config: Option<String>,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn_available: bool,
    /// The processor-dependent settings in effect (absent from entries recorded before the pins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pins: Option<CpuPinFacts>,
    /// The GPU, driver, CUDA libraries and CUDA numerics settings, in a process that uses CUDA only
    /// (absent from CPU entries, and from entries recorded before hsx recorded them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda: Option<CudaFacts>,
}

pub fn facts() -> TorchFacts {
    let cuda_available = tch::Cuda::is_available();
    // SAFETY: a read of libtorch's global context.
    let deterministic_algorithms = unsafe { hsx_deterministic_algorithms() } == 1;
    TorchFacts {
        libtorch: LIBTORCH_VERSION.to_owned(),
        cpu_capability: cpu_capability(),
        intra_op_threads: tch::get_num_threads() as i64,
        inter_op_threads: tch::get_num_interop_threads() as i64,
        deterministic_algorithms,
        cudnn_benchmark: false,
        cublas_workspace_config: std::env::var("CUBLAS_WORKSPACE_CONFIG").ok(),
        cuda_available,
        cuda_devices: if cuda_available { tch::Cuda::device_count() } else { 0 },
        cudnn_available: tch::Cuda::cudnn_is_available(),
        cpu_pins: Some(pin_facts()),
        cuda: cuda_facts(deterministic_algorithms),
    }
}
