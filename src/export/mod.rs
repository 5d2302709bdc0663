//! `hsx export`: a verified ledger in the formats of other ecosystems' verifiers, so a reviewer can check
//! it with tools nobody here wrote (docs/interop.md shows how, command by command).
//!
//! ```text
//! hsx export --format dsse|sigstore|in-toto|slsa --ledger L --out DIR [--trusted-keys F] [--expect-head H]
//! ```
//!
//! Every format starts from [`load_verified`]: the ledger must pass `hsx verify` ([`crate::audit::verify`],
//! with the trusted keys and the pinned head given) and must not change while it is read, or nothing is
//! written. Only version-2 ledgers are exported: version 1 signed the raw digest, not a DSSE
//! pre-authentication encoding, so no DSSE tool can check its signatures.
//!
//! Two kinds of output:
//!
//! * **re-wrapped** ([`Format::Dsse`], [`Format::Sigstore`]): a version-2 entry's signature already is a
//!   DSSE v1 signature over the entry's canonical bytes ([`crate::ledger::ENTRY_PAYLOAD_TYPE`]), and the
//!   signed head's over its statement ([`crate::ledger::HEAD_PAYLOAD_TYPE`]). These exports put the very
//!   bytes that were signed into envelopes beside the ledger signer's signature: nothing is signed anew and
//!   no private key is needed. Key id: the ledger header's `sha256:<hex>`.
//! * **new documents** ([`Format::InToto`], [`Format::Slsa`]): an in-toto layout and links, or in-toto
//!   statements, did not exist when the ledger was signed. They are signed now by the *export signer*, the
//!   key of the person exporting (`--key`, `HSX_SIGNING_KEY`, or `hsx keygen`'s), who may differ from the
//!   ledger's signer; `export.json` names both. Key id: securesystemslib's (hex SHA-256 of the canonical
//!   JSON of the key), the form in-toto's verifiers match signatures by.
//!
//! Every export writes `export.json` ([`Manifest`]): which ledger (experiment, header hash, head), both
//! signers, and each document written with its kind, entry and payload type.
//!
//! Adding a format: a variant in [`Format`] (and [`Format::ALL`], its name, whether it signs new
//! documents), one file in this folder with a `write(&Verified, &mut Writer, …)`, and its arm in [`export`].
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::ledger::head::{head_path_for, SignedHead};
use crate::ledger::verify::VerifyOptions;
use crate::ledger::{keys, Entry, Header, Ledger, LedgerError, SigningKeyFile, TrustedKeys};

pub mod dsse;
pub mod hf;
pub mod intoto;
pub mod mlflow;
pub mod recorded;
pub mod sigstore;
pub mod slsa;

/// An export format: one value of `hsx export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One DSSE envelope per entry and one for the signed head, as JSON lines.
    Dsse,
    /// The same envelopes as Sigstore bundles v0.3 with a public-key hint, and the key as PEM.
    Sigstore,
    /// An in-toto layout (the stage graph) and one signed link per entry.
    InToto,
    /// An in-toto Statement v1 with the SLSA Provenance v1 predicate per train and evaluate entry.
    Slsa,
    /// A Hugging Face dataset (human, AI-contaminated and synthetic configs) and a model card per adapter.
    Hf,
    /// A parent run per ledger and a child run per stage instance in an MLflow tracking server.
    Mlflow,
}

impl Format {
    pub const ALL: [Format; 6] =
        [Format::Dsse, Format::Sigstore, Format::InToto, Format::Slsa, Format::Hf, Format::Mlflow];

    pub const fn name(self) -> &'static str {
        match self {
            Format::Dsse => "dsse",
            Format::Sigstore => "sigstore",
            Format::InToto => "in-toto",
            Format::Slsa => "slsa",
            Format::Hf => "hf",
            Format::Mlflow => "mlflow",
        }
    }

    /// Whether the format is a provenance format written by [`export`] (with `export.json`); `hf` and
    /// `mlflow` are views of the run, written by [`hf::export`] and [`mlflow::export`].
    pub const fn is_provenance(self) -> bool {
        !matches!(self, Format::Hf | Format::Mlflow)
    }

    /// Whether the format's documents are new and signed by the export signer (see the module docs).
    pub const fn signs_new_documents(self) -> bool {
        match self {
            Format::Dsse | Format::Sigstore | Format::Hf | Format::Mlflow => false,
            Format::InToto | Format::Slsa => true,
        }
    }

    pub fn parse(s: &str) -> Result<Format, String> {
        Format::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| {
            format!("unknown export format {s:?}; formats are: {}", Format::ALL.map(Format::name).join(", "))
        })
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(
        "ledger {path} does not verify, so hsx will not export it: {failure}; run `hsx verify --ledger {path}` \
         for the full report"
    )]
    Unverified { path: PathBuf, failure: String },
    #[error("ledger {path} changed while it was being exported; export again")]
    Changed { path: PathBuf },
    #[error(
        "ledger {path} is format version {version}: its signatures are over the raw digest, not a DSSE \
         pre-authentication encoding, so no DSSE, Sigstore or in-toto tool can check them; only version-2 \
         ledgers are exported"
    )]
    Version { path: PathBuf, version: u32 },
    #[error("--format {format} signs new documents with the export signer's key: {source}")]
    Key { format: Format, source: keys::KeyError },
    #[error("{path}: {message}")]
    Out { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("the ledger has no `{stage}` entry; {hint}")]
    MissingStage { stage: String, hint: String },
    #[error("entry #{seq} ({stage}): {message}")]
    Entry { seq: u64, stage: String, message: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path} differs from what entry #{seq} ({stage}) recorded: {found}; refusing to export it")]
    Tampered { path: PathBuf, seq: u64, stage: String, found: String },
    #[error("MLflow {endpoint}: {message}")]
    Mlflow { endpoint: String, message: String },
    #[error(transparent)]
    Fs(#[from] crate::fsx::FsError),
}

impl ExportError {
    fn entry(e: &Entry, message: impl Into<String>) -> Self {
        ExportError::Entry { seq: e.seq, stage: e.stage.clone(), message: message.into() }
    }

    fn file(path: &Path, message: impl std::fmt::Display) -> Self {
        ExportError::File { path: path.to_owned(), message: message.to_string() }
    }
}

/// A ledger that passed `hsx verify`, as it was read: the raw entries (the bytes their signatures are
/// over are derived from these, never from a re-serialised typed entry) and their typed form.
#[derive(Debug)]
pub struct Verified {
    pub path: PathBuf,
    pub header: Header,
    pub raw_entries: Vec<Value>,
    pub entries: Vec<Entry>,
    pub head: SignedHead,
    pub signer: ed25519_dalek::VerifyingKey,
}

/// Reads the ledger at `path` for export: it must pass `hsx verify` (trusted keys and pinned head as
/// given; recorded files that are absent are reported missing, not failed, as `hsx verify` does), be
/// format version 2, and hold the same bytes before and after the check.
pub fn load_verified(
    path: &Path,
    mirror: Option<&Path>,
    trusted: Option<&TrustedKeys>,
    expect_head: Option<&str>,
) -> Result<Verified, ExportError> {
    let read = || -> Result<Vec<u8>, ExportError> {
        Ok(crate::fsx::read_file(path, crate::fsx::Limit::LEDGER).map_err(LedgerError::from)?)
    };
    let before = read()?;
    let opts = VerifyOptions {
        trusted: trusted.cloned(),
        require_artifacts: false,
        expect_head: expect_head.map(str::to_owned),
        structure_only: false,
    };
    let report = crate::audit::verify(path, mirror, &opts)?;
    if !report.ok {
        let failure = report.first_failure.map(|f| f.to_string()).unwrap_or_else(|| "a check failed".into());
        return Err(ExportError::Unverified { path: path.to_owned(), failure });
    }
    let head_path = head_path_for(path);
    let head = SignedHead::read(&head_path).map_err(|message| ExportError::Unverified {
        path: path.to_owned(),
        failure: format!("signed head: {message}"),
    })?;
    if read()? != before {
        return Err(ExportError::Changed { path: path.to_owned() });
    }
    let format = |message: String| LedgerError::Format { path: path.to_owned(), message };
    let raw = crate::canonical::parse_strict(&before).map_err(|e| format(e.to_string()))?;
    let ledger: Ledger = serde_json::from_value(raw.clone()).map_err(|e| format(e.to_string()))?;
    if ledger.header.version != 2 {
        return Err(ExportError::Version { path: path.to_owned(), version: ledger.header.version });
    }
    let raw_entries = match raw {
        Value::Object(mut m) => match m.remove("entries") {
            Some(Value::Array(items)) => items,
            _ => return Err(format("no `entries` array".into()).into()),
        },
        _ => return Err(format("the top level is not a JSON object".into()).into()),
    };
    let signer = keys::parse_public_key(&ledger.header.signer.public_key).map_err(format)?;
    // The checks `hsx verify` made, on the bytes read here: each entry's signature over its canonical
    // bytes, and the signed head against these entries.
    for (e, v) in ledger.entries.iter().zip(&raw_entries) {
        let canonical = crate::ledger::entry_canonical_bytes(v, 2);
        if crate::canonical::sha256_hex(canonical.as_bytes()) != e.hash {
            return Err(format(format!("entry {}: hash does not match its canonical bytes", e.seq)).into());
        }
        crate::ledger::verify_entry_signature(2, &signer, &canonical, &e.hash, &e.signature)
            .map_err(|m| format(format!("entry {}: {m}", e.seq)))?;
    }
    let head = head.ok_or_else(|| ExportError::Unverified {
        path: path.to_owned(),
        failure: format!("no signed head {}", head_path.display()),
    })?;
    let hashes: Vec<String> = ledger.entries.iter().map(|e| e.hash.clone()).collect();
    head.check(&ledger.header, &signer, &hashes).map_err(|m| ExportError::Unverified {
        path: path.to_owned(),
        failure: format!("signed head {}: {m}", head_path.display()),
    })?;
    Ok(Verified { path: path.to_owned(), header: ledger.header, raw_entries, entries: ledger.entries, head, signer })
}

/// What `hsx export` was asked to do.
pub struct ExportOptions<'a> {
    pub format: Format,
    pub ledger: &'a Path,
    pub out: &'a Path,
    pub mirror: Option<&'a Path>,
    pub trusted: Option<&'a TrustedKeys>,
    pub expect_head: Option<&'a str>,
    /// The export signer's key file (needed by formats that sign new documents).
    pub key: &'a Path,
    /// in-toto: when the layout expires (default: one year after the export).
    pub expires: Option<time::OffsetDateTime>,
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub format: String,
    pub out: String,
    pub ledger: String,
    pub ledger_signer: String,
    pub export_signer: Option<String>,
    pub documents: usize,
    pub files: Vec<String>,
    /// Entries whose canonical bytes hold numbers outside I-JSON's range (ledgers sealed before hsx
    /// refused them): their signatures verify, but RFC 8785 tools cannot re-derive their bytes.
    pub entries_outside_i_json: Vec<u64>,
}

/// `export.json`: which ledger an export came from, who signed what, and every document written.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub format: String,
    pub hsx_version: String,
    pub ledger: LedgerRef,
    /// The key that signed the ledger (and so the re-wrapped entry and head envelopes).
    pub ledger_signer: SignerRef,
    /// The key that signed the new documents (in-toto, SLSA); `None` for re-wrapping formats.
    pub export_signer: Option<SignerRef>,
    pub documents: Vec<Document>,
    pub entries_outside_i_json: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LedgerRef {
    pub experiment: String,
    pub header_sha256: String,
    pub entries: u64,
    pub head_seq: Option<u64>,
    pub head_hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SignerRef {
    /// hsx's key id: `sha256:` + hex SHA-256 of the 32 public-key bytes.
    pub key_id: String,
    /// securesystemslib's key id (in-toto's): hex SHA-256 of the key's canonical JSON.
    pub sslib_keyid: String,
    /// The 32 public-key bytes, lowercase hex.
    pub public_key: String,
    /// The public key as a PEM (SubjectPublicKeyInfo) file in the export directory.
    pub pem_file: String,
}

/// One document of an export.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    /// Relative to the export directory.
    pub file: String,
    /// The line of a JSON-lines file (1-based), when the file holds several documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// `entry`, `head`, `layout`, `link` or `statement`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The entry's hash (entries, links, statements) or the head's last hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_hash: Option<String>,
    pub payload_type: String,
    /// The key id in the document's signature.
    pub keyid: String,
}

/// Collects what a format writes into the export directory.
pub struct Writer {
    dir: PathBuf,
    files: Vec<String>,
    documents: Vec<Document>,
}

impl Writer {
    /// Writes `bytes` to `rel` under the export directory (creating folders).
    pub fn file(&mut self, rel: &str, bytes: &[u8]) -> Result<(), ExportError> {
        // Through fsx: nothing planted in the export directory (a link, `..`) redirects the write.
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            crate::fsx::create_dirs(&self.dir, parent).map_err(LedgerError::from)?;
        }
        crate::fsx::write(&self.dir, &path, bytes).map_err(LedgerError::from)?;
        self.files.push(rel.to_owned());
        Ok(())
    }

    pub fn document(&mut self, d: Document) {
        self.documents.push(d);
    }
}

/// Runs an export: verifies the ledger, writes the format's files and `export.json` into `opts.out`,
/// which must not exist yet or be empty.
pub fn export(opts: &ExportOptions) -> Result<ExportSummary, ExportError> {
    if !opts.format.is_provenance() {
        return Err(view_format(opts.format));
    }
    let v = load_verified(opts.ledger, opts.mirror, opts.trusted, opts.expect_head)?;
    let signer = if opts.format.signs_new_documents() {
        Some(SigningKeyFile::load(opts.key).map_err(|source| ExportError::Key { format: opts.format, source })?)
    } else {
        None
    };
    prepare_out(opts.out)?;
    let mut w = Writer { dir: opts.out.to_owned(), files: Vec::new(), documents: Vec::new() };
    let ledger_signer = signer_ref(&v.signer, "ledger_signer.pem");
    w.file(&ledger_signer.pem_file, public_key_pem(&v.signer)?.as_bytes())?;
    let export_signer = match &signer {
        Some(k) => {
            let r = signer_ref(&k.public(), "export_signer.pem");
            w.file(&r.pem_file, public_key_pem(&k.public())?.as_bytes())?;
            Some(r)
        }
        None => None,
    };
    let now = time::OffsetDateTime::now_utc();
    match (opts.format, &signer) {
        (Format::Dsse, _) => dsse::write(&v, &mut w)?,
        (Format::Sigstore, _) => sigstore::write(&v, &mut w)?,
        (Format::InToto, Some(k)) => {
            let expires = opts.expires.unwrap_or(now + time::Duration::days(365));
            if expires <= now {
                return Err(ExportError::Usage(format!("--expires {expires} is not in the future")));
            }
            intoto::write(&v, k, expires, &mut w)?
        }
        (Format::Slsa, Some(k)) => slsa::write(&v, k, &mut w)?,
        (Format::InToto | Format::Slsa, None) => unreachable!("signs_new_documents loaded a key"),
        (Format::Hf | Format::Mlflow, _) => return Err(view_format(opts.format)),
    }
    let outside = entries_outside_i_json(&v);
    let manifest = Manifest {
        format: opts.format.name().into(),
        hsx_version: env!("CARGO_PKG_VERSION").into(),
        ledger: LedgerRef {
            experiment: v.header.experiment.clone(),
            header_sha256: v.header.sha256(),
            entries: v.head.entries,
            head_seq: v.head.seq,
            head_hash: v.head.hash.clone(),
        },
        ledger_signer: ledger_signer.clone(),
        export_signer: export_signer.clone(),
        documents: w.documents.clone(),
        entries_outside_i_json: outside.clone(),
    };
    let mut text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    text.push('\n');
    w.file("export.json", text.as_bytes())?;
    Ok(ExportSummary {
        format: opts.format.name().into(),
        out: opts.out.display().to_string(),
        ledger: opts.ledger.display().to_string(),
        ledger_signer: ledger_signer.key_id,
        export_signer: export_signer.map(|s| s.key_id),
        documents: w.documents.len(),
        files: w.files,
        entries_outside_i_json: outside,
    })
}

fn view_format(f: Format) -> ExportError {
    ExportError::Usage(format!(
        "--format {f} is a view of the run (export::{}::export), not a provenance format",
        f.name()
    ))
}

/// The sequence numbers of entries holding a number outside I-JSON's exact range.
pub fn entries_outside_i_json(v: &Verified) -> Vec<u64> {
    v.entries
        .iter()
        .zip(&v.raw_entries)
        .filter(|(_, raw)| crate::canonical::first_non_i_json_number(raw).is_some())
        .map(|(e, _)| e.seq)
        .collect()
}

fn prepare_out(out: &Path) -> Result<(), ExportError> {
    match std::fs::read_dir(out) {
        Ok(mut d) => {
            if d.next().is_some() {
                return Err(ExportError::Out {
                    path: out.to_owned(),
                    message: "is not empty; export into a new or empty directory".into(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(|e| ExportError::Out { path: out.to_owned(), message: e.to_string() })
        }
        Err(e) => Err(ExportError::Out { path: out.to_owned(), message: e.to_string() }),
    }
}

fn signer_ref(public: &ed25519_dalek::VerifyingKey, pem_file: &str) -> SignerRef {
    SignerRef {
        key_id: keys::key_id(public),
        sslib_keyid: sslib_keyid(public),
        public_key: hex::encode(public.as_bytes()),
        pem_file: pem_file.into(),
    }
}

/// The public key as PEM-armoured SubjectPublicKeyInfo (RFC 8410), what in-toto, securesystemslib,
/// cosign and Node's `crypto.createPublicKey` read.
pub fn public_key_pem(public: &ed25519_dalek::VerifyingKey) -> Result<String, ExportError> {
    use ed25519_dalek::pkcs8::EncodePublicKey;
    public
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| ExportError::Usage(format!("cannot encode the public key as PEM: {e}")))
}

/// securesystemslib's key dictionary of an ed25519 key (`keytype`, `scheme`, `keyval.public` = hex).
pub fn sslib_key(public: &ed25519_dalek::VerifyingKey) -> Value {
    serde_json::json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": hex::encode(public.as_bytes())}})
}

/// securesystemslib's default key id: hex SHA-256 of the canonical JSON of [`sslib_key`]. Its canonical
/// JSON is OLPC's (sorted keys, no whitespace, only `"` and `\` escaped); for this value — ASCII strings,
/// no numbers — that is byte for byte what RFC 8785 writes, so hsx's canonical writer computes it.
pub fn sslib_keyid(public: &ed25519_dalek::VerifyingKey) -> String {
    crate::canonical::sha256_canonical(&sslib_key(public))
}

/// Standard base64 with padding, as DSSE (and the protobuf JSON of Sigstore bundles) writes bytes.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A recorded file's artifact name in every export: `<root>/<path>` (`run/prepare/human_train.jsonl`,
/// `data/valid.csv`, `workspace/report/REPORT.md`).
pub fn artifact_name(f: &crate::ledger::FileRecord) -> String {
    format!("{}/{}", f.root, f.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_and_list_themselves() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.name()), Ok(f));
        }
        let e = Format::parse("spdx").unwrap_err();
        assert!(e.contains("dsse, sigstore, in-toto, slsa"), "{e}");
    }

    #[test]
    fn sslib_keyid_is_the_hash_of_the_olpc_canonical_key() {
        let public = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        // The OLPC canonical form written out by hand: sorted keys, no whitespace.
        let olpc = format!(
            r#"{{"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
            hex::encode(public.as_bytes())
        );
        assert_eq!(sslib_keyid(&public), crate::canonical::sha256_hex(olpc.as_bytes()));
        let pem = public_key_pem(&public).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    }
}
