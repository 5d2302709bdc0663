//! `hsx verify`: format, chain, signatures, trusted signers, config hashes, and every recorded file.
//!
//! Checks run per entry in a fixed order, so a failure names the most specific field:
//! typed form → `seq` → `experiment` → `header_sha256` → `prev` → `config_sha256` → file paths →
//! `hash` → `signature` → trusted signer → files on disk. A file that is absent (or whose root is not
//! available on this machine, e.g. no data mirror) is *missing*; present but different is *tampered*.
//! A file record is checked on disk unless a later entry wrote the same file again (a re-run stage
//! supersedes the earlier record), so an edited artifact is blamed on the entry that produced it.
//!
//! ```text
//! hsx verify --ledger ledger/exp-42.json --trusted-keys ledger/trusted_keys
//! ```
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

use super::files::{check_relative, hash_file, Root, Roots};
use super::keys::{parse_public_key, verify_hash, TrustedKeys};
use super::{entry_hash_of_value, store, Entry, Header, LedgerError, FORMAT, VERSION, ZERO_HASH};

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub trusted: Option<TrustedKeys>,
    pub require_artifacts: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    /// Entry index (its position in the file); `None` for the header.
    pub entry: Option<usize>,
    pub stage: Option<String>,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.entry, &self.stage) {
            (Some(i), Some(s)) => write!(f, "entry {i} ({s}), field `{}`: {}", self.field, self.message),
            (Some(i), None) => write!(f, "entry {i}, field `{}`: {}", self.field, self.message),
            _ => write!(f, "header, field `{}`: {}", self.field, self.message),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EntryVerdict {
    pub index: usize,
    pub seq: Option<u64>,
    pub stage: Option<String>,
    /// "ok", "missing" (ok, but some artifacts are not on disk) or "failed".
    pub verdict: String,
    pub missing: Vec<String>,
    pub superseded: usize,
    pub failure: Option<Failure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ledger: String,
    pub experiment: Option<String>,
    pub signer: Option<String>,
    pub entries: Vec<EntryVerdict>,
    pub missing_artifacts: usize,
    pub checked_artifacts: usize,
    /// The first failing check, if any.
    pub first_failure: Option<Failure>,
    pub ok: bool,
}

/// Verifies the ledger at `path`. `Err` means the file could not be read as a ledger at all (exit 2);
/// a report with `ok = false` means a check failed (exit 1).
pub fn verify_file(path: &Path, roots: &Roots, opts: &VerifyOptions) -> Result<VerifyReport, LedgerError> {
    let raw = store::read_raw(path)?;
    verify_value(&raw, path, roots, opts)
}

fn fail(entry: Option<usize>, stage: Option<&str>, field: impl Into<String>, message: impl Into<String>) -> Failure {
    Failure { entry, stage: stage.map(str::to_owned), field: field.into(), message: message.into() }
}

pub fn verify_value(raw: &Value, path: &Path, roots: &Roots, opts: &VerifyOptions) -> Result<VerifyReport, LedgerError> {
    let not_ledger = |message: String| LedgerError::Format { path: path.to_owned(), message };
    let obj = raw.as_object().ok_or_else(|| not_ledger("the top level is not a JSON object".into()))?;
    let header_raw = obj.get("header").ok_or_else(|| not_ledger("no `header` member".into()))?;
    let entries_raw = obj
        .get("entries")
        .and_then(Value::as_array)
        .ok_or_else(|| not_ledger("no `entries` array".into()))?;
    let mut report = VerifyReport {
        ledger: path.display().to_string(),
        experiment: None,
        signer: None,
        entries: Vec::new(),
        missing_artifacts: 0,
        checked_artifacts: 0,
        first_failure: None,
        ok: true,
    };
    if let Some(extra) = obj.keys().find(|k| *k != "header" && *k != "entries") {
        report.first_failure = Some(fail(None, None, extra.as_str(), "unknown top-level member"));
        report.ok = false;
        return Ok(report);
    }

    // Header.
    let header: Header = match serde_path_to_error::deserialize(header_raw) {
        Ok(h) => h,
        Err(e) => {
            report.first_failure = Some(fail(None, None, format!("header.{}", e.path()), e.inner().to_string()));
            report.ok = false;
            return Ok(report);
        }
    };
    report.experiment = Some(header.experiment.clone());
    report.signer = Some(header.signer.key_id.clone());
    let header_problem = if header.format != FORMAT {
        Some(("header.format", format!("{:?} is not {FORMAT:?}", header.format)))
    } else if header.version != VERSION {
        Some(("header.version", format!("version {} is not supported (this hsx reads {VERSION})", header.version)))
    } else if header.signer.algorithm != "ed25519" {
        Some(("header.signer.algorithm", format!("{:?} is not ed25519", header.signer.algorithm)))
    } else if let Err(e) = super::store::check_run_dir(&header.run_dir) {
        Some(("header.run_dir", e.to_string()))
    } else {
        None
    };
    if let Some((field, msg)) = header_problem {
        report.first_failure = Some(fail(None, None, field, msg));
        report.ok = false;
        return Ok(report);
    }
    let public = match parse_public_key(&header.signer.public_key) {
        Ok(p) => p,
        Err(msg) => {
            report.first_failure = Some(fail(None, None, "header.signer.public_key", msg));
            report.ok = false;
            return Ok(report);
        }
    };
    if super::keys::key_id(&public) != header.signer.key_id {
        report.first_failure = Some(fail(None, None, "header.signer.key_id", "does not match the public key"));
        report.ok = false;
        return Ok(report);
    }
    let header_sha = header.sha256();

    // The last entry that *wrote* each file: a record in an earlier entry is superseded by that re-run.
    let mut last_output: HashMap<(Root, String), usize> = HashMap::new();
    let mut typed: Vec<Option<Entry>> = Vec::with_capacity(entries_raw.len());
    for e in entries_raw {
        let t: Option<Entry> = serde_json::from_value(e.clone()).ok();
        if let Some(t) = &t {
            for r in &t.outputs {
                last_output.insert((r.root, r.path.clone()), typed.len());
            }
        }
        typed.push(t);
    }

    let mut prev_hash = ZERO_HASH.to_owned();
    for (i, e_raw) in entries_raw.iter().enumerate() {
        let mut verdict = EntryVerdict {
            index: i,
            seq: e_raw.get("seq").and_then(Value::as_u64),
            stage: e_raw.get("stage").and_then(Value::as_str).map(str::to_owned),
            verdict: "ok".into(),
            missing: Vec::new(),
            superseded: 0,
            failure: None,
        };
        let stage_name = verdict.stage.clone();
        let st = stage_name.as_deref();
        let result = check_entry(i, e_raw, &header, &header_sha, &public, &prev_hash, opts, roots, &last_output, &mut verdict);
        if let Err(f) = result {
            verdict.verdict = "failed".into();
            if report.first_failure.is_none() {
                report.first_failure = Some(f.clone());
            }
            verdict.failure = Some(f);
            report.ok = false;
        } else if !verdict.missing.is_empty() {
            verdict.verdict = "missing".into();
            report.missing_artifacts += verdict.missing.len();
            if opts.require_artifacts {
                let f = fail(Some(i), st, "outputs", format!("missing artifacts: {}", verdict.missing.join(", ")));
                if report.first_failure.is_none() {
                    report.first_failure = Some(f.clone());
                }
                verdict.verdict = "failed".into();
                verdict.failure = Some(f);
                report.ok = false;
            }
        }
        prev_hash = e_raw.get("hash").and_then(Value::as_str).unwrap_or("").to_owned();
        report.checked_artifacts += typed[i].as_ref().map(|t| t.inputs.len() + t.outputs.len()).unwrap_or(0);
        report.entries.push(verdict);
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn check_entry(
    i: usize,
    e_raw: &Value,
    header: &Header,
    header_sha: &str,
    public: &ed25519_dalek::VerifyingKey,
    prev_hash: &str,
    opts: &VerifyOptions,
    roots: &Roots,
    last_output: &HashMap<(Root, String), usize>,
    verdict: &mut EntryVerdict,
) -> Result<(), Failure> {
    let st = verdict.stage.clone();
    let st = st.as_deref();
    let e: Entry = serde_path_to_error::deserialize(e_raw)
        .map_err(|err| fail(Some(i), st, err.path().to_string(), err.inner().to_string()))?;
    if e.seq != i as u64 {
        return Err(fail(Some(i), st, "seq", format!("is {} at position {i} (an entry was removed, inserted or moved)", e.seq)));
    }
    if e.experiment != header.experiment {
        return Err(fail(Some(i), st, "experiment", format!("{:?} differs from the header's {:?}", e.experiment, header.experiment)));
    }
    if e.header_sha256 != header_sha {
        return Err(fail(Some(i), st, "header_sha256", "does not match the header (the header was edited)"));
    }
    if e.prev != prev_hash {
        return Err(fail(Some(i), st, "prev", "does not match the previous entry's hash (the chain is broken)"));
    }
    let config_sha = crate::canonical::sha256_canonical(&e.config);
    if e.config_sha256 != config_sha {
        return Err(fail(Some(i), st, "config_sha256", format!("recorded {}, but the recorded config hashes to {config_sha}", e.config_sha256)));
    }
    for (kind, list) in [("inputs", &e.inputs), ("outputs", &e.outputs)] {
        for (k, r) in list.iter().enumerate() {
            if let Err(err) = check_relative(&r.path) {
                return Err(fail(Some(i), st, format!("{kind}[{k}].path"), err.to_string()));
            }
        }
    }
    let computed = entry_hash_of_value(e_raw);
    if computed != e.hash {
        return Err(fail(Some(i), st, "hash", format!("the entry's content hashes to {computed}, not the recorded hash (a field was edited)")));
    }
    if let Err(msg) = verify_hash(public, &e.hash, &e.signature) {
        return Err(fail(Some(i), st, "signature", format!("{msg} for the header's signer {}", header.signer.key_id)));
    }
    if let Some(tk) = &opts.trusted {
        if let Err(msg) = tk.check(&header.signer, &e.finished) {
            return Err(fail(Some(i), st, "signer", msg));
        }
    }
    for (kind, list) in [("inputs", &e.inputs), ("outputs", &e.outputs)] {
        for (k, r) in list.iter().enumerate() {
            let key = (r.root, r.path.clone());
            if last_output.get(&key).is_some_and(|&j| j > i) {
                verdict.superseded += 1;
                continue;
            }
            let Some(full) = roots.get(r.root).map(|b| b.join(&r.path)) else {
                verdict.missing.push(format!("{}:{}", r.root, r.path));
                continue;
            };
            match hash_file(&full) {
                Ok((bytes, sha)) => {
                    if sha != r.sha256 || bytes != r.bytes {
                        return Err(fail(
                            Some(i),
                            st,
                            format!("{kind}[{k}]"),
                            format!(
                                "tampered: {}:{} on disk has {bytes} bytes, sha256 {sha}; recorded {} bytes, sha256 {}",
                                r.root, r.path, r.bytes, r.sha256
                            ),
                        ));
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    verdict.missing.push(format!("{}:{}", r.root, r.path));
                }
                Err(err) => {
                    return Err(fail(Some(i), st, format!("{kind}[{k}]"), format!("cannot read {}:{}: {err}", r.root, r.path)));
                }
            }
        }
    }
    Ok(())
}
