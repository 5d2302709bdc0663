//! Canonical JSON and the hashes built on it (config hash, ledger entry hash).
//!
//! The canonical form of a JSON value, byte for byte, so an outsider can re-implement it:
//!
//! * objects: keys sorted by their UTF-8 bytes, written `{"k":v,...}` with no whitespace anywhere;
//! * arrays: `[a,b,...]` in their order;
//! * strings: UTF-8, with `"` and `\` escaped as `\"` and `\\`, the control characters U+0008, U+0009,
//!   U+000A, U+000C, U+000D as `\b \t \n \f \r`, other characters below U+0020 as `\u00XX` (lowercase
//!   hex), everything else (non-ASCII included) written raw;
//! * integers (a JSON number without fraction or exponent that fits i64/u64): decimal, no leading zeros;
//! * other numbers: the shortest decimal that round-trips to the same IEEE-754 double (the `ryu`
//!   algorithm), as `serde_json` writes an `f64` — e.g. `0.1`, `3.0`, `1e-5`, `1.5e300`; NaN and
//!   infinities cannot occur in JSON and are rejected on input;
//! * `true`, `false`, `null` as themselves.
//!
//! `sha256_canonical(v)` is the lowercase hex SHA-256 of those bytes.
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Writes `value` in canonical form.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(&map[key], out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{0c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Lowercase hex SHA-256 of arbitrary bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lowercase hex SHA-256 of the canonical form of `value`.
pub fn sha256_canonical(value: &Value) -> String {
    sha256_hex(to_canonical_string(value).as_bytes())
}

/// Canonical hash of any serialisable value (serialised to JSON first).
pub fn sha256_of<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    Ok(sha256_canonical(&serde_json::to_value(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_sorted_and_no_whitespace() {
        let v = json!({"b": 1, "a": [true, null, "x"], "c": {"z": 0.5, "y": 3.0}});
        assert_eq!(to_canonical_string(&v), r#"{"a":[true,null,"x"],"b":1,"c":{"y":3.0,"z":0.5}}"#);
    }

    #[test]
    fn strings_escape_controls_only() {
        let v = json!("q\"\\\n\u{1}é");
        assert_eq!(to_canonical_string(&v), "\"q\\\"\\\\\\n\\u0001é\"");
    }

    #[test]
    fn canonical_form_is_a_fixed_point_of_parsing() {
        let v = json!({"lr": 3e-4, "eps": 1e-8, "big": 1.5e300, "n": -7, "f": 0.1});
        let s = to_canonical_string(&v);
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(to_canonical_string(&back), s);
    }

    #[test]
    fn key_order_does_not_change_the_hash() {
        let a: Value = serde_json::from_str(r#"{"x": 1, "y": {"b": 2, "a": 1}}"#).unwrap();
        let b: Value = serde_json::from_str("{\"y\":{\"a\":1,\"b\":2},\n \"x\":1}").unwrap();
        assert_eq!(sha256_canonical(&a), sha256_canonical(&b));
        let c: Value = serde_json::from_str(r#"{"x": 2, "y": {"b": 2, "a": 1}}"#).unwrap();
        assert_ne!(sha256_canonical(&a), sha256_canonical(&c));
    }
}
