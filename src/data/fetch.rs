//! `hsx data fetch`: downloads the official CosmosQA files from the dataset authors' repository.
//!
//! Files come from `wilburOne/cosmosqa` at a pinned commit over HTTPS, are written to a temporary file
//! beside the target and renamed into place only after their sha256 is checked against the known hash
//! (where one is known) — a failed or interrupted download never leaves a partial file.
//!
//! ```text
//! hsx data fetch --dir data/cosmosqa
//! ```
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{known_hash, DataError};

pub const OFFICIAL_BASE_URL: &str =
    "https://raw.githubusercontent.com/wilburOne/cosmosqa/81e4213108ea1e12da5cd40488691fb3e4a4a2ee/data/";
/// Largest file accepted (train.csv is about 40 MB).
pub const MAX_DOWNLOAD_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Fetched {
    pub file: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    /// Whether a known official hash was checked (and matched).
    pub verified_known_hash: bool,
}

/// Only HTTPS, or plain HTTP to a loopback address (for tests against a local server).
fn check_url(base: &str) -> Result<(), DataError> {
    let lower = base.to_ascii_lowercase();
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|p| lower.starts_with(p));
    if lower.starts_with("https://") || loopback {
        Ok(())
    } else {
        Err(DataError::Missing(format!(
            "refusing base URL {base:?}: only https:// (or http:// to loopback) is allowed"
        )))
    }
}

/// Downloads `files` from `base_url` into `dir`.
pub fn fetch(base_url: &str, files: &[String], dir: &Path) -> Result<Vec<Fetched>, DataError> {
    check_url(base_url)?;
    std::fs::create_dir_all(dir).map_err(|source| DataError::Io { path: dir.to_owned(), source })?;
    let agent = ureq::AgentBuilder::new().timeout_connect(std::time::Duration::from_secs(20)).build();
    let mut out = Vec::new();
    for file in files {
        if file.contains('/') || file.starts_with('.') {
            return Err(DataError::Missing(format!("{file:?} is not a plain file name")));
        }
        let url = format!("{}/{}", base_url.trim_end_matches('/'), file);
        let target = dir.join(file);
        let resp = agent.get(&url).call().map_err(|e| {
            DataError::Missing(format!(
                "could not download {url}: {e} (no network? use HSX_DATA_MIRROR for an offline copy)"
            ))
        })?;
        let io = |source| DataError::Io { path: target.clone(), source };
        let mut reader = resp.into_reader().take(MAX_DOWNLOAD_BYTES + 1);
        // Into `dir` only, through a temporary file that is renamed into place once the hash checks out.
        let (total, sha, expected) = crate::fsx::write_with(dir, &target, |f| {
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0u64;
            loop {
                let n = reader
                    .read(&mut buf)
                    .map_err(|e| DataError::Missing(format!("download of {url} broke off: {e}")))?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if total > MAX_DOWNLOAD_BYTES {
                    return Err(DataError::Missing(format!("{url} is larger than {MAX_DOWNLOAD_BYTES} bytes")));
                }
                h.update(&buf[..n]);
                f.write_all(&buf[..n]).map_err(io)?;
            }
            let sha = hex::encode(h.finalize());
            let expected = known_hash(file);
            if let Some(exp) = expected.filter(|exp| *exp != sha) {
                return Err(DataError::HashMismatch { path: PathBuf::from(&url), expected: exp.into(), actual: sha });
            }
            Ok((total, sha, expected))
        })?;
        out.push(Fetched {
            file: file.clone(),
            path: target,
            bytes: total,
            sha256: sha,
            verified_known_hash: expected.is_some(),
        });
    }
    Ok(out)
}
