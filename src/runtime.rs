//! libtorch runtime controls and facts: threads, seeds, determinism, CPU capability, CUDA.
//!
//! `tch` binds most of these; the two it does not (deterministic algorithms, ATen's CPU capability) come
//! from the C++ shim in `src/shim/torch_shim.cpp`, compiled by `build.rs`.
//! `hsx --json run ...` records what this module reports in every ledger entry's `env`.
use serde::Serialize;
use std::os::raw::{c_char, c_int};

extern "C" {
    fn hsx_set_deterministic_algorithms(on: c_int) -> c_int;
    fn hsx_deterministic_algorithms() -> c_int;
    fn hsx_set_benchmark_cudnn(on: c_int) -> c_int;
    fn hsx_cpu_capability(buf: *mut c_char, len: usize) -> c_int;
    fn hsx_set_cuda_autocast_bf16() -> c_int;
}

/// Runs `f` under bf16 autocast when `on` (CUDA only; on CPU `f` runs in fp32 as is).
pub fn with_bf16_autocast<T>(on: bool, f: impl FnOnce() -> T) -> T {
    if !on {
        return f();
    }
    // SAFETY: sets a process-wide libtorch setting; called before any autocast region.
    unsafe { hsx_set_cuda_autocast_bf16() };
    tch::autocast(true, f)
}

/// The libtorch version this binary was built against (tch 0.24 expects exactly this).
pub const LIBTORCH_VERSION: &str = "2.11.0";

/// ATen's CPU capability as libtorch reports it ("AVX512", "AVX2", "DEFAULT", ...).
pub fn cpu_capability() -> String {
    let mut buf = [0 as c_char; 64];
    // SAFETY: the shim writes at most `len` bytes including the terminating NUL.
    let n = unsafe { hsx_cpu_capability(buf.as_mut_ptr(), buf.len()) };
    if n < 0 {
        return "unknown".to_owned();
    }
    let bytes: Vec<u8> = buf[..n as usize].iter().map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Deterministic settings for one process: deterministic algorithms, no cuDNN benchmarking, and the
/// cuBLAS workspace configuration that makes cuBLAS deterministic (must be set before CUDA starts).
pub fn set_deterministic(on: bool) -> Result<(), String> {
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
}

pub fn facts() -> TorchFacts {
    let cuda_available = tch::Cuda::is_available();
    TorchFacts {
        libtorch: LIBTORCH_VERSION.to_owned(),
        cpu_capability: cpu_capability(),
        intra_op_threads: tch::get_num_threads() as i64,
        inter_op_threads: tch::get_num_interop_threads() as i64,
        // SAFETY: a read of libtorch's global context.
        deterministic_algorithms: unsafe { hsx_deterministic_algorithms() } == 1,
        cudnn_benchmark: false,
        cublas_workspace_config: std::env::var("CUBLAS_WORKSPACE_CONFIG").ok(),
        cuda_available,
        cuda_devices: if cuda_available { tch::Cuda::device_count() } else { 0 },
        cudnn_available: tch::Cuda::cudnn_is_available(),
    }
}
