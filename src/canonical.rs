//! Canonical JSON and the hashes built on it (config hash, ledger entry hash).
//!
//! # The canonical form: RFC 8785 (JSON Canonicalization Scheme, JCS)
//!
//! Since ledger format version 2, the canonical form of a JSON value is the one RFC 8785 defines, so
//! any JCS implementation can re-check an hsx hash:
//!
//! * objects: members sorted by their keys compared as sequences of **UTF-16 code units**, written
//!   `{"k":v,...}` with no whitespace anywhere;
//! * arrays: `[a,b,...]` in their order;
//! * strings: UTF-8, with `"` and `\` escaped as `\"` and `\\`, U+0008, U+0009, U+000A, U+000C, U+000D
//!   as `\b \t \n \f \r`, other characters below U+0020 as `\u00xx` (lowercase hex), everything else
//!   (non-ASCII included, and `/`) written raw;
//! * numbers: as ECMAScript's `Number.prototype.toString` writes the IEEE-754 double: the shortest
//!   digits that round-trip; plain decimal notation when the decimal exponent lies in [-6, 21)
//!   (`0.000001`, `1e-7`, `333333333.3333333`, `295147905179352830000`), otherwise `d.ddde±x` with an
//!   explicit sign (`1e+21`, `1.5e+300`, `1e-7`); `-0` is written `0`. NaN and infinities cannot occur
//!   in JSON and are rejected on input.
//! * `true`, `false`, `null` as themselves.
//!
//! One documented extension: RFC 8785 (via I-JSON) leaves integers beyond ±2^53 out of scope. A JSON
//! integer that the parser holds exactly (it fits i64/u64) is written as its exact decimal digits,
//! which for |n| ≤ 2^53 is exactly what JCS writes; beyond that JCS would round it to a double and two
//! different integers could share one hash. hsx itself writes no such number in a version-2 ledger: u64
//! values (seeds) are decimal strings, and sealing an entry refuses one that holds a number outside
//! I-JSON's exact range ([`first_non_i_json_number`], named by its JSON path). Version-2 ledgers
//! written before that rule (the shipped exp-42 of November 2026) hold such seeds; they still verify
//! with hsx, but no RFC 8785 implementation can re-check those entries.
//!
//! `sha256_canonical(v)` is the lowercase hex SHA-256 of those bytes (UTF-8).
//!
//! # Version 1 (legacy)
//!
//! Version-1 ledgers hashed a slightly different form ([`to_legacy_v1_string`]): keys sorted by UTF-8
//! bytes, and non-integer numbers as the `serde_json` version in use wrote them (`1.5e300`, `1e-5`).
//! It is kept, byte for byte, only to verify those ledgers.
//!
//! # Parsing
//!
//! [`parse_strict`] reads JSON as untrusted input: a duplicate member name anywhere is an error naming
//! the key (RFC 8259 leaves duplicates undefined; serde_json silently keeps the last, while another
//! reader might show the first).
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use std::fmt;

/// Writes `value` in canonical (RFC 8785) form.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out, Flavour::Jcs);
    out
}

/// Writes `value` in the version-1 canonical form (only for verifying version-1 ledgers).
pub fn to_legacy_v1_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out, Flavour::LegacyV1);
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Flavour {
    Jcs,
    LegacyV1,
}

fn write_value(value: &Value, out: &mut String, fl: Flavour) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match fl {
            Flavour::Jcs => write_number(n, out),
            Flavour::LegacyV1 => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out, fl);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            match fl {
                Flavour::Jcs => keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16())),
                Flavour::LegacyV1 => keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes())),
            }
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(&map[key], out, fl);
            }
            out.push('}');
        }
    }
}

fn write_number(n: &Number, out: &mut String) {
    if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else {
        // serde_json never holds a non-finite f64 (JSON has no NaN/Infinity); `null` is what
        // serde_json itself would write for one, and it is never produced from parsed JSON.
        match n.as_f64().and_then(es_number_to_string) {
            Some(s) => out.push_str(&s),
            None => out.push_str("null"),
        }
    }
}

/// ECMAScript `Number.prototype.toString` of a double (RFC 8785 §3.2.2.3); `None` for NaN/±∞.
pub fn es_number_to_string(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    if f == 0.0 {
        return Some("0".into());
    }
    let mut out = String::new();
    if f < 0.0 {
        out.push('-');
    }
    // Rust's `{:e}` writes the shortest digits that round-trip: `d[.ddd]e<exp>`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let mut digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if digits.len() >= 16 {
        digits = even_on_tie(f.abs(), digits, exp);
    }
    let k = digits.len() as i32;
    let n = exp + 1; // value = 0.d1d2...dk × 10^n
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if n >= 1 { '+' } else { '-' });
        out.push_str(&(n - 1).abs().to_string());
    }
    Some(out)
}

/// ECMAScript breaks a tie between two shortest digit strings equally near the double towards the even
/// last digit (`0x43143ff3c1cb0959` = 1424953923781206.25 is written `…206.2`); Rust rounds half up.
/// When the exact decimal value has exactly one digit more than the shortest form and that digit is a
/// 5, the truncated candidate is taken if it is even and still reads back as the same double.
fn even_on_tie(f: f64, digits: String, exp: i32) -> String {
    let exact = format!("{:.800e}", f);
    let Some((m, e)) = exact.split_once('e') else { return digits };
    if e.parse::<i32>().ok() != Some(exp) {
        return digits;
    }
    let all: String = m.chars().filter(|c| *c != '.').collect();
    let sig = all.trim_end_matches('0');
    if sig.len() != digits.len() + 1 || !sig.ends_with('5') {
        return digits;
    }
    let trunc = &sig[..digits.len()];
    let even = trunc.as_bytes().last().is_some_and(|d| (d - b'0').is_multiple_of(2));
    if !even || trunc == digits {
        return digits;
    }
    let back: Option<f64> = format!("{}.{}e{}", &trunc[..1], &trunc[1..], exp).parse().ok();
    if back == Some(f) {
        trunc.to_owned()
    } else {
        digits
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

/// The largest integer magnitude I-JSON (RFC 7493 §2.2) interchanges exactly: 2^53 − 1. RFC 8785
/// implementations refuse larger integers (Python's `rfc8785` raises `IntegerDomainError`) or round them
/// (JavaScript's `JSON.parse`).
pub const I_JSON_MAX_INTEGER: u64 = (1 << 53) - 1;

/// A number that RFC 8785 tools cannot canonicalise exactly, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonIJsonNumber {
    /// JSON path from the value's root: `metrics.recipe.seed`, `inputs[2].bytes`, `a["odd key"]`.
    pub path: String,
    /// The number as JSON text.
    pub number: String,
}

/// The first number (in document order, object members in canonical order) outside I-JSON's exact
/// range: an integer of magnitude above [`I_JSON_MAX_INTEGER`], or a double with such an integral value
/// below 10^21, which the canonical form writes as plain digits that any reader takes for an integer
/// (`2^60` as a double is written `1152921504606847000`). Doubles written with an exponent (≥ 10^21)
/// read back as doubles and are accepted.
pub fn first_non_i_json_number(value: &Value) -> Option<NonIJsonNumber> {
    fn out_of_range(n: &Number) -> bool {
        if let Some(u) = n.as_u64() {
            u > I_JSON_MAX_INTEGER
        } else if let Some(i) = n.as_i64() {
            i.unsigned_abs() > I_JSON_MAX_INTEGER
        } else {
            n.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() > I_JSON_MAX_INTEGER as f64 && f.abs() < 1e21)
        }
    }
    fn walk(v: &Value, path: &mut String) -> Option<NonIJsonNumber> {
        match v {
            Value::Number(n) if out_of_range(n) => Some(NonIJsonNumber { path: path.clone(), number: n.to_string() }),
            Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                path.truncate(len);
                found
            }),
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
                keys.into_iter().find_map(|k| {
                    let len = path.len();
                    let plain = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    match (plain, path.is_empty()) {
                        (true, true) => path.push_str(k),
                        (true, false) => path.push_str(&format!(".{k}")),
                        (false, _) => path.push_str(&format!("[{}]", Value::String(k.clone()))),
                    }
                    let found = walk(&map[k], path);
                    path.truncate(len);
                    found
                })
            }
            _ => None,
        }
    }
    walk(value, &mut String::new())
}

/// DSSE pre-authentication encoding: `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths
/// as ASCII decimal byte counts. Signing these bytes rather than the body alone binds a signature to
/// its payload type, so a signature over one kind of statement can never be replayed as another.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + payload_type.len() + 32);
    out.extend_from_slice(format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// Lowercase hex SHA-256 of arbitrary bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lowercase hex SHA-256 of the canonical (RFC 8785) form of `value`.
pub fn sha256_canonical(value: &Value) -> String {
    sha256_hex(to_canonical_string(value).as_bytes())
}

/// Lowercase hex SHA-256 of the version-1 canonical form of `value`.
pub fn sha256_legacy_v1(value: &Value) -> String {
    sha256_hex(to_legacy_v1_string(value).as_bytes())
}

/// Canonical hash of any serialisable value (serialised to JSON first).
pub fn sha256_of<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    Ok(sha256_canonical(&serde_json::to_value(value)?))
}

/// Whether two JSON values are one sealed value: equal canonical forms, so `10000`, `10000.0` and `1e4`
/// are the same number. hsx compares values read from a ledger this way, never by their spelling.
pub fn same_value(a: &Value, b: &Value) -> bool {
    to_canonical_string(a) == to_canonical_string(b)
}

/// Parses JSON text as untrusted input into a [`Value`], refusing duplicate member names anywhere
/// (the error names the key and the line/column). Nesting is limited by serde_json's recursion limit.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = StrictValue.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// A [`DeserializeSeed`] producing a [`Value`] that refuses duplicate member names; usable on any
/// serde_json deserializer (also for one element of a streamed array).
#[derive(Clone, Copy)]
pub struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
            }
            let v = map.next_value_seed(StrictValue)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_sorted_and_no_whitespace() {
        let v = json!({"b": 1, "a": [true, null, "x"], "c": {"z": 0.5, "y": 3.0}});
        assert_eq!(to_canonical_string(&v), r#"{"a":[true,null,"x"],"b":1,"c":{"y":3,"z":0.5}}"#);
        assert_eq!(to_legacy_v1_string(&v), r#"{"a":[true,null,"x"],"b":1,"c":{"y":3.0,"z":0.5}}"#);
    }

    #[test]
    fn strings_escape_controls_only() {
        let v = json!("q\"\\\n\u{1}é/");
        assert_eq!(to_canonical_string(&v), "\"q\\\"\\\\\\n\\u0001é/\"");
    }

    #[test]
    fn canonical_form_is_a_fixed_point_of_parsing() {
        let v = json!({"lr": 3e-4, "eps": 1e-8, "big": 1.5e300, "n": -7, "f": 0.1, "s": 1e-5});
        let s = to_canonical_string(&v);
        assert_eq!(s, r#"{"big":1.5e+300,"eps":1e-8,"f":0.1,"lr":0.0003,"n":-7,"s":0.00001}"#);
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

    #[test]
    fn pae_matches_the_dsse_layout() {
        assert_eq!(pae("t/x", b"hello"), b"DSSEv1 3 t/x 5 hello".to_vec());
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn numbers_outside_i_json_are_found_with_their_path() {
        let max = I_JSON_MAX_INTEGER;
        let ok = json!({"a": max, "b": -(max as i64), "c": 1.5e300, "d": 1e21, "e": 0.1, "s": "18446744073709551615"});
        assert_eq!(first_non_i_json_number(&ok), None);
        let v = json!({"metrics": {"recipe": {"seed": max + 1}}, "a": 1});
        let found = first_non_i_json_number(&v).unwrap();
        assert_eq!((found.path.as_str(), found.number.as_str()), ("metrics.recipe.seed", "9007199254740992"));
        let v = json!({"inputs": [{"bytes": 1}, {"bytes": -(max as i64) - 1}]});
        assert_eq!(first_non_i_json_number(&v).unwrap().path, "inputs[1].bytes");
        // A double with a large integral value is written as plain digits, read back as an integer.
        let v = json!({"odd key": [2f64.powi(60)]});
        let found = first_non_i_json_number(&v).unwrap();
        assert_eq!(found.path, r#"["odd key"][0]"#);
        assert_eq!(to_canonical_string(&json!(2f64.powi(60))), "1152921504606847000");
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for text in [r#"{"a":1,"a":2}"#, r#"{"x":[{"k":1,"k":1}]}"#] {
            let e = parse_strict(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("duplicate key"), "{text}: {e}");
        }
        assert!(parse_strict(br#"{"a":{"a":1}}"#).is_ok());
    }
}
