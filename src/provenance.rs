//! Provenance facts for ledger entries: the machine (sysinfo), the build, and the git state (git2).
//!
//! libtorch facts (version, CPU capability, threads, determinism, CUDA) come from `runtime` and are
//! passed in, so this module (like the ledger) has no libtorch dependency.
use serde_json::{json, Value};
use std::path::Path;

use crate::ledger::GitState;

/// Folders hsx itself writes; changes there do not make the code tree dirty.
const OUTPUT_DIRS: [&str; 3] = ["ledger/", "runs/", "report/"];

/// The machine and build, as JSON for an entry's `env`; `torch` is `runtime::facts()` serialised.
pub fn environment(torch: Value) -> Value {
    use sysinfo::System;
    let mut sys = System::new();
    sys.refresh_memory();
    sys.refresh_cpu_all();
    let cpu = sys.cpus().first().map(|c| c.brand().trim().to_owned()).unwrap_or_default();
    json!({
        "os": System::long_os_version().unwrap_or_default(),
        "kernel": System::kernel_version().unwrap_or_default(),
        "arch": std::env::consts::ARCH,
        "cpu_model": cpu,
        "logical_cores": sys.cpus().len(),
        "physical_cores": System::physical_core_count(),
        "memory_bytes": sys.total_memory(),
        "hsx_version": env!("CARGO_PKG_VERSION"),
        "rustc": env!("HSX_RUSTC_VERSION"),
        "cargo_lock_sha256": env!("HSX_CARGO_LOCK_SHA256"),
        "torch": torch,
    })
}

/// The git state of the repository containing `dir`: HEAD commit, whether tracked files differ from HEAD
/// (outside hsx's own output folders), and the sha256 of that diff.
pub fn git_state(dir: &Path) -> GitState {
    let Ok(repo) = git2::Repository::discover(dir) else {
        return GitState::NoRepository;
    };
    let Ok(commit) = repo.head().and_then(|h| h.peel_to_commit()) else {
        return GitState::NoRepository;
    };
    let tree = commit.tree().ok();
    let mut opts = git2::DiffOptions::new();
    opts.include_untracked(false);
    let diff = match repo.diff_tree_to_workdir_with_index(tree.as_ref(), Some(&mut opts)) {
        Ok(d) => d,
        Err(_) => return GitState::Repository { commit: commit.id().to_string(), dirty: true, diff_sha256: None },
    };
    let mut patch = Vec::new();
    let _ = diff.print(git2::DiffFormat::Patch, |delta, _hunk, line| {
        let path = delta.new_file().path().or(delta.old_file().path());
        let ours = path.and_then(|p| p.to_str()).is_some_and(|p| OUTPUT_DIRS.iter().any(|d| p.starts_with(d)));
        if !ours {
            if matches!(line.origin(), '+' | '-' | ' ') {
                patch.push(line.origin() as u8);
            }
            patch.extend_from_slice(line.content());
        }
        true
    });
    let dirty = !patch.is_empty();
    GitState::Repository {
        commit: commit.id().to_string(),
        dirty,
        diff_sha256: dirty.then(|| crate::canonical::sha256_hex(&patch)),
    }
}

/// What a stage entry records about the Slurm job that ran it (`env.slurm`), when it ran in one.
pub fn slurm_job() -> Option<Value> {
    let id = std::env::var("SLURM_JOB_ID").ok()?;
    let var = |k: &str| std::env::var(k).ok().map(Value::String).unwrap_or(Value::Null);
    Some(
        json!({ "job_id": id, "job_name": var("SLURM_JOB_NAME"), "node": var("SLURMD_NODENAME"), "cpus_per_task": var("SLURM_CPUS_PER_TASK") }),
    )
}
