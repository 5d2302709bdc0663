//! What a CUDA entry records about the GPU and its libraries ([`CudaFacts`], `env.torch.cuda`): each
//! visible GPU's name, compute capability and memory, the NVIDIA driver, the CUDA runtime, cuDNN and
//! cuBLAS versions, and libtorch's CUDA numerics settings in force. Bitwise identity of a CUDA stage holds
//! on the same GPU model with the same driver and libraries only; these facts are what `hsx reproduce`
//! names when such a stage diverges ([`gpu_differences`]).
//!
//! The shim (`src/shim/torch_shim.cpp`) finds the CUDA driver, runtime and cuBLAS among the libraries
//! libtorch's CUDA library loaded and asks them, and asks libtorch for cuDNN; nothing links a CUDA library,
//! so a CPU-only build compiles and runs this, and a process that never loaded CUDA records no CUDA facts
//! at all (a CPU entry is unchanged).
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::os::raw::{c_char, c_int, c_ulonglong};

extern "C" {
    fn hsx_cuda_device(
        ordinal: c_int,
        name: *mut c_char,
        len: usize,
        major: *mut c_int,
        minor: *mut c_int,
        total: *mut c_ulonglong,
    ) -> c_int;
    fn hsx_cuda_driver_api_version() -> c_int;
    fn hsx_nvidia_driver_version(buf: *mut c_char, len: usize) -> c_int;
    // C `long`: 64 bits on the LP64 Linux targets hsx builds for (the shim itself is Linux-only).
    fn hsx_cuda_runtime_version() -> i64;
    fn hsx_cudnn_version() -> i64;
    fn hsx_cublas_version(major: *mut c_int, minor: *mut c_int, patch: *mut c_int) -> c_int;
    fn hsx_cuda_numerics() -> c_int;
    fn hsx_float32_matmul_precision() -> c_int;
}

/// The GPU side of an entry's environment. Every field is what the libraries answered; `None` where one
/// could not be asked (and then the entry says so rather than guessing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CudaFacts {
    pub gpus: Vec<GpuFacts>,
    /// The NVIDIA kernel driver, e.g. "580.159.04".
    pub driver: Option<String>,
    /// The newest CUDA version that driver supports, e.g. "13.0".
    pub driver_cuda: Option<String>,
    /// The CUDA runtime library loaded (libcudart), e.g. "13.0".
    pub cuda_runtime: Option<String>,
    pub cudnn: Option<String>,
    pub cublas: Option<String>,
    pub determinism: CudaDeterminism,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuFacts {
    pub index: i64,
    pub name: String,
    /// "9.0" for a Hopper GPU.
    pub compute_capability: String,
    pub total_memory_bytes: u64,
}

/// libtorch's settings that decide whether CUDA results repeat bit for bit, and in which precision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CudaDeterminism {
    pub deterministic_algorithms: bool,
    pub cudnn_deterministic: bool,
    pub cudnn_benchmark: bool,
    pub cudnn_enabled: bool,
    pub tf32_cublas: bool,
    pub tf32_cudnn: bool,
    pub fp16_reduced_precision_reduction: bool,
    pub bf16_reduced_precision_reduction: bool,
    pub float32_matmul_precision: String,
    /// cuBLAS's workspace configuration (`:4096:8` makes cuBLAS deterministic; hsx sets it).
    pub cublas_workspace_config: Option<String>,
}

/// The CUDA facts of this process, when it uses CUDA (libtorch's CUDA library loaded and a GPU visible);
/// `None` otherwise.
pub fn cuda_facts(deterministic_algorithms: bool) -> Option<CudaFacts> {
    if !tch::Cuda::is_available() {
        return None;
    }
    let gpus = (0..tch::Cuda::device_count()).filter_map(gpu).collect();
    let mut drv = [0 as c_char; 96];
    // SAFETY: the shim writes a NUL-terminated string of at most `len` bytes into `drv`.
    let driver = (unsafe { hsx_nvidia_driver_version(drv.as_mut_ptr(), drv.len()) } == 0)
        .then(|| c_string(&drv))
        .or_else(driver_from_proc);
    // SAFETY: plain calls into the loaded CUDA libraries (or libtorch) that return numbers.
    let (driver_api, runtime, cudnn) =
        unsafe { (hsx_cuda_driver_api_version(), hsx_cuda_runtime_version(), hsx_cudnn_version()) };
    let (mut ma, mut mi, mut pa) = (0, 0, 0);
    // SAFETY: the shim writes three ints.
    let cublas = (unsafe { hsx_cublas_version(&mut ma, &mut mi, &mut pa) } == 0).then(|| format!("{ma}.{mi}.{pa}"));
    // SAFETY: reads of libtorch's global context.
    let (bits, precision) = unsafe { (hsx_cuda_numerics(), hsx_float32_matmul_precision()) };
    let bit = |b: c_int| bits >= 0 && bits & b != 0;
    Some(CudaFacts {
        gpus,
        driver,
        driver_cuda: (driver_api > 0).then(|| cuda_version(i64::from(driver_api))),
        cuda_runtime: (runtime > 0).then(|| cuda_version(runtime)),
        cudnn: (cudnn > 0).then(|| cudnn_version(cudnn)),
        cublas,
        determinism: CudaDeterminism {
            deterministic_algorithms,
            cudnn_deterministic: bit(1),
            cudnn_benchmark: bit(2),
            cudnn_enabled: bit(4),
            tf32_cublas: bit(8),
            tf32_cudnn: bit(16),
            fp16_reduced_precision_reduction: bit(32),
            bf16_reduced_precision_reduction: bit(64),
            float32_matmul_precision: match precision {
                0 => "highest",
                1 => "high",
                2 => "medium",
                _ => "unknown",
            }
            .to_owned(),
            cublas_workspace_config: std::env::var("CUBLAS_WORKSPACE_CONFIG").ok(),
        },
    })
}

fn gpu(index: i64) -> Option<GpuFacts> {
    let mut name = [0 as c_char; 256];
    let (mut major, mut minor, mut total) = (0, 0, 0);
    // SAFETY: the shim writes a NUL-terminated name of at most `len` bytes and three numbers.
    let rc =
        unsafe { hsx_cuda_device(index as c_int, name.as_mut_ptr(), name.len(), &mut major, &mut minor, &mut total) };
    (rc == 0).then(|| GpuFacts {
        index,
        name: c_string(&name),
        compute_capability: format!("{major}.{minor}"),
        total_memory_bytes: total,
    })
}

fn c_string(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

/// The driver version from `/proc/driver/nvidia/version` ("… Kernel Module  580.159.04  …").
fn driver_from_proc() -> Option<String> {
    let text = std::fs::read_to_string("/proc/driver/nvidia/version").ok()?;
    let line = text.lines().find(|l| l.contains("Kernel Module"))?;
    let after = line.split("Kernel Module").nth(1)?;
    after.split_whitespace().find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit())).map(str::to_owned)
}

/// CUDA's version numbers: 13000 → "13.0", 12080 → "12.8".
pub fn cuda_version(v: i64) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// cuDNN's: from 9.0 major·10000 + minor·100 + patch (90300 → "9.3.0"), before it major·1000 + minor·100
/// + patch (8902 → "8.9.2").
pub fn cudnn_version(v: i64) -> String {
    if v >= 90000 {
        format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100)
    } else {
        format!("{}.{}.{}", v / 1000, (v % 1000) / 100, v % 100)
    }
}

/// The GPU and CUDA-library facts that differ between a recorded entry's environment and another (`now`),
/// each as "what: recorded X, now Y". Empty when neither used CUDA, or both did on the same GPU model with
/// the same driver, libraries and settings. Each side is read from `env.torch.cuda`; a malformed one is
/// named as such.
pub fn gpu_differences(recorded: &Value, now: &Value) -> Vec<String> {
    let read = |env: &Value| -> Result<Option<CudaFacts>, String> {
        match env.pointer("/torch/cuda") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| e.to_string()),
        }
    };
    let (a, b) = match (read(recorded), read(now)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) => return vec![format!("torch.cuda: the recorded entry's CUDA facts do not parse ({e})")],
        (_, Err(e)) => return vec![format!("torch.cuda: this run's CUDA facts do not parse ({e})")],
    };
    let (a, b) = match (a, b) {
        (None, None) => return vec![],
        (Some(a), None) => return vec![format!("gpu: recorded {}, now no CUDA device in use", gpus(&a))],
        (None, Some(b)) => return vec![format!("gpu: recorded no CUDA device, now {}", gpus(&b))],
        (Some(a), Some(b)) => (a, b),
    };
    let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "unknown".into());
    let mut out = Vec::new();
    let mut differ = |what: &str, x: String, y: String| {
        if x != y {
            out.push(format!("{what}: recorded {x}, now {y}"));
        }
    };
    differ("gpu", gpus(&a), gpus(&b));
    differ("nvidia driver", show(&a.driver), show(&b.driver));
    differ("cuda runtime", show(&a.cuda_runtime), show(&b.cuda_runtime));
    differ("cudnn", show(&a.cudnn), show(&b.cudnn));
    differ("cublas", show(&a.cublas), show(&b.cublas));
    let (da, db) = (serde_json::to_value(&a.determinism), serde_json::to_value(&b.determinism));
    if let (Ok(Value::Object(da)), Ok(Value::Object(db))) = (da, db) {
        for (k, va) in &da {
            differ(
                &format!("cuda determinism {k}"),
                va.to_string(),
                db.get(k).map(Value::to_string).unwrap_or_default(),
            );
        }
    }
    out
}

fn gpus(f: &CudaFacts) -> String {
    if f.gpus.is_empty() {
        return "a CUDA device whose facts could not be read".into();
    }
    f.gpus
        .iter()
        .map(|g| {
            format!(
                "{} (compute capability {}, {} MiB)",
                g.name,
                g.compute_capability,
                g.total_memory_bytes / (1 << 20)
            )
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_numbers_read_as_the_libraries_define_them() {
        assert_eq!(cuda_version(13000), "13.0");
        assert_eq!(cuda_version(12080), "12.8");
        assert_eq!(cudnn_version(91002), "9.10.2");
        assert_eq!(cudnn_version(8902), "8.9.2");
    }

    #[test]
    fn a_cpu_only_process_records_no_cuda_facts() {
        // This machine has no GPU (the CI and development machines): nothing GPU-specific is recorded.
        if tch::Cuda::is_available() {
            return;
        }
        assert_eq!(cuda_facts(true), None);
        assert!(crate::runtime::facts().cuda.is_none());
        // The shim's queries answer "unknown" instead of failing where no GPU library is loaded (the PyPI
        // libtorch_cpu links the CUDA runtime itself, so that one may answer even here: it is not recorded).
        let mut name = [0 as c_char; 64];
        let (mut a, mut b, mut c, mut t) = (0, 0, 0, 0);
        // SAFETY: as in cuda_facts.
        unsafe {
            assert!(hsx_cuda_device(0, name.as_mut_ptr(), name.len(), &mut a, &mut b, &mut t) < 0);
            assert!(hsx_cublas_version(&mut a, &mut b, &mut c) < 0);
            assert!(hsx_cudnn_version() < 0);
            assert!(hsx_cuda_numerics() >= 0, "libtorch's CUDA settings are readable on a CPU-only build");
        }
    }
}
