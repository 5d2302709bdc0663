//! The portable CPU pins win over contrary outer settings: the `hsx` binary, started with an outer
//! environment asking libtorch for other kernels, trains the smoke profile's base model to the same bytes
//! as with no outer settings; unpinned (`HSX_CPU_PINS=native`) the same outer setting moves the bytes, so
//! the comparison can fail. Each entry records the pins and what they replaced.
mod common;

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn hsx(ws: &Path, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(common::hsx_bin());
    c.current_dir(ws)
        .env("HSX_DATA_MIRROR", common::mirror())
        .env("HSX_SIGNING_KEY", common::key(ws, "k.pem"))
        .env_remove("HSX_CPU_PINS")
        .env_remove("HSX_CPU_PINS_OVERRODE");
    for (k, _) in hsx::runtime::PORTABLE_PINS {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs one stage of the smoke profile; returns its ledger entry.
fn stage(ws: &Path, stage: &str, env: &[(&str, &str)]) -> Value {
    let out = hsx(ws, env)
        .args(["-q", "run", "--config"])
        .arg(common::repo_path("configs/smoke.toml"))
        .args(["--ledger", "ledger.json", "--only", stage])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hsx run --only {stage} with {env:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ledger: Value = serde_json::from_slice(&std::fs::read(ws.join("ledger.json")).unwrap()).unwrap();
    ledger["entries"].as_array().unwrap().last().unwrap().clone()
}

fn model_sha(entry: &Value) -> String {
    entry["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["path"].as_str().unwrap().ends_with("model.safetensors"))
        .map(|o| o["sha256"].as_str().unwrap().to_owned())
        .expect("base-model records model.safetensors")
}

#[test]
fn pinned_base_model_bytes_do_not_move_with_outer_kernel_settings() {
    let ws = tempfile::tempdir().unwrap();
    let ws = ws.path();
    stage(ws, "prepare", &[]);
    let plain = stage(ws, "base-model", &[]);
    let pins = &plain["env"]["torch"]["cpu_pins"];
    assert_eq!(pins["mode"], "portable");
    for (k, v) in hsx::runtime::PORTABLE_PINS {
        assert_eq!(pins["settings"][k], v, "entry records pin {k}");
    }
    assert_eq!(pins["mkl_cbwr"], "COMPATIBLE,STRICT", "MKL reports its CNR setting in effect");
    let reference = model_sha(&plain);

    let contrary: [&[(&str, &str)]; 3] = [
        &[("ATEN_CPU_CAPABILITY", "default")],
        &[("MKL_CBWR", "AUTO"), ("ONEDNN_MAX_CPU_ISA", "SSE41")],
        &[("ATEN_CPU_CAPABILITY", "avx512"), ("MKL_CBWR", "AVX2,STRICT"), ("OMP_DYNAMIC", "TRUE")],
    ];
    for env in contrary {
        let e = stage(ws, "base-model", env);
        assert_eq!(model_sha(&e), reference, "outer {env:?} moved the pinned base model's bytes");
        let overridden: Vec<String> = e["env"]["torch"]["cpu_pins"]["overridden"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect();
        for (k, v) in env {
            assert!(
                overridden.contains(&format!("{k}={v}")),
                "entry names the replaced outer setting {k}={v}: {overridden:?}"
            );
        }
    }

    // Unpinned, the same outer setting reaches libtorch and moves the bytes: the comparison above can fail.
    let native = stage(ws, "base-model", &[("HSX_CPU_PINS", "native"), ("ATEN_CPU_CAPABILITY", "default")]);
    assert_eq!(native["env"]["torch"]["cpu_capability"], "DEFAULT");
    assert_eq!(native["env"]["torch"]["cpu_pins"]["mode"], "native");
    assert_ne!(model_sha(&native), reference, "ATen's baseline kernels should give other bytes than its AVX2 kernels");
}

#[test]
fn an_unknown_pin_mode_is_refused_by_name() {
    let ws = tempfile::tempdir().unwrap();
    let out = hsx(ws.path(), &[("HSX_CPU_PINS", "fast")]).args(["verify", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HSX_CPU_PINS=\"fast\"") && err.contains("portable"), "{err}");
}

#[test]
fn a_pin_the_libraries_cannot_honour_is_refused_by_name() {
    // Explicit mode takes the environment as given; MKL runs its named branches on Intel processors only,
    // so on any other CPU this asks for a path MKL will not run, and hsx must say so instead of recording
    // a setting that is not in effect. On an Intel CPU the run succeeds with MKL's AVX2 branch in effect.
    // A workspace of its own: a run directory belongs to one ledger.
    let ws = tempfile::tempdir().unwrap();
    let ws = ws.path();
    let out = hsx(ws, &[("HSX_CPU_PINS", "explicit"), ("MKL_CBWR", "AVX2,STRICT")])
        .args(["-q", "run", "--config"])
        .arg(common::repo_path("configs/smoke.toml"))
        .args(["--ledger", "explicit.json", "--only", "prepare"])
        .output()
        .unwrap();
    let ledger = ws.join("explicit.json");
    if out.status.success() {
        let l: Value = serde_json::from_slice(&std::fs::read(&ledger).unwrap()).unwrap();
        assert_eq!(l["entries"][0]["env"]["torch"]["cpu_pins"]["mkl_cbwr"], "AVX2,STRICT");
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("MKL_CBWR=AVX2,STRICT") && err.contains("does not support"), "{err}");
    }
}
