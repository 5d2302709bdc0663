//! Verify benchmark: time and peak memory of `hsx verify` on generated ledgers of N entries.
//!
//! [`generate`] writes a version-2 ledger of `n` realistic entries (a ~1.5 KB config, an environment
//! block, metrics, four file records over a small set of real files), properly chained and signed by a
//! throwaway key, plus its signed head. [`run`] generates each size, then runs `hsx bench verify
//! --child <ledger>` in a fresh process per size, so the peak resident memory reported (`VmHWM` from
//! /proc) belongs to that one verification. `benches/verify.py` times a Python peer on the same files.
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::head::{head_path_for, SignedHead};
use super::keys::SigningKeyFile;
use super::{Determinism, Entry, GitState, Header, LedgerError, Seeds, FORMAT, VERSION, ZERO_HASH};

/// One measured verification.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct VerifyMeasurement {
    pub entries: usize,
    pub ledger_bytes: u64,
    /// Wall-clock seconds of the verification (parse, chain, hashes, signatures, file checks).
    pub verify_seconds: f64,
    /// Peak resident memory of the verifying process, KiB (VmHWM).
    pub peak_rss_kib: Option<u64>,
    pub ok: bool,
}

/// Writes a ledger of `n` entries into `dir` (with `dir/ws/runs/bench` holding its files). Returns the path.
pub fn generate(dir: &Path, n: usize) -> Result<PathBuf, LedgerError> {
    let io = |p: &Path, source| LedgerError::Io { path: p.to_owned(), source };
    let ws = dir.join("ws");
    let run = ws.join("runs/bench");
    std::fs::create_dir_all(run.join("shared")).map_err(|e| io(&run, e))?;
    std::fs::create_dir_all(ws.join("ledger")).map_err(|e| io(&ws, e))?;
    let keydir = dir.join("key");
    std::fs::create_dir_all(&keydir).map_err(|e| io(&keydir, e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&keydir, std::fs::Permissions::from_mode(0o700));
    }
    let key_path = keydir.join("bench.pem");
    let key =
        if key_path.exists() { SigningKeyFile::load(&key_path)? } else { SigningKeyFile::generate(&key_path, false)? };
    let mut files = Vec::new();
    for k in 0..4 {
        let rel = format!("shared/f{k}.bin");
        let body: Vec<u8> = (0..64 * 1024).map(|i| ((i * 31 + k * 7) % 251) as u8).collect();
        crate::fsx::write(&run, &run.join(&rel), &body)?;
        files.push(super::FileRecord {
            root: super::Root::Run,
            path: rel,
            bytes: body.len() as u64,
            sha256: crate::canonical::sha256_hex(&body),
        });
    }
    let config = json!({
        "experiment": {"id": "bench", "seed": 42, "runs_dir": "runs", "report_dir": "report"},
        "data": {"dir": "data/cosmosqa", "files": ["train.csv", "valid.csv"], "max_examples": 2000},
        "model": {"kind": "scratch", "d_model": 128, "layers": 2, "heads": 4, "vocab": 32128},
        "train": {"lr": 3e-4, "epochs": 3, "batch": 8, "warmup": 0.06, "weight_decay": 0.01, "max_input_tokens": 384},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "targets": ["q", "v"]},
        "eval": {"bertscore_model": "all-MiniLM-L6-v2", "layer": 6, "rouge_stemmer": true},
        "synth": {"multiplier": 2, "temperature": 0.7, "top_p": 0.9, "attempt_cap": 10000},
        "filters": {"min_len": 8, "max_len": 512, "ngram": 8, "dedup_threshold": 0.8, "toxicity": false},
        "runtime": {"threads": 2, "deterministic": true},
    });
    let env = json!({"os": "linux", "arch": "x86_64", "cores": 2, "hsx_version": env!("CARGO_PKG_VERSION"),
                     "torch": {"version": "2.x", "threads": 2, "deterministic": true, "avx2": true}, "host": "bench"});
    let config_sha = crate::canonical::sha256_canonical(&config);
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        experiment: "bench".into(),
        run_dir: "../runs/bench".into(),
        workspace: Some("..".into()),
        created: "2026-01-01T00:00:00.000000Z".into(),
        signer: key.signer(),
    };
    let header_sha = header.sha256();
    // Streamed to disk one entry at a time (compact JSON), so generating 100k entries needs little memory.
    use std::io::Write;
    let path = ws.join(format!("ledger/bench-{n}.json"));
    let wio = |e| LedgerError::Io { path: path.clone(), source: e };
    let last = crate::fsx::write_with(&ws, &path, |w| -> Result<Option<Entry>, LedgerError> {
        write!(w, "{{\"header\":{},\"entries\":[", serde_json::to_string(&header).expect("header serialises"))
            .map_err(wio)?;
        let mut last: Option<Entry> = None;
        let mut prev = ZERO_HASH.to_owned();
        for i in 0..n {
            let t = |s: u64| {
                let secs = 1_767_225_600 + (i as u64) * 10 + s;
                time::OffsetDateTime::from_unix_timestamp(secs as i64)
                    .ok()
                    .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
                    .unwrap_or_default()
            };
            let mut e = Entry {
                seq: i as u64,
                stage: format!("stage-{}", i % 13),
                experiment: "bench".into(),
                header_sha256: header_sha.clone(),
                prev: prev.clone(),
                started: t(0),
                finished: t(5),
                git: GitState::Repository {
                    commit: "0123456789abcdef0123456789abcdef01234567".into(),
                    dirty: false,
                    diff_sha256: None,
                },
                env: env.clone(),
                seeds: Seeds { master: 42, stage: super::stage_seed(42, &format!("stage-{i}")) },
                params: json!({"stage": i % 13, "lr": 3e-4}),
                config: config.clone(),
                config_sha256: config_sha.clone(),
                inputs: vec![files[i % 4].clone(), files[(i + 1) % 4].clone()],
                outputs: vec![files[(i + 2) % 4].clone(), files[(i + 3) % 4].clone()],
                determinism: Determinism::Bitwise,
                metrics: json!({"loss": [2.5, 1.25, 0.625 + i as f64 * 1e-6], "f1": 0.4206, "em": 0.0006, "n": i}),
                hash: String::new(),
                signature: String::new(),
            };
            e.seal(&key)?;
            prev = e.hash.clone();
            if i > 0 {
                w.write_all(b",").map_err(wio)?;
            }
            serde_json::to_writer(&mut *w, &e).map_err(|e| wio(e.into()))?;
            last = Some(e);
        }
        w.write_all(b"]}\n").map_err(wio)?;
        Ok(last)
    })?;
    let head = last.map(|e| super::Head { seq: e.seq, hash: e.hash });
    SignedHead::from_parts(&header, n as u64, head, &key).write(&head_path_for(&path))?;
    Ok(path)
}

/// Peak resident memory of this process so far, KiB (Linux `VmHWM`).
pub fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Verifies `ledger` in this process and measures it (the child side of [`run`]).
pub fn measure_here(ledger: &Path) -> Result<VerifyMeasurement, LedgerError> {
    let bytes = std::fs::metadata(ledger).map_err(|source| LedgerError::Io { path: ledger.to_owned(), source })?.len();
    let t0 = Instant::now();
    let rep = super::verify::verify_at(ledger, None, &Default::default())?;
    let secs = t0.elapsed().as_secs_f64();
    Ok(VerifyMeasurement {
        entries: rep.entries.len(),
        ledger_bytes: bytes,
        verify_seconds: secs,
        peak_rss_kib: peak_rss_kib(),
        ok: rep.ok,
    })
}

/// Generates ledgers of each size under `dir` and measures each verification in a fresh process
/// running `exe bench verify --child <ledger>` (the hsx binary).
pub fn run(exe: &Path, dir: &Path, sizes: &[usize]) -> Result<Vec<VerifyMeasurement>, String> {
    let mut out = Vec::new();
    for &n in sizes {
        let path = generate(dir, n).map_err(|e| e.to_string())?;
        let o = std::process::Command::new(exe)
            .args(["--json", "bench", "verify", "--child"])
            .arg(&path)
            .output()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        if !o.status.success() {
            return Err(format!("verify child for {n} entries failed: {}", String::from_utf8_lossy(&o.stderr)));
        }
        let v: Value = serde_json::from_slice(&o.stdout).map_err(|e| format!("child output: {e}"))?;
        let m: VerifyMeasurement = serde_json::from_value(v.clone()).map_err(|e| format!("child output {v}: {e}"))?;
        out.push(m);
    }
    Ok(out)
}

/// The whole `hsx bench verify` command (the CLI only forwards its arguments): prints one JSON line
/// per size (`--child`: one measurement of that ledger).
pub fn cli(dir: Option<&Path>, sizes: &[usize], child: Option<&Path>) -> Result<u8, String> {
    if let Some(ledger) = child {
        let m = measure_here(ledger).map_err(|e| e.to_string())?;
        println!("{}", serde_json::to_string(&m).expect("measurement serialises"));
        return Ok(if m.ok { 0 } else { 1 });
    }
    let dir = match dir {
        Some(d) => d.to_owned(),
        None => std::env::var_os("HSX_CACHE")
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|c| c.join("hsx")))
            .ok_or("no cache directory: pass --dir")?
            .join("bench/verify"),
    };
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    for m in run(&exe, &dir, sizes)? {
        println!("{}", serde_json::to_string(&m).expect("measurement serialises"));
        if !m.ok {
            return Err(format!("the generated {}-entry ledger did not verify", m.entries));
        }
    }
    Ok(0)
}
