//! `--only` / `--from` keep the ledger verifiable: after a full smoke run, random sequences of
//! `hsx run`, `hsx run --only <stage>` and `hsx run --from <stage>` each leave a ledger that
//! `hsx verify` (the binary: chain, files, the re-rendered REPORT.md) accepts with nothing missing.
//! Cases: HSX_SEQUENCE_CASES (default 1) sequences of 3 commands from seeded random choices; the first
//! sequence starts with `--only compare` (byte-identical outputs, which used to break the report check).
mod common;

use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::Command;

fn hsx(ws: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(common::hsx_bin())
        .args(args)
        .env("HSX_DATA_MIRROR", common::mirror())
        .current_dir(ws)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn random_only_and_from_sequences_on_the_smoke_profile_keep_the_ledger_verifiable() {
    let cases: u64 = std::env::var("HSX_SEQUENCE_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let stages: Vec<&str> = hsx::pipeline::STAGES.iter().map(|(s, _)| *s).collect();
    let cfg = common::repo_path("configs/smoke.toml");
    let cfg = cfg.to_str().unwrap();
    let ws = tempfile::tempdir().unwrap();
    let key = common::key(ws.path(), "k.pem");
    let key = key.to_str().unwrap();
    let base = ["run", "--config", cfg, "--ledger", "ledger/smoke.json", "--key", key];
    let (code, out) = hsx(ws.path(), &base);
    assert_eq!(code, 0, "initial run: {out}");
    for case in 0..cases {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1000 + case);
        for step in 0..3 {
            let mut args: Vec<&str> = base.to_vec();
            let (what, stage) = if case == 0 && step == 0 {
                (1, "compare")
            } else {
                (rng.gen_range(0..3), stages[rng.gen_range(0..stages.len())])
            };
            match what {
                0 => {}
                1 => args.extend(["--only", stage]),
                _ => args.extend(["--from", stage]),
            }
            eprintln!("case {case} step {step}: hsx {}", args[base.len()..].join(" "));
            let (code, out) = hsx(ws.path(), &args);
            assert_eq!(code, 0, "case {case} step {step} {args:?}: {out}");
            let (code, out) = hsx(ws.path(), &["verify", "--ledger", "ledger/smoke.json", "--require-artifacts"]);
            assert_eq!(code, 0, "case {case} step {step}: verify after {:?} failed:\n{out}", &args[base.len()..]);
        }
    }
}
