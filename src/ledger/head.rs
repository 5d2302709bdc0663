//! The ledger's head (last sequence number and hash), the signed head file written beside the ledger,
//! and the head a rendered report cites. See the module docs of [`crate::ledger`].
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

use super::keys::SigningKeyFile;
use super::{Header, Ledger, LedgerError, HEAD_PAYLOAD_TYPE, ZERO_HASH};

/// The last entry of a ledger: its sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seq {}, sha256 {}", self.seq, self.hash)
    }
}

/// The text a report uses to cite the head it was rendered from: `ledger head: seq N, sha256 <hex>`.
/// [`cited_heads`] finds it anywhere in a line (case-insensitive prefix), so a template can put it in a
/// table cell or a sentence.
pub fn citation(head: &Head) -> String {
    format!("ledger head: {head}")
}

/// Every head cited in `text` (see [`citation`]).
pub fn cited_heads(text: &str) -> Vec<Head> {
    let mut out = Vec::new();
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("ledger head: seq ") {
        let start = from + pos + "ledger head: seq ".len();
        from = start;
        let rest = &text[start..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let Ok(seq) = digits.parse::<u64>() else { continue };
        let rest = &rest[digits.len()..];
        let Some(rest) = rest.strip_prefix(", sha256 ") else { continue };
        let hash: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        if hash.len() == 64 {
            out.push(Head { seq, hash });
        }
    }
    out
}

/// Parses the argument of `--expect-head`: a 64-hex entry hash, optionally prefixed `sha256:`.
pub fn parse_expected(s: &str) -> Result<String, String> {
    let h = s.trim().strip_prefix("sha256:").unwrap_or(s.trim());
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(h.to_ascii_lowercase())
    } else {
        Err(format!("--expect-head {s:?} is not a 64-hex-digit entry hash"))
    }
}

/// The signed head file beside a ledger: `x.json` → `x.head.json`, `x` → `x.head.json`.
pub fn head_path_for(ledger: &Path) -> PathBuf {
    let name = ledger.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "ledger".into());
    let stem = name.strip_suffix(".json").unwrap_or(&name);
    ledger.with_file_name(format!("{stem}.head.json"))
}

/// A signed statement of how many entries a ledger has and its last hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHead {
    pub payload_type: String,
    pub experiment: String,
    pub header_sha256: String,
    /// Number of entries.
    pub entries: u64,
    /// The last entry's `seq` (`null` when there are none).
    pub seq: Option<u64>,
    /// The last entry's `hash` (64 zeros when there are none).
    pub hash: String,
    pub signature: String,
}

impl SignedHead {
    fn statement(&self) -> Value {
        let mut v = serde_json::to_value(self).expect("head serialises");
        if let Value::Object(m) = &mut v {
            m.remove("signature");
        }
        v
    }

    /// The signed statement's canonical (RFC 8785) bytes: every member but `signature`. The signature is
    /// over `PAE(HEAD_PAYLOAD_TYPE, these bytes)`, so they are a DSSE envelope's payload as they are.
    pub fn payload(&self) -> String {
        crate::canonical::to_canonical_string(&self.statement())
    }

    fn signed_bytes(&self) -> Vec<u8> {
        crate::canonical::pae(HEAD_PAYLOAD_TYPE, self.payload().as_bytes())
    }

    pub fn new(ledger: &Ledger, key: &SigningKeyFile) -> Self {
        Self::from_parts(&ledger.header, ledger.entries.len() as u64, ledger.head(), key)
    }

    /// A signed head for a ledger with this header, `entries` entries and last entry `head`.
    pub fn from_parts(header: &Header, entries: u64, head: Option<Head>, key: &SigningKeyFile) -> Self {
        let mut h = SignedHead {
            payload_type: HEAD_PAYLOAD_TYPE.into(),
            experiment: header.experiment.clone(),
            header_sha256: header.sha256(),
            entries,
            seq: head.as_ref().map(|h| h.seq),
            hash: head.map(|h| h.hash).unwrap_or_else(|| ZERO_HASH.into()),
            signature: String::new(),
        };
        h.signature = key.sign_bytes(&h.signed_bytes());
        h
    }

    /// Reads a head file as untrusted input; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<Self>, String> {
        // Beside its ledger: a regular file (no link followed), at most `Limit::HEAD`.
        let text = match crate::fsx::read_string(crate::fsx::dir_of(path), path, crate::fsx::Limit::HEAD) {
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.to_string()),
            Ok(text) => text,
        };
        super::spelling::refuse_bom(text.as_bytes(), "the signed head")
            .map_err(|m| format!("{}: {m}", path.display()))?;
        let v = crate::canonical::parse_strict(text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_value(v).map(Some).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Checks the head against the ledger: signed by the header's signer, same experiment and header,
    /// and naming an entry the ledger has. A head *behind* the ledger (a crash between writing the
    /// ledger and its head) is accepted: the later entries are signed too.
    pub fn check(
        &self,
        header: &Header,
        public: &ed25519_dalek::VerifyingKey,
        hashes: &[String],
    ) -> Result<(), String> {
        if self.payload_type != HEAD_PAYLOAD_TYPE {
            return Err(format!("payload_type {:?} is not {HEAD_PAYLOAD_TYPE:?}", self.payload_type));
        }
        super::keys::verify_bytes(public, &self.signed_bytes(), &self.signature)
            .map_err(|m| format!("{m} for the header's signer {}", header.signer.key_id))?;
        if self.experiment != header.experiment || self.header_sha256 != header.sha256() {
            return Err("belongs to another ledger (its experiment or header hash differs)".into());
        }
        let n = hashes.len() as u64;
        if self.entries > n {
            return Err(format!(
                "the signed head says the ledger had {} entries (last {}), but the file has {n}: entries were cut off (rollback or truncation)",
                self.entries, self.hash
            ));
        }
        if self.entries == 0 {
            return if self.seq.is_none() && self.hash == ZERO_HASH {
                Ok(())
            } else {
                Err("is malformed (no entries but a head)".into())
            };
        }
        let i = (self.entries - 1) as usize;
        if self.seq != Some(i as u64) || hashes[i] != self.hash {
            return Err(format!(
                "the signed head names entry {} with hash {}, but the ledger's entry {i} has hash {} (the ledger was forked or rewritten)",
                self.seq.map(|s| s.to_string()).unwrap_or_else(|| "none".into()),
                self.hash,
                hashes[i]
            ));
        }
        Ok(())
    }

    pub fn write(&self, path: &Path) -> Result<(), LedgerError> {
        let mut text = serde_json::to_string_pretty(self).expect("head serialises");
        text.push('\n');
        super::files::write_bytes_atomic(path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_are_found_and_parsed() {
        let h = Head { seq: 12, hash: "ab".repeat(32) };
        let text = format!("| provenance | {} |\nother", citation(&h));
        assert_eq!(cited_heads(&text), vec![h]);
        assert!(cited_heads("ledger head: seq x, sha256 00").is_empty());
    }

    #[test]
    fn head_file_names() {
        assert_eq!(head_path_for(Path::new("ledger/exp-42.json")), PathBuf::from("ledger/exp-42.head.json"));
        assert_eq!(head_path_for(Path::new("l")), PathBuf::from("l.head.json"));
        assert!(parse_expected(&format!("sha256:{}", "A".repeat(64))).is_ok());
        assert!(parse_expected("abc").is_err());
    }
}
