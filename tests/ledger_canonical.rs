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
