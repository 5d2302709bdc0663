//! Signing keys (ed25519, PKCS#8 PEM, mode 0600, outside the repository) and trusted-key lists.
//!
//! `ledger/trusted_keys` is line based, like ssh's `allowed_signers`:
//!
//! ```text
//! # key-id                 [options]                                          algorithm public-key (hex)
//! sha256:3f1c…             valid-after=2026-01-01T00:00:00Z,valid-before=2027-01-01T00:00:00Z ed25519 9a0b…
//! sha256:77aa…             ed25519 0c1d…
//! ```
//!
//! Options are optional; a key is trusted for an entry whose `started` and `finished` times (and the
//! header's `created`) lie in its window `[valid-after, valid-before)`. Each key id may appear on one
//! line only (a second line would silently widen or narrow the first), and a window whose end is not
//! after its start is an error, not a window that never matches.
//!
//! A signing key is refused when it is not a regular file (a FIFO would hang the reader), when group
//! or others can read it, when it lies inside a git work tree (one `git add -A` from being published)
//! or when any directory above it is writable by group or others without the sticky bit (someone else
//! could swap the key).
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use std::path::{Path, PathBuf};

use super::Signer;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("signing key {path} already exists; pass --force to replace it (entries it signed stay verifiable only with its public key)")]
    Exists { path: PathBuf },
    #[error("signing key {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("signing key {path} is not an ed25519 PKCS#8 PEM key: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("no signing key at {path}; create one with `hsx keygen` (or pass --key / set HSX_SIGNING_KEY)")]
    Missing { path: PathBuf },
    #[error("trusted keys {path} line {line}: {message}")]
    Trusted { path: PathBuf, line: usize, message: String },
    #[error("{path}: {message}")]
    Location { path: PathBuf, message: String },
}

/// Reads a small regular file (a key, `trusted_keys`) through [`crate::fsx::read_file_string`]: FIFOs,
/// devices, sockets and directories are refused without blocking, and anything over
/// [`crate::fsx::Limit::KEY`].
pub fn read_small_regular_file(path: &Path) -> std::io::Result<String> {
    Ok(crate::fsx::read_file_string(path, crate::fsx::Limit::KEY)?)
}

/// Refuses a signing-key location inside a git work tree, or below a directory that group or others
/// may write (unless it has the sticky bit, like /tmp). `path` is the key file; its parent must exist.
pub fn check_key_location(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p.to_owned(),
        None => PathBuf::from("."),
    };
    let dir = parent.canonicalize().map_err(|source| KeyError::Io { path: parent.clone(), source })?;
    for anc in dir.ancestors() {
        if anc.join(".git").exists() {
            return Err(KeyError::Location {
                path: path.to_owned(),
                message: format!(
                    "the signing key is inside the git work tree {}; keep it outside any repository \
                     (default: hsx keygen writes {})",
                    anc.display(),
                    default_key_path().display()
                ),
            });
        }
        let mode = std::fs::metadata(anc)
            .map_err(|source| KeyError::Io { path: anc.to_owned(), source })?
            .permissions()
            .mode();
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(KeyError::Location {
                path: path.to_owned(),
                message: format!(
                    "directory {} is writable by group or others (mode {:o}), so the signing key below it could be \
                     replaced; run `chmod go-w {}` or keep the key elsewhere",
                    anc.display(),
                    mode & 0o7777,
                    anc.display()
                ),
            });
        }
    }
    Ok(())
}

/// Default location of the signing key: `$XDG_CONFIG_HOME/hsx/signing_key.pem` (never inside a repo).
pub fn default_key_path() -> PathBuf {
    dirs::config_dir().unwrap_or_else(|| PathBuf::from(".config")).join("hsx").join("signing_key.pem")
}

/// The key id: `sha256:` + hex SHA-256 of the 32 public-key bytes.
pub fn key_id(public: &VerifyingKey) -> String {
    format!("sha256:{}", crate::canonical::sha256_hex(public.as_bytes()))
}

pub fn signer_of(public: &VerifyingKey) -> Signer {
    Signer { algorithm: "ed25519".into(), public_key: hex::encode(public.as_bytes()), key_id: key_id(public) }
}

/// A loaded signing key. Its secret half is never serialised, logged or displayed.
pub struct SigningKeyFile {
    key: SigningKey,
}

impl std::fmt::Debug for SigningKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKeyFile({})", key_id(&self.key.verifying_key()))
    }
}

impl SigningKeyFile {
    /// Creates a new key at `path` with mode 0600 (parent directories 0700 when created).
    pub fn generate(path: &Path, force: bool) -> Result<Self, KeyError> {
        use std::os::unix::fs::DirBuilderExt;
        if path.exists() && !force {
            return Err(KeyError::Exists { path: path.to_owned() });
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|source| KeyError::Io { path: parent.to_owned(), source })?;
        }
        check_key_location(path)?;
        let mut seed = [0u8; 32];
        getrandom_fill(&mut seed).map_err(|source| KeyError::Io { path: path.to_owned(), source })?;
        let key = SigningKey::from_bytes(&seed);
        let pem = key
            .to_pkcs8_pem(Default::default())
            .map_err(|e| KeyError::Malformed { path: path.to_owned(), message: e.to_string() })?;
        // Mode 0600 from its creation, through a temporary file nobody can predict or plant a link at;
        // without --force an existing key is never replaced, even one that appeared meanwhile.
        let opts = crate::fsx::WriteOptions { mode: Some(0o600), create_new: !force };
        crate::fsx::write_opts(crate::fsx::dir_of(path), path, pem.as_bytes(), opts)
            .map_err(|e| KeyError::Io { path: path.to_owned(), source: e.into() })?;
        Ok(Self { key })
    }

    /// Loads a key, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing { path: path.to_owned() })
            }
            Err(source) => return Err(KeyError::Io { path: path.to_owned(), source }),
        };
        if !meta.is_file() {
            return Err(KeyError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a regular file (a FIFO, device, socket or directory)",
                ),
            });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: path.to_owned(), mode });
        }
        check_key_location(path)?;
        let text = read_small_regular_file(path).map_err(|source| KeyError::Io { path: path.to_owned(), source })?;
        let key = SigningKey::from_pkcs8_pem(&text)
            .map_err(|e| KeyError::Malformed { path: path.to_owned(), message: e.to_string() })?;
        Ok(Self { key })
    }

    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn signer(&self) -> Signer {
        signer_of(&self.public())
    }

    /// Signs `message` (version 2: the DSSE pre-authentication encoding of a statement); lowercase hex.
    pub fn sign_bytes(&self, message: &[u8]) -> String {
        hex::encode(self.key.sign(message).to_bytes())
    }

    /// Signs the raw 32-byte digest whose hex is `hash_hex` (version 1).
    pub fn sign_hash(&self, hash_hex: &str) -> String {
        let digest = hex::decode(hash_hex).expect("hash is hex produced by sha256_hex");
        hex::encode(self.key.sign(&digest).to_bytes())
    }
}

fn getrandom_fill(buf: &mut [u8]) -> std::io::Result<()> {
    use rand_core::{OsRng, RngCore};
    OsRng.try_fill_bytes(buf).map_err(|e| std::io::Error::other(e.to_string()))
}

/// Parses a signer's hex public key.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let bytes = decode_lower_hex(hex_key, "public key")?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| "public key is not 32 bytes".to_string())?;
    let k = VerifyingKey::from_bytes(&arr).map_err(|e| format!("public key is not a valid ed25519 point: {e}"))?;
    if k.is_weak() {
        return Err(
            "public key is a small-order (weak) ed25519 point, such as the identity; no one holds its secret".into()
        );
    }
    Ok(k)
}

/// Decodes hex that must be in its one canonical spelling: lowercase, even length, nothing else.
pub fn decode_lower_hex(s: &str, what: &str) -> Result<Vec<u8>, String> {
    if !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("{what} is not lowercase hex (the only accepted encoding)"));
    }
    hex::decode(s).map_err(|_| format!("{what} is not hex"))
}

/// Verifies a (version 1) hex signature over the raw digest of `hash_hex`.
pub fn verify_hash(public: &VerifyingKey, hash_hex: &str, sig_hex: &str) -> Result<(), String> {
    let digest = decode_lower_hex(hash_hex, "hash")?;
    verify_bytes(public, &digest, sig_hex)
}

/// Verifies a lowercase-hex ed25519 signature over `message` (RFC 8032, strict verification).
pub fn verify_bytes(public: &VerifyingKey, message: &[u8], sig_hex: &str) -> Result<(), String> {
    let sig_bytes = decode_lower_hex(sig_hex, "signature")?;
    let arr: [u8; 64] = sig_bytes.try_into().map_err(|_| "signature is not 64 bytes".to_string())?;
    let sig = ed25519_dalek::Signature::from_bytes(&arr);
    public.verify_strict(message, &sig).map_err(|_| "signature does not verify".to_string())
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrustedKey {
    pub key_id: String,
    pub public_key: String,
    pub valid_after: Option<time::OffsetDateTime>,
    pub valid_before: Option<time::OffsetDateTime>,
}

#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    pub keys: Vec<TrustedKey>,
}

impl TrustedKeys {
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = read_small_regular_file(path).map_err(|source| KeyError::Io { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, KeyError> {
        let mut keys: Vec<TrustedKey> = Vec::new();
        let mut lines: Vec<usize> = Vec::new();
        super::spelling::refuse_bom(text.as_bytes(), "the file").map_err(|message| KeyError::Trusted {
            path: path.to_owned(),
            line: 1,
            message,
        })?;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: String| KeyError::Trusted { path: path.to_owned(), line: i + 1, message };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (id, opts, alg, pk) = match fields.as_slice() {
                [id, alg, pk] => (*id, None, *alg, *pk),
                [id, opts, alg, pk] => (*id, Some(*opts), *alg, *pk),
                _ => return Err(err("expected `key-id [options] ed25519 <public key hex>`".into())),
            };
            if alg != "ed25519" {
                return Err(err(format!("unsupported algorithm {alg:?} (only ed25519)")));
            }
            let hex_id = id.strip_prefix("sha256:").unwrap_or("");
            if hex_id.len() != 64 || !hex_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(err(format!(
                    "key id {id:?} is not `sha256:` followed by 64 lowercase hex digits{}",
                    if id.contains('\u{feff}') { " (it holds a byte-order mark, U+FEFF)" } else { "" }
                )));
            }
            let public = parse_public_key(pk).map_err(&err)?;
            if key_id(&public) != id {
                return Err(err(format!("key id {id} does not match the public key (its id is {})", key_id(&public))));
            }
            let mut tk =
                TrustedKey { key_id: id.into(), public_key: pk.to_lowercase(), valid_after: None, valid_before: None };
            let mut seen: Vec<&str> = Vec::new();
            for opt in opts.into_iter().flat_map(|o| o.split(',')) {
                let (k, v) = opt.split_once('=').ok_or_else(|| err(format!("option {opt:?} is not key=value")))?;
                // A second `valid-before=` would silently replace the first and move the window.
                if seen.contains(&k) {
                    return Err(err(format!("option {k} is given twice; give each option once")));
                }
                seen.push(k);
                let t =
                    time::OffsetDateTime::parse(v.trim_matches('"'), &time::format_description::well_known::Rfc3339)
                        .map_err(|e| err(format!("option {k}: {v:?} is not an RFC 3339 time: {e}")))?;
                match k {
                    "valid-after" => tk.valid_after = Some(t),
                    "valid-before" => tk.valid_before = Some(t),
                    _ => return Err(err(format!("unknown option {k:?} (valid-after, valid-before)"))),
                }
            }
            if let (Some(a), Some(b)) = (tk.valid_after, tk.valid_before) {
                if a >= b {
                    return Err(err(format!(
                        "inverted validity window: valid-after {a} is not before valid-before {b}"
                    )));
                }
            }
            if let Some(j) = keys.iter().position(|k| k.key_id == tk.key_id) {
                return Err(err(format!(
                    "key {} is already listed on line {}; one line per key (merge the windows into one line)",
                    tk.key_id, lines[j]
                )));
            }
            keys.push(tk);
            lines.push(i + 1);
        }
        Ok(Self { keys })
    }

    /// Whether `signer` may sign an entry finished at `when` (RFC 3339).
    pub fn check(&self, signer: &Signer, when: &str) -> Result<(), String> {
        let t = time::OffsetDateTime::parse(when, &time::format_description::well_known::Rfc3339)
            .map_err(|_| format!("time {when:?} is not RFC 3339"))?;
        let candidates: Vec<&TrustedKey> = self
            .keys
            .iter()
            .filter(|k| k.key_id == signer.key_id && k.public_key == signer.public_key.to_lowercase())
            .collect();
        if candidates.is_empty() {
            return Err(format!("signer {} is not in the trusted keys", signer.key_id));
        }
        let ok =
            candidates.iter().all(|k| k.valid_after.is_none_or(|a| t >= a) && k.valid_before.is_none_or(|b| t < b));
        if ok {
            Ok(())
        } else {
            Err(format!("signer {} is trusted, but not at {when} (outside its validity window)", signer.key_id))
        }
    }

    /// One trusted-keys line for a signer.
    pub fn line_for(signer: &Signer) -> String {
        format!("{} {} {}", signer.key_id, signer.algorithm, signer.public_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_0600_and_refuses_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k/key.pem");
        let k = SigningKeyFile::generate(&p, false).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(SigningKeyFile::generate(&p, false), Err(KeyError::Exists { .. })));
        let back = SigningKeyFile::load(&p).unwrap();
        assert_eq!(back.public(), k.public());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(SigningKeyFile::load(&p), Err(KeyError::Permissions { .. })));
    }

    #[test]
    fn trusted_keys_window_and_mismatch() {
        let d = tempfile::tempdir().unwrap();
        let k = SigningKeyFile::generate(&d.path().join("a.pem"), false).unwrap();
        let s = k.signer();
        let text = format!(
            "# comment\n{} valid-after=2026-01-01T00:00:00Z,valid-before=2027-01-01T00:00:00Z ed25519 {}\n",
            s.key_id, s.public_key
        );
        let tk = TrustedKeys::parse(&text, Path::new("tk")).unwrap();
        assert!(tk.check(&s, "2026-06-01T00:00:00Z").is_ok());
        assert!(tk.check(&s, "2027-06-01T00:00:00Z").is_err());
        let bad = text.replace(&s.key_id, "sha256:00");
        let e = TrustedKeys::parse(&bad, Path::new("tk")).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
