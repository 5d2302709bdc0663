//! Snapshot tests of REPORT.md rendered from committed fixture ledgers (tests/inputs/, made by
//! make_report_ledgers.py): a complete run, a synthesis shortfall, a failed hypothesis.
use hsx::ledger::Ledger;
use hsx::report::{render, report_entries, DEFAULT_TEMPLATE};

#[test]
fn rendered_reports() {
    insta::glob!("inputs/ledger_*.json", |path| {
        let ledger: Ledger = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let text = render(&ledger, report_entries(&ledger), DEFAULT_TEMPLATE).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for bad in ["[FILL", "X.XXX", "TO BE FILLED"] {
            assert!(!text.contains(bad));
        }
        insta::with_settings!({filters => vec![
            (r"\d{4}-\d{2}-\d{2}", "[date]"),
            (r"\[#(\d+) [0-9a-f]{8}\]", "[#$1 hash]"),
            (r"`[0-9a-f]{10,16}`", "`[hash]`"),
            (r"sha256:[0-9a-f]{16}", "sha256:[key]"),
            (r"\| \d+\.\d \|", "| [secs] |"),
            (r"total \d+\.\d s", "total [secs] s"),
        ]}, {
            insta::assert_snapshot!(text);
        });
    });
}

#[test]
fn a_missing_value_is_an_error_not_a_blank() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inputs/ledger_complete.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cmp = v["entries"].as_array_mut().unwrap().iter_mut().find(|e| e["stage"] == "compare").unwrap();
    cmp["metrics"]["table"]["B"].as_object_mut().unwrap().remove("f1");
    let ledger: Ledger = serde_json::from_value(v).unwrap();
    let e = render(&ledger, report_entries(&ledger), DEFAULT_TEMPLATE).unwrap_err().to_string();
    assert!(e.contains("REPORT.md"), "{e}");
}

#[test]
fn a_filter_the_registry_does_not_know_is_an_error_not_a_mislabel() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inputs/ledger_complete.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let sy = v["entries"].as_array_mut().unwrap().iter_mut().find(|e| e["stage"] == "synthesize").unwrap();
    sy["metrics"]["filter_order"].as_array_mut().unwrap().push("sixth_filter".into());
    let ledger: Ledger = serde_json::from_value(v).unwrap();
    let e = render(&ledger, report_entries(&ledger), DEFAULT_TEMPLATE).unwrap_err().to_string();
    assert!(e.contains("sixth_filter"), "{e}");
}

#[test]
fn the_template_loops_over_the_registries_instead_of_naming_their_rows() {
    use hsx::metrics::registry::{compared, PRIMARY};
    for (name, _) in hsx::synth::filters::rejection_reasons() {
        assert!(!DEFAULT_TEMPLATE.contains(&format!("\"{name}\"")), "the template names filter {name}");
    }
    for m in compared().filter(|m| m.key != PRIMARY) {
        for spelled in [format!(".{}.", m.key), format!(".{} ", m.key), format!("\"{}\"", m.key), format!("| {} |", m.title)] {
            assert!(!DEFAULT_TEMPLATE.contains(&spelled), "the template names metric {} as {spelled:?}", m.key);
        }
    }
    for s in hsx::stages::Stage::ALL.iter().filter(|s| s.name().contains('-')) {
        assert!(!DEFAULT_TEMPLATE.contains(&format!("\"{}\"", s.template_key())), "the template lists stage {s}");
    }
}
