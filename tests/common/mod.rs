//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod interop;
use std::path::{Path, PathBuf};

use hsx::ledger::{
    Determinism, GitState, LedgerWriter, Locations, Recorder, Root, Roots, SigningKeyFile, StageOutcome, StageSpec,
};
use serde_json::json;

/// The offline CosmosQA mirror (a directory holding `cosmosqa/valid.csv`), absolute.
pub fn mirror() -> PathBuf {
    let m = std::env::var_os("HSX_DATA_MIRROR").unwrap_or_else(|| {
        panic!(
            "HSX_DATA_MIRROR is not set: run the tests with `make test` (its bootstrap downloads CosmosQA's \
             dev split into the cache and points HSX_DATA_MIRROR at it), or set HSX_DATA_MIRROR to a \
             directory holding cosmosqa/valid.csv"
        )
    });
    let p = PathBuf::from(m);
    let p = if p.is_absolute() { p } else { Path::new(env!("CARGO_MANIFEST_DIR")).join(p) };
    let csv = p.join("cosmosqa/valid.csv");
    assert!(
        csv.is_file(),
        "HSX_DATA_MIRROR={} holds no cosmosqa/valid.csv (unset it and run `make test` to download it)",
        p.display()
    );
    p.canonicalize().unwrap()
}

/// The hsx binary under test: `HSX_TEST_BIN` when set (see [`repo_path`]), else the one cargo built.
pub fn hsx_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| std::env::var("HSX_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_hsx").to_owned()))
}

/// A path in the repository: under `HSX_TEST_REPO` when set (a test binary built elsewhere and run in
/// another checkout, as scripts/gpu-check.sh can), else where the tests were compiled.
pub fn repo_path(rel: &str) -> PathBuf {
    match std::env::var_os("HSX_TEST_REPO") {
        Some(root) => PathBuf::from(root).join(rel),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(rel),
    }
}

/// The device the model tests run on: `HSX_TEST_DEVICE` (cpu by default; scripts/gpu-check.sh sets
/// cuda to run the parity tests on a GPU).
pub fn test_device() -> tch::Device {
    let name = std::env::var("HSX_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    hsx::model::parse_device(&name).unwrap_or_else(|e| panic!("HSX_TEST_DEVICE={name}: {e}"))
}

pub fn key(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join("keys").join(name);
    if !p.exists() {
        SigningKeyFile::generate(&p, false).unwrap();
    }
    p
}

/// A fixture ledger of four entries written by the real recorder: three small stages that read and
/// write files (one writes a directory), plus a fourth that re-reads an earlier output.
/// Returns (ledger path, roots).
pub fn fixture_ledger(dir: &Path) -> (PathBuf, Roots) {
    let ws = dir.join("ws");
    let run = ws.join("runs/fx");
    std::fs::create_dir_all(ws.join("inputs")).unwrap();
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(ws.join("inputs/a.txt"), "alpha\nbeta\n").unwrap();
    let roots = Roots { run: Some(run.clone()), data: None, workspace: Some(ws.clone()) };
    let ledger = ws.join("ledger/fx.json");
    let k = SigningKeyFile::load(&key(dir, "signer.pem")).unwrap();
    let mut w = LedgerWriter::open(&ledger, "fx", &Locations::new(&run, &ws), k).unwrap();
    let config =
        json!({"experiment": {"id": "fx", "seed": 42}, "train": {"lr": 3e-4, "epochs": 3}, "flag": true, "none": null});
    let mut rec = Recorder {
        writer: &mut w,
        roots: roots.clone(),
        config: config.clone(),
        master_seed: 42,
        git: GitState::Repository {
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            dirty: true,
            diff_sha256: Some("ab".repeat(32)),
        },
        env: Box::new(|| json!({"os": "test", "cores": 2, "torch": {"threads": 2, "deterministic": true}})),
    };
    let run2 = run.clone();
    rec.record::<std::io::Error>(
        StageSpec {
            stage: "ingest".into(),
            params: json!({"n": 2}),
            inputs: vec![(Root::Workspace, "inputs/a.txt".into())],
            determinism: Determinism::Bitwise,
        },
        |ctx| {
            std::fs::create_dir_all(run2.join("ingest"))?;
            std::fs::write(run2.join("ingest/out.txt"), format!("seed {}\n", ctx.seed))?;
            Ok(StageOutcome {
                outputs: vec![(Root::Run, "ingest/out.txt".into())],
                metrics: json!({"rows": 2, "share": 0.5}),
            })
        },
    )
    .unwrap()
    .unwrap();
    rec.record::<std::io::Error>(
        StageSpec {
            stage: "transform".into(),
            params: json!({"scale": 1.5, "names": ["x", "y"]}),
            inputs: vec![(Root::Run, "ingest/out.txt".into())],
            determinism: Determinism::Tolerance { metric: "loss".into(), epsilon: 1e-6 },
        },
        |_| {
            std::fs::create_dir_all(run2.join("transform/model"))?;
            std::fs::write(run2.join("transform/model/a.bin"), [1u8, 2, 3])?;
            std::fs::write(run2.join("transform/model/b.json"), "{}")?;
            Ok(StageOutcome {
                outputs: vec![(Root::Run, "transform/model".into())],
                metrics: json!({"loss": [2.5, 1.25], "best": {"epoch": 1, "ok": true}, "note": null}),
            })
        },
    )
    .unwrap()
    .unwrap();
    rec.record::<std::io::Error>(
        StageSpec {
            stage: "summarize".into(),
            params: json!({}),
            inputs: vec![(Root::Run, "transform/model/a.bin".into())],
            determinism: Determinism::Nondeterministic { reason: "test".into() },
        },
        |_| {
            std::fs::write(run2.join("summary.json"), "{\"f1\": 0.25}\n")?;
            Ok(StageOutcome { outputs: vec![(Root::Run, "summary.json".into())], metrics: json!({"f1": 0.25}) })
        },
    )
    .unwrap()
    .unwrap();
    rec.record::<std::io::Error>(
        StageSpec {
            stage: "check".into(),
            params: json!({"k": "v"}),
            inputs: vec![(Root::Run, "summary.json".into())],
            determinism: Determinism::Bitwise,
        },
        |_| Ok(StageOutcome { outputs: vec![], metrics: json!({"passed": true}) }),
    )
    .unwrap()
    .unwrap();
    drop(rec);
    drop(w);
    (ledger, roots)
}

/// libtorch's RNG and thread count are process-wide: tests that seed and draw from it hold this.
pub fn torch_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Appends a stage that reads and writes nothing (to a ledger or a Slurm job's fragment); the recorder's
/// error, if any.
pub fn append(w: &mut dyn hsx::ledger::Append, stage: &str) -> Result<(), hsx::ledger::LedgerError> {
    let mut rec = Recorder {
        writer: w,
        roots: Roots::default(),
        config: json!({}),
        master_seed: 1,
        git: GitState::NoRepository,
        env: Box::new(|| json!({})),
    };
    let spec = StageSpec { stage: stage.into(), params: json!({}), inputs: vec![], determinism: Determinism::Bitwise };
    rec.record::<std::io::Error>(spec, |_| Ok(StageOutcome::default()))?.unwrap();
    Ok(())
}
