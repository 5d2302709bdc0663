//! The likely cause `hsx reproduce` names when a bitwise CUDA stage diverges: a different GPU model,
//! driver, CUDA runtime, cuDNN or cuBLAS, or different CUDA numerics settings. Floating-point kernels are
//! chosen per GPU architecture and library version (tile sizes, split-K, reduction order), so bitwise
//! identity is only expected on the same GPU model with the same libraries and settings; when those
//! differ, that is the first thing to look at, before the code or the data.
use serde_json::Value;

use super::Verdict;
use crate::ledger::{Determinism, Entry};

/// Says why a stage's outputs probably differ, when `recorded` is a bitwise CUDA entry that did not
/// reproduce identically and the GPU facts of this run (`now`, an entry environment) differ from its own.
/// `None` for a stage that reproduced, is not declared bitwise, or did not run on CUDA; and when the GPU
/// and libraries are the same (the cause is then elsewhere).
pub fn likely_cause(recorded: &Entry, verdict: &Verdict, now: &Value) -> Option<String> {
    if *verdict == Verdict::Identical || !matches!(recorded.determinism, Determinism::Bitwise) {
        return None;
    }
    if recorded.env.pointer("/torch/cuda").is_none_or(Value::is_null) {
        return cpu_cause(&recorded.env, now);
    }
    let diffs = crate::runtime::gpu_differences(&recorded.env, now);
    (!diffs.is_empty()).then(|| {
        format!(
            "likely cause: a GPU or CUDA library difference ({}); bitwise identity is expected only on the same \
             GPU model with the same driver, libraries and settings",
            diffs.join("; ")
        )
    })
}

/// On the CPU: a different matrix multiply kernel or library (`env.gemm`, [`crate::model::gemm::facts`]),
/// or a recording made before T5's layers took the portable multiply (no `gemm` in its environment).
fn cpu_cause(recorded: &Value, now: &Value) -> Option<String> {
    let fact = |env: &Value, key: &str| env.pointer(&format!("/gemm/{key}")).and_then(Value::as_str).map(str::to_owned);
    let (was, is) =
        (fact(recorded, "kernel").zip(fact(recorded, "library")), fact(now, "kernel").zip(fact(now, "library")));
    match (was, is) {
        (Some(was), Some(is)) if was != is => Some(format!(
            "likely cause: the CPU matrix multiply differs (recorded {} with the {} kernel, now {} with the {} \
             kernel); its bits are the same only where the same kernel runs",
            was.1, was.0, is.1, is.0
        )),
        (None, Some(_)) => Some(
            "possible cause: the recording predates hsx's portable matrix multiply for T5's layers (its environment \
             names no gemm kernel), so its T5 stages multiplied with MKL's COMPATIBLE branch"
                .to_owned(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded CUDA entry (tests/fixtures/cuda/entry-h200.json: an entry as hsx writes one on a GPU,
    /// its environment claiming an H200) and the environments of two later runs.
    fn fixture() -> (Entry, Value) {
        let entry: Entry = serde_json::from_str(include_str!("../../tests/fixtures/cuda/entry-h200.json"))
            .expect("the fixture entry parses as a ledger entry");
        let envs: Value = serde_json::from_str(include_str!("../../tests/fixtures/cuda/other-envs.json")).unwrap();
        (entry, envs)
    }

    #[test]
    fn a_diverged_bitwise_cuda_stage_names_the_gpu_and_library_differences() {
        let (entry, envs) = fixture();
        let cause = likely_cause(&entry, &Verdict::Diverged, &envs["h100"]).expect("a cause is named");
        for needle in [
            "gpu: recorded NVIDIA H200 (compute capability 9.0, 143771 MiB), now NVIDIA H100 80GB HBM3 (compute capability 9.0, 81559 MiB)",
            "nvidia driver: recorded 580.159.04, now 570.133.20",
            "cublas: recorded 13.1.0, now 12.8.4",
            "cudnn: recorded 9.19.0, now 9.8.0",
            "cuda runtime: recorded 13.0, now 12.8",
        ] {
            assert!(cause.contains(needle), "{needle:?} missing from {cause}");
        }
        // A settings difference on the same GPU is named too.
        let tf32 = likely_cause(&entry, &Verdict::Diverged, &envs["h200_tf32"]).expect("a cause is named");
        assert!(tf32.contains("cuda determinism tf32_cublas: recorded false, now true"), "{tf32}");
        assert!(!tf32.contains("gpu:"), "{tf32}");
        // Re-run on a machine without CUDA.
        let cpu = likely_cause(&entry, &Verdict::Diverged, &envs["cpu"]).expect("a cause is named");
        assert!(cpu.contains("now no CUDA device in use"), "{cpu}");
    }

    #[test]
    fn no_cause_is_named_where_none_applies() {
        let (entry, envs) = fixture();
        // Identical, or the same GPU and libraries: nothing to blame on the GPU.
        assert_eq!(likely_cause(&entry, &Verdict::Identical, &envs["h100"]), None);
        assert_eq!(likely_cause(&entry, &Verdict::Diverged, &envs["h200_same"]), None);
        // Not declared bitwise.
        let mut tol = entry.clone();
        tol.determinism = Determinism::Tolerance { metric: "loss".into(), epsilon: 1e-3 };
        assert_eq!(likely_cause(&tol, &Verdict::Diverged, &envs["h100"]), None);
        // A CPU entry.
        let mut cpu = entry.clone();
        cpu.env["torch"].as_object_mut().unwrap().remove("cuda");
        assert_eq!(likely_cause(&cpu, &Verdict::Diverged, &envs["cpu"]), None);
    }

    #[test]
    fn the_fixture_entry_carries_every_gpu_fact() {
        let (entry, _) = fixture();
        let facts: crate::runtime::TorchFacts = serde_json::from_value(entry.env["torch"].clone()).unwrap();
        let cuda = facts.cuda.expect("CUDA facts");
        assert_eq!(cuda.gpus[0].name, "NVIDIA H200");
        assert!(cuda.driver.is_some() && cuda.cuda_runtime.is_some() && cuda.cudnn.is_some() && cuda.cublas.is_some());
        assert!(cuda.determinism.deterministic_algorithms && cuda.determinism.cudnn_deterministic);
    }

    #[test]
    fn the_reports_environment_section_prints_a_cuda_runs_gpu_facts() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inputs/ledger_complete.json");
        let ledger: crate::ledger::Ledger = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let render = |l: &crate::ledger::Ledger| {
            crate::report::render(l, crate::report::report_entries(l), crate::report::DEFAULT_TEMPLATE).unwrap()
        };
        assert!(!render(&ledger).contains("- GPU:"), "a CPU run's report names no GPU");
        let (cuda_entry, _) = fixture();
        let mut on_gpu = ledger.clone();
        for e in &mut on_gpu.entries {
            e.env["torch"] = cuda_entry.env["torch"].clone();
        }
        let text = render(&on_gpu);
        for needle in [
            "- GPU: NVIDIA H200 (compute capability 9.0, 140.4 GiB); NVIDIA driver 580.159.04, CUDA runtime 13.0, \
             cuDNN 9.19.0, cuBLAS 13.1.0",
            "deterministic cuDNN True, cuDNN benchmark False, TF32 in cuBLAS False",
            "CUBLAS_WORKSPACE_CONFIG :4096:8",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from the report's environment section");
        }
    }

    #[test]
    fn a_diverged_cpu_stage_names_a_different_matrix_multiply_kernel() {
        let (mut entry, _) = fixture();
        entry.env["torch"]["cuda"] = Value::Null;
        let env = |kernel: &str| serde_json::json!({"gemm": {"library": "matrixmultiply 0.3.11", "kernel": kernel}});
        entry.env["gemm"] = env("fma+avx2")["gemm"].clone();
        let cause = likely_cause(&entry, &Verdict::Diverged, &env("avx")).expect("a cause is named");
        assert!(cause.contains("recorded matrixmultiply 0.3.11 with the fma+avx2 kernel, now matrixmultiply 0.3.11 with the avx kernel"), "{cause}");
        assert_eq!(likely_cause(&entry, &Verdict::Diverged, &env("fma+avx2")), None, "same kernel: no cause named");
        assert_eq!(likely_cause(&entry, &Verdict::Identical, &env("avx")), None);
        entry.env.as_object_mut().unwrap().remove("gemm");
        let old = likely_cause(&entry, &Verdict::Diverged, &env("fma+avx2")).expect("an older recording is named");
        assert!(old.contains("predates"), "{old}");
    }
}
