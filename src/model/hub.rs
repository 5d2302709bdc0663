//! A Hugging Face model directory as hsx sees it: the files it reads (the model's identity) and, as
//! provenance only, the hub revision a download left beside them.
//!
//! **Identity.** hsx reads exactly [`MODEL_FILES`] from an HF-format T5 directory (`load_t5`,
//! `load_t5_lora`, the checkpoint checks): the config, the single-file safetensors weights and the fast
//! tokenizer. Those files, hashed, are the base model's identity: the stage input, the resume key, what
//! `reproduce` compares. Everything else a download holds — other weight formats (`pytorch_model.bin`,
//! `tf_model.h5`, `flax_model.msgpack`), `spiece.model`, `generation_config.json`, `README.md`, and
//! `.cache/huggingface/` — is never opened and changes nothing.
//!
//! **Provenance.** `huggingface-cli download … --local-dir DIR` writes, for each file it fetched,
//! `DIR/.cache/huggingface/download/<file>.metadata`: three lines, the commit hash of the revision it came
//! from, the file's etag (for a file stored in Git LFS, the SHA-256 of its bytes; otherwise the git blob
//! id, SHA-1 of `blob <length>\0<bytes>`), and the time of the download as Unix seconds (huggingface_hub's
//! `_local_folder.py`). [`provenance`] reads the first two for each identity file, checks the etag
//! against the file, and reports the revision. The time differs between two downloads of the same bytes,
//! which is why these files are recorded (in `base-model`'s metrics), never hashed as inputs.
use serde::Serialize;
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The files of an HF-format T5 directory that hsx reads, and so the base model's identity.
pub const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// Where a `--local-dir` download keeps its per-file metadata, relative to the directory.
pub const DOWNLOAD_METADATA_DIR: &str = ".cache/huggingface/download";

/// The hub revision the identity files came from, as the download recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct HubProvenance {
    /// The commit every identity file's metadata names; `None` when they name different commits or a file
    /// has no (readable) metadata.
    pub revision: Option<String>,
    /// Per identity file that has metadata.
    pub files: BTreeMap<String, HubFile>,
    /// What could not be read or does not agree, each naming the file.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct HubFile {
    pub commit: String,
    pub etag: String,
    /// "sha256" (a Git LFS file) or "git-blob-sha1".
    pub etag_kind: String,
    /// Whether the file's bytes are the ones the etag names.
    pub matches_file: bool,
}

/// Reads the download metadata of the identity files in `dir`. `None` when the directory has no
/// `.cache/huggingface/download` (copied by hand, or downloaded without `--local-dir`). `sha256_of`
/// hashes a file (the caller passes the ledger's memoised hash, so nothing is hashed twice).
pub fn provenance(dir: &Path, sha256_of: impl Fn(&Path) -> std::io::Result<String>) -> Option<HubProvenance> {
    let meta_dir = dir.join(DOWNLOAD_METADATA_DIR);
    if !meta_dir.is_dir() {
        return None;
    }
    let mut files = BTreeMap::new();
    let mut problems = Vec::new();
    for name in MODEL_FILES {
        let meta = meta_dir.join(format!("{name}.metadata"));
        if !meta.exists() {
            problems.push(format!("{}: absent (the file was not downloaded with this metadata)", meta.display()));
            continue;
        }
        match read_metadata(&meta).and_then(|(commit, etag)| {
            let file = dir.join(name);
            let (etag_kind, matches_file) = check_etag(&file, &etag, &sha256_of)
                .map_err(|e| format!("{}: cannot check against its etag: {e}", file.display()))?;
            Ok(HubFile { commit, etag, etag_kind: etag_kind.into(), matches_file })
        }) {
            Ok(f) => {
                if !f.matches_file {
                    problems.push(format!(
                        "{name}: its bytes are not the ones {} names (etag {}): changed since the download",
                        meta.display(),
                        f.etag
                    ));
                }
                files.insert(name.to_owned(), f);
            }
            Err(e) => problems.push(e),
        }
    }
    let commits: std::collections::BTreeSet<&str> = files.values().map(|f| f.commit.as_str()).collect();
    let revision = match (commits.len(), files.len()) {
        (1, n) if n == MODEL_FILES.len() => commits.into_iter().next().map(str::to_owned),
        (0 | 1, _) => None,
        _ => {
            problems.push(format!(
                "the identity files come from different revisions: {}",
                files.iter().map(|(n, f)| format!("{n} at {}", f.commit)).collect::<Vec<_>>().join(", ")
            ));
            None
        }
    };
    Some(HubProvenance { revision, files, problems })
}

/// (commit, etag) from a `.metadata` file; an error names the file and the line.
fn read_metadata(path: &Path) -> Result<(String, String), String> {
    let mut text = String::new();
    crate::ledger::files::open_regular(path, crate::fsx::Limit::HUB_METADATA)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut lines = text.lines();
    let mut line = |n: usize, what: &str, ok: &dyn Fn(&str) -> bool| -> Result<String, String> {
        match lines.next().map(str::trim) {
            Some(l) if ok(l) => Ok(l.to_owned()),
            Some(l) => Err(format!("{}: line {n} should be {what}, found {l:?}", path.display())),
            None => Err(format!("{}: line {n} ({what}) is missing", path.display())),
        }
    };
    let commit = line(1, "a 40-hex-digit commit hash", &|l| is_hex(l, 40))?;
    let etag = line(2, "an etag (40 or 64 hex digits)", &|l| is_hex(l, 40) || is_hex(l, 64))?;
    line(3, "the download time in Unix seconds", &|l| l.parse::<f64>().is_ok_and(f64::is_finite))?;
    Ok((commit, etag))
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A 64-digit etag is the file's SHA-256 (Git LFS); a 40-digit one its git blob id.
fn check_etag(
    file: &Path,
    etag: &str,
    sha256_of: &dyn Fn(&Path) -> std::io::Result<String>,
) -> std::io::Result<(&'static str, bool)> {
    if etag.len() == 64 {
        return Ok(("sha256", sha256_of(file)? == etag));
    }
    let f = crate::ledger::files::open_regular(file, crate::fsx::Limit::WEIGHTS)?;
    let len = f.size();
    let mut h = Sha1::new();
    h.update(format!("blob {len}\0").as_bytes());
    let mut reader = f.take(len + 1);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(("git-blob-sha1", hex::encode(h.finalize()) == etag))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(p: &Path) -> std::io::Result<String> {
        crate::ledger::files::hash_file(p).map(|(_, s)| s)
    }

    #[test]
    fn the_revision_comes_from_the_download_metadata_and_each_etag_is_checked() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(provenance(d.path(), sha256), None, "no .cache/huggingface: nothing to say");
        let meta = d.path().join(DOWNLOAD_METADATA_DIR);
        std::fs::create_dir_all(&meta).unwrap();
        let commit = "7bcac572ce56db69c1ea7c8af255c5d7c9672fc2";
        for (name, bytes) in
            [("config.json", &b"{}"[..]), ("model.safetensors", b"weights"), ("tokenizer.json", b"tok")]
        {
            std::fs::write(d.path().join(name), bytes).unwrap();
            let etag = if name == "model.safetensors" {
                crate::canonical::sha256_hex(bytes)
            } else {
                // git hash-object: SHA-1 of "blob <len>\0" + bytes.
                let mut h = Sha1::new();
                h.update(format!("blob {}\0", bytes.len()).as_bytes());
                h.update(bytes);
                hex::encode(h.finalize())
            };
            std::fs::write(meta.join(format!("{name}.metadata")), format!("{commit}\n{etag}\n1712656091.123\n"))
                .unwrap();
        }
        let p = provenance(d.path(), sha256).unwrap();
        assert_eq!(p.revision.as_deref(), Some(commit));
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(p.files["model.safetensors"].etag_kind, "sha256");
        assert_eq!(p.files["config.json"].etag_kind, "git-blob-sha1");
        assert!(p.files.values().all(|f| f.matches_file));

        // An edited file no longer matches its etag; another commit for one file leaves no single revision.
        std::fs::write(d.path().join("tokenizer.json"), b"edited").unwrap();
        let other = "0".repeat(40);
        let cfg_meta = std::fs::read_to_string(meta.join("config.json.metadata")).unwrap();
        std::fs::write(meta.join("config.json.metadata"), cfg_meta.replacen(commit, &other, 1)).unwrap();
        let p = provenance(d.path(), sha256).unwrap();
        assert_eq!(p.revision, None);
        assert!(!p.files["tokenizer.json"].matches_file);
        assert!(p.problems.iter().any(|m| m.contains("tokenizer.json: its bytes are not")), "{:?}", p.problems);
        assert!(p.problems.iter().any(|m| m.contains("different revisions")), "{:?}", p.problems);

        // A malformed file is named with its line.
        std::fs::write(meta.join("model.safetensors.metadata"), "not-a-commit\n").unwrap();
        let p = provenance(d.path(), sha256).unwrap();
        assert!(p.problems.iter().any(|m| m.contains("model.safetensors.metadata: line 1")), "{:?}", p.problems);
    }
}
