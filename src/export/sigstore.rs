//! `--format sigstore`: the envelopes of [`super::dsse`] as Sigstore bundles v0.3
//! (`application/vnd.dev.sigstore.bundle.v0.3+json`), one file per entry (`bundles/<seq>-<stage>.sigstore.json`)
//! and `bundles/head.sigstore.json`, plus the signer's key as `ledger_signer.pem` (SubjectPublicKeyInfo).
//!
//! The verification material is a **public-key hint** (the ledger header's key id): no certificate, and
//! no transparency-log entry or signed timestamp (`tlogEntries` is empty). A verifier is handed the key
//! for that hint and checks the DSSE signature; it learns nothing about *when* the signature was made
//! and no log witnessed it. `@sigstore/verify` checks such a bundle with its log and timestamp
//! thresholds set to 0 (docs/interop.md); `cosign verify-blob-attestation --key` with `--insecure-ignore-tlog`.
use serde::Serialize;

use super::dsse::{entry_document, entry_envelope, head_document, head_envelope, Envelope};
use super::{ExportError, Verified, Writer};

pub const MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// A Sigstore bundle (protobuf-specs `dev.sigstore.bundle.v1.Bundle`) in its JSON form, with the only
/// members this export fills.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: VerificationMaterial,
    pub dsse_envelope: Envelope,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    pub public_key: PublicKeyIdentifier,
    /// Always empty: the bundle was never logged.
    pub tlog_entries: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublicKeyIdentifier {
    pub hint: String,
}

fn bundle(v: &Verified, envelope: Envelope) -> Bundle {
    Bundle {
        media_type: MEDIA_TYPE.into(),
        verification_material: VerificationMaterial {
            public_key: PublicKeyIdentifier { hint: v.header.signer.key_id.clone() },
            tlog_entries: Vec::new(),
        },
        dsse_envelope: envelope,
    }
}

fn to_text(b: &Bundle) -> String {
    let mut text = serde_json::to_string_pretty(b).expect("a bundle serialises");
    text.push('\n');
    text
}

/// A file name for an entry: its zero-padded sequence number and its stage (`0007-train-A@43`).
pub fn entry_file_stem(seq: u64, stage: &str) -> String {
    let safe: String =
        stage.chars().map(|c| if c.is_ascii_alphanumeric() || "-_@.".contains(c) { c } else { '_' }).collect();
    format!("{seq:04}-{safe}")
}

pub fn write(v: &Verified, w: &mut Writer) -> Result<(), ExportError> {
    for (i, e) in v.entries.iter().enumerate() {
        let file = format!("bundles/{}.sigstore.json", entry_file_stem(e.seq, &e.stage));
        w.file(&file, to_text(&bundle(v, entry_envelope(v, i)?)).as_bytes())?;
        w.document(entry_document(v, i, &file, None));
    }
    let file = "bundles/head.sigstore.json";
    w.file(file, to_text(&bundle(v, head_envelope(v)?)).as_bytes())?;
    w.document(head_document(v, file, None));
    Ok(())
}
