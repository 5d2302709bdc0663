//! One spelling per stored value: a ledger's bytes spell every number the one way hsx writes it, and
//! hold no byte-order mark.
//!
//! An entry's hash and signature cover the canonical (RFC 8785) form of its content, which writes
//! `10000`, `10000.0` and `1e4` alike. hsx writes its ledgers with serde_json, which spells each number
//! one way: an integer as its digits, any other number as the shortest digits that read back as the
//! same double (`0.0003`, `32.0`, `1e-8`). A number spelt any other way (`1e4` for `10000.0`, `-0`,
//! `1.50`, `3E-4`) was therefore written by something else after the entry was signed: verify reports
//! the entry as *tampered*, naming the field, instead of letting the edit through to a comparison that
//! would blame the signer. What the canonical form cannot tell apart (an integer `10000` re-spelt as the
//! float `10000.0`, both forms hsx writes) is the same sealed value: hsx compares and renders ledger
//! values by their canonical form ([`crate::canonical::same_value`]), so such an edit changes nothing.
//!
//! The scan is written by hand because serde_json does not expose a number's text (its
//! `arbitrary_precision` feature would, but it changes how every `Number` in the program compares).
//! It runs on text serde_json has already parsed, so it only has to follow strings, keys and nesting.

/// A UTF-8 byte-order mark.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `Err` naming the byte-order mark when `bytes` begins with one (hsx writes none; serde_json would
/// report it as "expected value at line 1 column 1").
pub fn refuse_bom(bytes: &[u8], what: &str) -> Result<(), String> {
    if bytes.starts_with(BOM) {
        Err(format!(
            "{what} begins with a UTF-8 byte-order mark (bytes EF BB BF), which hsx never writes; \
             an editor added it: save the file without a BOM"
        ))
    } else {
        Ok(())
    }
}

/// A number whose stored text is not the spelling hsx writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respelling {
    /// Where it is, as `metrics.plan.bootstrap_resamples` or `metrics.loss_curve[2][1]`.
    pub path: String,
    /// The text found.
    pub found: String,
    /// How hsx writes the number that text parses to.
    pub written: String,
    /// Its canonical (RFC 8785) form, which the hash covers.
    pub canonical: String,
}

impl std::fmt::Display for Respelling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tampered: the number at `{}` is spelt `{}`, which hsx never writes (it writes that number `{}`, \
             canonical form `{}`); the hash and signature cover only the canonical form, so they still hold: \
             the stored bytes were edited after signing",
            self.path, self.found, self.written, self.canonical
        )
    }
}

/// How hsx (serde_json) writes the number `token` parses to, and its canonical form; `None` when it is
/// not a JSON number.
fn spellings(token: &str) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(token).ok()?;
    v.is_number().then(|| (v.to_string(), crate::canonical::to_canonical_string(&v)))
}

enum Frame {
    Object { key: String, expect_key: bool },
    Array { index: usize },
}

fn path_of(stack: &[Frame]) -> String {
    let mut out = String::new();
    for f in stack {
        match f {
            Frame::Object { key, .. } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Frame::Array { index } => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// The byte after the string starting at `start` (a `"`).
fn string_end(b: &[u8], start: usize) -> usize {
    let mut j = start + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// The first number in `json` (valid JSON text) that is not spelt as hsx writes it.
pub fn first_respelling(json: &str) -> Option<Respelling> {
    let b = json.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' => stack.push(Frame::Object { key: String::new(), expect_key: true }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { expect_key, .. }) => *expect_key = true,
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            b':' => {
                if let Some(Frame::Object { expect_key, .. }) = stack.last_mut() {
                    *expect_key = false;
                }
            }
            b'"' => {
                let end = string_end(b, i);
                if let Some(Frame::Object { key, expect_key: true }) = stack.last_mut() {
                    *key = serde_json::from_str(&json[i..end]).unwrap_or_else(|_| json[i..end].to_owned());
                }
                i = end;
                continue;
            }
            b'-' | b'0'..=b'9' => {
                let end = (i..b.len()).find(|&j| !matches!(b[j], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'));
                let end = end.unwrap_or(b.len());
                let token = &json[i..end];
                match spellings(token) {
                    Some((written, _)) if written == token => {}
                    Some((written, canonical)) => {
                        return Some(Respelling { path: path_of(&stack), found: token.into(), written, canonical })
                    }
                    None => {
                        return Some(Respelling {
                            path: path_of(&stack),
                            found: token.into(),
                            written: "(not a number)".into(),
                            canonical: "(none)".into(),
                        })
                    }
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_spelt_as_hsx_writes_them_pass() {
        let v = serde_json::json!({"n": 10000, "f": 10000.0, "lr": 3e-4, "eps": 1e-8, "big": 1.5e300, "neg": -7,
            "list": [0.1, -2.5, 0], "s": "1e4 in a string", "k\"ey": {"x": [[1.0]]}});
        for text in [serde_json::to_string(&v).unwrap(), serde_json::to_string_pretty(&v).unwrap()] {
            assert_eq!(first_respelling(&text), None, "{text}");
        }
    }

    #[test]
    fn every_other_spelling_is_named_with_its_path() {
        for (text, path, found, written, canonical) in [
            (r#"{"a": {"b": 1e4}}"#, "a.b", "1e4", "10000.0", "10000"),
            (r#"{"a": [1, 2, -0]}"#, "a[2]", "-0", "-0.0", "0"),
            (r#"{"x": "q", "y": 1.50}"#, "y", "1.50", "1.5", "1.5"),
            (r#"{"lr": 3E-4}"#, "lr", "3E-4", "0.0003", "0.0003"),
            (r#"{"lr": 0.3e-3}"#, "lr", "0.3e-3", "0.0003", "0.0003"),
            (r#"{"m": [[1.0, 2e+0]]}"#, "m[0][1]", "2e+0", "2.0", "2"),
            (r#"{"a\"b": 1E2}"#, "a\"b", "1E2", "100.0", "100"),
        ] {
            let r = first_respelling(text).unwrap_or_else(|| panic!("{text} accepted"));
            assert_eq!(
                (r.path.as_str(), r.found.as_str(), r.written.as_str(), r.canonical.as_str()),
                (path, found, written, canonical),
                "{text}"
            );
            assert!(r.to_string().starts_with("tampered:"), "{r}");
        }
    }

    #[test]
    fn a_bom_is_named() {
        assert!(refuse_bom(b"\xEF\xBB\xBF{}", "x").unwrap_err().contains("byte-order mark"));
        assert!(refuse_bom(b"{}", "x").is_ok());
    }
}
