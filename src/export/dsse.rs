//! `--format dsse`: `ledger.dsse.jsonl`, one DSSE v1 envelope per line — every entry in ledger order,
//! then the signed head — re-wrapping the ledger signer's own signatures.
//!
//! An entry's envelope: `payloadType` = `application/vnd.hsx.ledger-entry+json; version=2`, `payload` =
//! base64 of the entry's RFC 8785 canonical bytes without its `hash` and `signature` (so the entry's
//! `hash` is the SHA-256 of the decoded payload), and one signature `{keyid: <the header's key id>,
//! sig: <base64 of the entry's ed25519 signature>}`. The head's: `payloadType` =
//! `application/vnd.hsx.ledger-head+json; version=2`, `payload` = its canonical statement (experiment,
//! header hash, entry count, last seq and hash). Any DSSE verifier with the signer's public key checks
//! them: securesystemslib, `@sigstore/verify` (through [`super::sigstore`]), in-toto's tools.
use serde::{Deserialize, Serialize};

use super::{b64, Document, ExportError, Verified, Writer};
use crate::ledger::{SigningKeyFile, ENTRY_PAYLOAD_TYPE, HEAD_PAYLOAD_TYPE};

pub const FILE: &str = "ledger.dsse.jsonl";

/// A DSSE v1 envelope in its JSON form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Base64 (standard alphabet, padded) of the signed bytes.
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub keyid: String,
    /// Base64 of the 64 signature bytes.
    pub sig: String,
}

impl Envelope {
    /// An envelope around bytes already signed: `sig_hex` is an hsx signature (lowercase hex) over
    /// `PAE(payload_type, payload)`.
    pub fn rewrap(payload_type: &str, payload: &[u8], keyid: &str, sig_hex: &str) -> Result<Self, ExportError> {
        let sig = crate::ledger::keys::decode_lower_hex(sig_hex, "signature").map_err(ExportError::Usage)?;
        Ok(Envelope {
            payload: b64(payload),
            payload_type: payload_type.into(),
            signatures: vec![Signature { keyid: keyid.into(), sig: b64(&sig) }],
        })
    }

    /// A new envelope, signed by `key` over `PAE(payload_type, payload)`.
    pub fn sign(payload_type: &str, payload: &[u8], keyid: &str, key: &SigningKeyFile) -> Result<Self, ExportError> {
        let sig = key.sign_bytes(&crate::canonical::pae(payload_type, payload));
        Self::rewrap(payload_type, payload, keyid, &sig)
    }

    /// One JSON line.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("an envelope serialises")
    }
}

/// The envelope of entry `i` of a verified ledger: the signed canonical bytes and their signature.
pub fn entry_envelope(v: &Verified, i: usize) -> Result<Envelope, ExportError> {
    let payload = crate::ledger::entry_canonical_bytes(&v.raw_entries[i], 2);
    Envelope::rewrap(ENTRY_PAYLOAD_TYPE, payload.as_bytes(), &v.header.signer.key_id, &v.entries[i].signature)
}

/// The envelope of the ledger's signed head.
pub fn head_envelope(v: &Verified) -> Result<Envelope, ExportError> {
    Envelope::rewrap(HEAD_PAYLOAD_TYPE, v.head.payload().as_bytes(), &v.header.signer.key_id, &v.head.signature)
}

/// What each re-wrapped envelope is, for `export.json`.
pub fn entry_document(v: &Verified, i: usize, file: &str, line: Option<usize>) -> Document {
    let e = &v.entries[i];
    Document {
        file: file.into(),
        line,
        kind: "entry",
        seq: Some(e.seq),
        stage: Some(e.stage.clone()),
        entry_hash: Some(e.hash.clone()),
        payload_type: ENTRY_PAYLOAD_TYPE.into(),
        keyid: v.header.signer.key_id.clone(),
    }
}

pub fn head_document(v: &Verified, file: &str, line: Option<usize>) -> Document {
    Document {
        file: file.into(),
        line,
        kind: "head",
        seq: v.head.seq,
        stage: None,
        entry_hash: Some(v.head.hash.clone()),
        payload_type: HEAD_PAYLOAD_TYPE.into(),
        keyid: v.header.signer.key_id.clone(),
    }
}

pub fn write(v: &Verified, w: &mut Writer) -> Result<(), ExportError> {
    let mut text = String::new();
    for i in 0..v.entries.len() {
        text.push_str(&entry_envelope(v, i)?.to_line());
        text.push('\n');
        w.document(entry_document(v, i, FILE, Some(i + 1)));
    }
    text.push_str(&head_envelope(v)?.to_line());
    text.push('\n');
    w.document(head_document(v, FILE, Some(v.entries.len() + 1)));
    w.file(FILE, text.as_bytes())
}
