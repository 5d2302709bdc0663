//! The canonical form is RFC 8785 (JCS), checked against the RFC's published test vectors; version-1
//! ledgers (the shipped exp-42) still verify; non-canonical signature encodings are refused.
mod common;

use hsx::canonical::{es_number_to_string, parse_strict, to_canonical_string};
use hsx::ledger::verify::{verify_at, verify_value, VerifyOptions};
use hsx::ledger::TrustedKeys;
use serde_json::Value;
use std::path::Path;

/// RFC 8785 Appendix B: IEEE-754 bit patterns and their serialisation.
#[test]
fn rfc8785_appendix_b_number_vectors() {
    let vectors: [(u64, &str); 24] = [
        (0x0000000000000000, "0"),
        (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"),
        (0x8000000000000001, "-5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0xc340000000000000, "-9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44b52d02c7e14af5, "9.999999999999997e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
        (0x444b1ae4d6e2ef4e, "999999999999999700000"),
        (0x444b1ae4d6e2ef4f, "999999999999999900000"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
        (0x3eb0c6f7a0b5ed8d, "0.000001"),
        (0x41b3de4355555553, "333333333.3333332"),
        (0x41b3de4355555554, "333333333.33333325"),
        (0x41b3de4355555555, "333333333.3333333"),
        (0x41b3de4355555556, "333333333.3333334"),
        (0x41b3de4355555557, "333333333.33333343"),
        (0xbecbf647612f3696, "-0.0000033333333333333333"),
        (0x43143ff3c1cb0959, "1424953923781206.2"),
    ];
    for (bits, want) in vectors {
        let f = f64::from_bits(bits);
        assert_eq!(es_number_to_string(f).as_deref(), Some(want), "0x{bits:016x}");
        // And through a JSON document (what a ledger holds), unless serde_json parses it as an integer.
        if f.fract() != 0.0 || f.abs() >= 1e21 || f == 0.0 {
            let v: Value = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
            assert_eq!(to_canonical_string(&v), want, "0x{bits:016x} via JSON");
        }
    }
    for bits in [0x7fffffffffffffffu64, 0x7ff0000000000000] {
        assert_eq!(es_number_to_string(f64::from_bits(bits)), None, "NaN/Infinity must be refused");
    }
}

/// RFC 8785 §3.2.2 (the sample input and output) and §3.2.3 (property sorting by UTF-16 code units).
#[test]
fn rfc8785_sample_and_sorting_vectors() {
    let input = "{\n  \"numbers\": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n  \"string\": \"\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\\"\\/\",\n  \"literals\": [null, true, false]\n}";
    let want = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"€$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
    assert_eq!(to_canonical_string(&parse_strict(input.as_bytes()).unwrap()), want);

    let input = "{\n  \"\\u20ac\": \"Euro Sign\",\n  \"\\r\": \"Carriage Return\",\n  \"\\ufb33\": \"Hebrew Letter Dalet With Dagesh\",\n  \"1\": \"One\",\n  \"\\ud83d\\ude00\": \"Emoji: Grinning Face\",\n  \"\\u0080\": \"Control\",\n  \"\\u00f6\": \"Latin Small Letter O With Diaeresis\"\n}";
    let out = to_canonical_string(&parse_strict(input.as_bytes()).unwrap());
    let want = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
    assert_eq!(out, want);
}

#[test]
fn the_documented_number_forms_are_the_written_ones() {
    for (text, want) in
        [("1.5e300", "1.5e+300"), ("1e-5", "0.00001"), ("1e-7", "1e-7"), ("3.0", "3"), ("-0.0", "0"), ("0.1", "0.1")]
    {
        let v = parse_strict(text.as_bytes()).unwrap();
        assert_eq!(to_canonical_string(&v), want, "{text}");
    }
}

#[test]
fn the_shipped_version_1_ledger_still_verifies_with_its_trusted_keys_and_an_edit_of_it_does_not() {
    // A copy away from the checkout: a version-1 run directory is found by searching upwards, and the
    // checkout's runs/exp-42 (if someone re-made exp-42 there) holds another run's artifacts.
    let d = tempfile::tempdir().unwrap();
    let ledger = d.path().join("exp-42-v1.json");
    std::fs::copy(common::repo_path("tests/inputs/exp-42-v1.json"), &ledger).unwrap();
    let tk = TrustedKeys::load(&common::repo_path("tests/inputs/exp-42-v1.trusted_keys")).unwrap();
    let opts = VerifyOptions { trusted: Some(tk.clone()), ..Default::default() };
    let rep = verify_at(&ledger, None, &opts).unwrap();
    assert!(rep.ok, "{:?}", rep.first_failure);
    assert_eq!(rep.version, Some(1));
    assert_eq!(rep.entries.len(), 13);
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(&ledger).unwrap()).unwrap();
    let mut m = raw.clone();
    m["entries"][11]["metrics"]["n"] = Value::from(1);
    let rep = verify_value(&m, &ledger, &Default::default(), &opts).unwrap();
    assert_eq!(rep.first_failure.unwrap().entry, Some(11));
}

#[test]
fn an_uppercase_or_otherwise_non_canonical_signature_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, roots) = common::fixture_ledger(d.path());
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(&ledger).unwrap()).unwrap();
    for (field, edit) in [("signature", "upper"), ("hash", "upper")] {
        let mut m = raw.clone();
        let s = m["entries"][1][field].as_str().unwrap().to_uppercase();
        m["entries"][1][field] = Value::String(s);
        let f = verify_value(&m, Path::new("fx.json"), &roots, &VerifyOptions::default())
            .unwrap()
            .first_failure
            .expect("uppercase accepted");
        assert_eq!(f.entry, Some(1), "{field} {edit}: {f}");
    }
    // The shipped v1 ledger with one signature uppercased.
    let shipped = common::repo_path("tests/inputs/exp-42-v1.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&shipped).unwrap()).unwrap();
    let s = m["entries"][0]["signature"].as_str().unwrap().to_uppercase();
    m["entries"][0]["signature"] = Value::String(s);
    let f = verify_value(&m, &shipped, &Default::default(), &VerifyOptions::default()).unwrap().first_failure.unwrap();
    assert_eq!((f.entry, f.field.as_str()), (Some(0), "signature"), "{f}");
    assert!(f.message.contains("lowercase"), "{f}");
}

/// `v` written as hsx writes a ledger, with the value at `pointer` written as the text `token` instead.
fn with_token(v: &Value, pointer: &str, token: &str) -> String {
    let mut m = v.clone();
    *m.pointer_mut(pointer).unwrap() = Value::String("@@respelt@@".into());
    serde_json::to_string_pretty(&m).unwrap().replace("\"@@respelt@@\"", token)
}

/// The first number under `v` (JSON pointer and the dotted path verify names) matching `want`.
fn first_number(v: &Value, pointer: String, dotted: String, want: &dyn Fn(&Value) -> bool) -> Option<(String, String)> {
    match v {
        Value::Number(_) if want(v) => Some((pointer, dotted)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| first_number(x, format!("{pointer}/{i}"), format!("{dotted}[{i}]"), want)),
        Value::Object(m) => m.iter().find_map(|(k, x)| {
            let d = if dotted.is_empty() { k.clone() } else { format!("{dotted}.{k}") };
            first_number(x, format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1")), d, want)
        }),
        _ => None,
    }
}

/// Another spelling of the number `n`: an exponent hsx never writes (`3` → `3e0`, `0.5` → `0.5e0`,
/// `1e-8` → `1E-8`).
fn respelt(n: &Value) -> String {
    let s = n.to_string();
    if s.contains('e') {
        s.replace('e', "E")
    } else {
        format!("{s}e0")
    }
}

/// Every entry of the shipped ledger (each stage kind: prepare … report), with its sequence number, an
/// integer (a count or a seed) and a float of its metrics or config re-spelt: the hash and signature
/// still hold (they cover the canonical form), and verify names the entry and the field as tampered.
#[test]
fn a_number_respelt_in_any_entry_of_the_shipped_ledger_reads_as_tampered() {
    let d = tempfile::tempdir().unwrap();
    let raw: Value =
        serde_json::from_str(&std::fs::read_to_string(common::repo_path("ledger/exp-42.json")).unwrap()).unwrap();
    let ledger = d.path().join("exp-42.json");
    std::fs::copy(common::repo_path("ledger/exp-42.head.json"), d.path().join("exp-42.head.json")).unwrap();
    let tk = TrustedKeys::load(&common::repo_path("ledger/trusted_keys")).unwrap();
    let opts = VerifyOptions { trusted: Some(tk), structure_only: true, ..Default::default() };
    // Written again by serde_json (keys sorted): the same content, spelt as hsx spells it.
    std::fs::write(&ledger, serde_json::to_string_pretty(&raw).unwrap()).unwrap();
    let rep = verify_at(&ledger, None, &opts).unwrap();
    assert!(rep.ok, "{:?}", rep.first_failure);
    let entries = raw["entries"].as_array().unwrap();
    let int = |v: &Value| v.is_u64() || v.is_i64();
    let float = |v: &Value| v.is_f64();
    let mut kinds = std::collections::BTreeSet::new();
    for (i, e) in entries.iter().enumerate() {
        let mut places = vec![(format!("/entries/{i}/seq"), "seq".to_string())];
        for want in [&int as &dyn Fn(&Value) -> bool, &float] {
            let found = first_number(&e["metrics"], format!("/entries/{i}/metrics"), "metrics".into(), want)
                .or_else(|| first_number(&e["config"], format!("/entries/{i}/config"), "config".into(), want));
            places.extend(found);
        }
        assert_eq!(places.len(), 3, "entry {i} has no integer or no float");
        for (pointer, field) in places {
            let n = raw.pointer(&pointer).unwrap();
            let token = respelt(n);
            std::fs::write(&ledger, with_token(&raw, &pointer, &token)).unwrap();
            let f = verify_at(&ledger, None, &opts)
                .unwrap()
                .first_failure
                .unwrap_or_else(|| panic!("{pointer} = {token} passed"));
            assert_eq!((f.entry, f.field.as_str()), (Some(i), field.as_str()), "{pointer} = {token}: {f}");
            assert!(f.message.starts_with("tampered:") && f.message.contains(&format!("`{token}`")), "{f}");
        }
        kinds.insert(e["stage"].as_str().unwrap().split('@').next().unwrap().to_owned());
    }
    assert_eq!(kinds.len(), hsx::stages::Stage::ALL.len(), "{kinds:?}");
}

/// `1e4`, `-0`, `1.50`, `1E4`, `0.10`: each refused where it stands; `+1` is not JSON at all.
#[test]
fn each_other_spelling_of_a_number_is_refused_and_plus_is_not_json() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, _) = common::fixture_ledger(d.path());
    let original = std::fs::read_to_string(&ledger).unwrap();
    let raw: Value = serde_json::from_str(&original).unwrap();
    let opts = VerifyOptions { structure_only: true, ..Default::default() };
    // ingest's metrics: {"rows": 2, "share": 0.5}; transform's params: {"scale": 1.5, …}.
    for (pointer, token, field) in [
        ("/entries/0/metrics/rows", "2e0", "metrics.rows"),
        ("/entries/0/metrics/rows", "2.0e0", "metrics.rows"),
        ("/entries/0/metrics/share", "0.50", "metrics.share"),
        ("/entries/0/metrics/share", "5E-1", "metrics.share"),
        ("/entries/1/params/scale", "1.50", "params.scale"),
        ("/entries/1/params/scale", "15e-1", "params.scale"),
    ] {
        std::fs::write(&ledger, with_token(&raw, pointer, token)).unwrap();
        let f = verify_at(&ledger, None, &opts).unwrap().first_failure.unwrap_or_else(|| panic!("{token} passed"));
        assert_eq!(f.field, field, "{token}: {f}");
        assert!(f.message.starts_with("tampered:"), "{token}: {f}");
    }
    // A zero recorded as an integer, re-spelt `-0`.
    let mut z = raw.clone();
    z["entries"][0]["metrics"]["rows"] = Value::from(0);
    let text = with_token(&z, "/entries/0/metrics/rows", "-0");
    std::fs::write(&ledger, text).unwrap();
    let f = verify_at(&ledger, None, &opts).unwrap().first_failure.expect("-0 passed");
    assert!(f.message.starts_with("tampered:") && f.message.contains("`-0`"), "{f}");
    std::fs::write(&ledger, with_token(&raw, "/entries/0/metrics/rows", "+2")).unwrap();
    let e = verify_at(&ledger, None, &opts).unwrap_err().to_string();
    assert!(e.contains("JSON error") && e.contains("expected value"), "{e}");
    // The file as the recorder wrote it (header first, entries streamed in one pass), edited in place.
    std::fs::write(&ledger, &original).unwrap();
    assert!(verify_at(&ledger, None, &opts).unwrap().ok);
    assert_eq!(original.matches("\"share\": 0.5").count(), 1);
    std::fs::write(&ledger, original.replace("\"share\": 0.5", "\"share\": 5e-1")).unwrap();
    let f = verify_at(&ledger, None, &opts).unwrap().first_failure.expect("5e-1 passed");
    assert_eq!((f.entry, f.field.as_str()), (Some(0), "metrics.share"), "{f}");
    assert!(f.message.starts_with("tampered:") && f.message.contains("`0.5`"), "{f}");
}

#[test]
fn a_ledger_beginning_with_a_byte_order_mark_is_named_as_such() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, _) = common::fixture_ledger(d.path());
    let text = std::fs::read(&ledger).unwrap();
    std::fs::write(&ledger, [b"\xEF\xBB\xBF".as_slice(), &text].concat()).unwrap();
    let e = verify_at(&ledger, None, &VerifyOptions::default()).unwrap_err().to_string();
    assert!(e.contains("byte-order mark") && !e.contains("expected value"), "{e}");
    let e = hsx::ledger::store::read(&ledger).unwrap_err().to_string();
    assert!(e.contains("byte-order mark"), "{e}");
}
