//! Every entry of every shipped and fixture ledger, re-checked by an implementation nobody here wrote:
//! PyPI's `rfc8785` writes the canonical bytes, `securesystemslib` checks the ed25519 signature
//! (`scripts/interop/ledger_jcs.py`; installed by `scripts/interop-install.sh`). Entry by entry, its verdict
//! must be hsx's: same canonical bytes (so same hash), and a signature that verifies exactly where hsx's
//! verifies.
//!
//! What it cannot check, it counts and says: entries sealed before hsx refused integers beyond 2^53 (the
//! shipped exp-42's base-model, generator and train entries, whose training recipe recorded its u64 seed
//! as a JSON number; every entry of the version-1 exp-42, whose `seeds` were numbers) cannot be
//! canonicalised by any RFC 8785 implementation. Their number must be exactly the number of such entries
//! in the file, each holding the pre-fix encoding. A fresh run has none (tests/pipeline.rs and
//! `make interop-check`).
mod common;

use hsx::canonical::{first_non_i_json_number, sha256_canonical};
use hsx::ledger::{entry_canonical_bytes, keys::parse_public_key, verify_entry_signature};
use serde_json::Value;
use std::path::PathBuf;

/// The previous shipping of exp-42 (75 entries, signed by the retired key), kept with its own trusted key.
const ARCHIVED: &str = "ledger/archive/exp-42-2026-11-26/ledger/exp-42.json";

/// The ledgers in the repository: the shipped one, the archived one, and every fixture under tests/inputs.
fn ledgers() -> Vec<PathBuf> {
    let mut out = vec![common::repo_path("ledger/exp-42.json"), common::repo_path(ARCHIVED)];
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(common::repo_path("tests/inputs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    inputs.sort();
    out.extend(inputs);
    out
}

/// Where a pre-fix entry may hold a u64 as a number: the seeds (version 1) and a training recipe's seed.
fn pre_fix_path(path: &str, version: u64) -> bool {
    matches!(path, "metrics.recipe.seed" | "metrics.pretrain.recipe.seed")
        || (version == 1 && matches!(path, "seeds.master" | "seeds.stage"))
}

#[derive(Default, Debug)]
struct Counts {
    entries: usize,
    canonicalised: usize,
    valid: usize,
    integer_domain: usize,
}

#[test]
fn every_entry_of_every_repository_ledger_rechecks_with_rfc8785_and_securesystemslib() {
    let mut all = Vec::new();
    for path in ledgers() {
        let text = std::fs::read(&path).unwrap();
        let doc: Value = hsx::canonical::parse_strict(&text).unwrap();
        let version = doc["header"]["version"].as_u64().unwrap();
        let public = parse_public_key(doc["header"]["signer"]["public_key"].as_str().unwrap()).unwrap();
        let raw = doc["entries"].as_array().unwrap();
        let re = common::interop::recheck_ledger(&path);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(re.ledger["key_id_matches"], true, "{name}: the key id is not sha256 of the public key");
        assert_eq!(re.entries.len(), raw.len(), "{name}");
        let mut c = Counts { entries: raw.len(), ..Counts::default() };
        for (e, py) in raw.iter().zip(&re.entries) {
            let seq = e["seq"].as_u64().unwrap();
            let stage = e["stage"].as_str().unwrap();
            let what = format!("{name} entry {seq} ({stage})");
            let mut body = e.clone();
            let m = body.as_object_mut().unwrap();
            let (hash, sig) = (m.remove("hash").unwrap(), m.remove("signature").unwrap());
            let (hash, sig) = (hash.as_str().unwrap(), sig.as_str().unwrap());
            match first_non_i_json_number(&body) {
                Some(n) => {
                    assert_eq!(py["status"], "integer-domain", "{what}: hsx found {} = {}: {py}", n.path, n.number);
                    assert!(pre_fix_path(&n.path, version), "{what}: {} = {} is not a pre-fix u64", n.path, n.number);
                    c.integer_domain += 1;
                }
                None => {
                    assert_eq!(py["status"], "canonicalised", "{what}: {py}");
                    // The same canonical bytes: rfc8785's SHA-256 is hsx's.
                    assert_eq!(py["sha256"], sha256_canonical(&body), "{what}: rfc8785 and hsx write different bytes");
                    c.canonicalised += 1;
                    // The same verdicts on the recorded hash and signature (version 1 hashed its own
                    // form: there the RFC 8785 hash is the recorded one only where the two forms agree).
                    let hsx_hash_ok = sha256_canonical(&body) == hash;
                    assert_eq!(py["hash_matches"], hsx_hash_ok, "{what}");
                    let canonical = entry_canonical_bytes(e, version as u32);
                    let hsx_sig_ok = verify_entry_signature(version as u32, &public, &canonical, hash, sig).is_ok();
                    if hsx_hash_ok {
                        assert_eq!(py["signature"] == "valid", hsx_sig_ok, "{what}: {py}");
                        c.valid += usize::from(hsx_sig_ok);
                    }
                }
            }
        }
        eprintln!(
            "{name}: {} entries; rfc8785 canonicalised {}, of which {} match their hash and signature; {} hold \
             integers beyond 2^53 (pre-fix u64 seeds) that RFC 8785 cannot canonicalise",
            c.entries, c.canonicalised, c.valid, c.integer_domain
        );
        all.push((name, version, c));
    }
    // The shipped ledger, made after the fix: every entry canonicalises with rfc8785 and matches its hash
    // and signature.
    let (_, _, shipped) = &all[0];
    assert_eq!((shipped.valid, shipped.canonicalised, shipped.integer_domain), (shipped.entries, shipped.entries, 0));
    // The archived shipping: every entry is validly signed (hsx verify says so, tests/cli.rs), so every one
    // rfc8785 can write re-checks completely, and the rest are exactly its entries with a pre-fix seed.
    let (_, _, archived) = &all[1];
    assert_eq!(archived.valid, archived.canonicalised, "archived exp-42: {archived:?}");
    assert_eq!(archived.canonicalised + archived.integer_domain, archived.entries);
    let doc: Value = serde_json::from_slice(&std::fs::read(common::repo_path(ARCHIVED)).unwrap()).unwrap();
    let numeric_seed = |e: &Value| {
        ["/metrics/recipe/seed", "/metrics/pretrain/recipe/seed"]
            .iter()
            .any(|p| e.pointer(p).is_some_and(|s| s.is_number()))
    };
    let pre_fix = doc["entries"].as_array().unwrap().iter().filter(|e| numeric_seed(e)).count();
    assert!(pre_fix > 0, "the archived exp-42 predates the fix");
    assert_eq!(archived.integer_domain, pre_fix, "archived exp-42: entries with a numeric recipe seed");
    // The version-1 exp-42 recorded every stage seed as a number: no entry of it is RFC 8785 input.
    let v1 = all.iter().find(|(n, v, _)| n == "exp-42-v1.json" && *v == 1).expect("tests/inputs/exp-42-v1.json");
    assert_eq!(v1.2.integer_domain, v1.2.entries, "{:?}", v1.2);
}

#[test]
fn sealing_refuses_a_number_outside_i_json_and_names_its_path() {
    use hsx::ledger::{Determinism, LedgerError, Root, StageOutcome, StageSpec};
    let d = tempfile::tempdir().unwrap();
    let (path, roots) = common::fixture_ledger(d.path());
    let before = std::fs::read(&path).unwrap();
    let k = hsx::ledger::SigningKeyFile::load(&common::key(d.path(), "signer.pem")).unwrap();
    let (run, ws) = (roots.run.clone().unwrap(), roots.workspace.clone().unwrap());
    let mut w = hsx::ledger::LedgerWriter::open(&path, "fx", &hsx::ledger::Locations::new(&run, &ws), k).unwrap();
    let mut rec = hsx::ledger::Recorder {
        writer: &mut w,
        roots,
        config: serde_json::json!({"experiment": {"id": "fx", "seed": 42}}),
        master_seed: 42,
        git: hsx::ledger::GitState::NoRepository,
        env: Box::new(|| serde_json::json!({})),
    };
    let limit = hsx::canonical::I_JSON_MAX_INTEGER;
    let spec = |stage: &str| StageSpec {
        stage: stage.into(),
        params: serde_json::json!({}),
        inputs: vec![(Root::Workspace, "inputs/a.txt".into())],
        determinism: Determinism::Bitwise,
    };
    // The largest exact integer is sealed; one more is refused, named by its path, and nothing is written.
    rec.record::<std::io::Error>(spec("edge"), |_| {
        Ok(StageOutcome { outputs: vec![], metrics: serde_json::json!({"n": limit, "m": -(limit as i64)}) })
    })
    .unwrap()
    .unwrap();
    let after_edge = std::fs::read(&path).unwrap();
    assert_ne!(after_edge, before);
    let e = rec
        .record::<std::io::Error>(spec("big"), |_| {
            Ok(StageOutcome { outputs: vec![], metrics: serde_json::json!({"recipe": {"seed": limit + 1}}) })
        })
        .unwrap_err();
    match &e {
        LedgerError::NotIJson { stage, path, number } => {
            assert_eq!(
                (stage.as_str(), path.as_str(), number.as_str()),
                ("big", "metrics.recipe.seed", "9007199254740992")
            )
        }
        other => panic!("expected NotIJson, got {other}"),
    }
    assert!(e.to_string().contains("metrics.recipe.seed"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), after_edge, "a refused entry was written");
}

/// The shipped ledger, and the archived one with its pre-fix entries, pass `hsx verify` with their trusted
/// keys and the heads the README pins for each.
#[test]
fn the_shipped_and_archived_ledgers_verify_with_the_pinned_heads() {
    let readme = std::fs::read_to_string(common::repo_path("README.md")).unwrap();
    let archived_keys = ARCHIVED.replace("exp-42.json", "trusted_keys");
    for (ledger, keys) in [("ledger/exp-42.json", "ledger/trusted_keys"), (ARCHIVED, archived_keys.as_str())] {
        let line = readme
            .lines()
            .find(|l| l.contains(&format!("hsx verify --ledger {ledger} ")))
            .unwrap_or_else(|| panic!("README has no verify line for {ledger}"));
        let pinned = line
            .split("--expect-head ")
            .nth(1)
            .map(|s| s.chars().take_while(char::is_ascii_hexdigit).collect::<String>())
            .unwrap_or_else(|| panic!("README's verify line for {ledger} pins no head: {line}"));
        assert_eq!(pinned.len(), 64, "{pinned}");
        let tk = hsx::ledger::TrustedKeys::load(&common::repo_path(keys)).unwrap();
        let opts =
            hsx::ledger::verify::VerifyOptions { trusted: Some(tk), expect_head: Some(pinned), ..Default::default() };
        let rep = hsx::audit::verify(&common::repo_path(ledger), None, &opts).unwrap();
        assert!(rep.ok, "{ledger}: {:?}", rep.first_failure);
    }
}
