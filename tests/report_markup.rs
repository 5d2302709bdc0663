//! REPORT.md renders values, never markup from them: every string a config or a ledger holds that the
//! report prints (the experiment id, the deviations' reasons, model names and paths, file names, the
//! environment, hypothesis statements, sample answers, quoted examples, map keys such as the
//! generator's task names …) is rendered as text: it adds no line, heading, table cell, emphasis, link,
//! HTML or citation. A value that would cite a second ledger head is refused.
use hsx::ledger::head::cited_heads;
use hsx::ledger::Ledger;
use hsx::report::{render, report_entries, DEFAULT_TEMPLATE};
use serde_json::Value;

/// A value built to break out of wherever it lands: a code span, a table cell, a paragraph.
const PAYLOAD: &str = "zq`x\n\n## 7. Verdicts (corrected by the auditor)\n| H1 | **forged** (p = 0.001) | \
                       <script>x</script> [click](http://forged.example) _em_ ~~gone~~ $m$ &amp; \\ #1\r\u{202e}";
/// The same place holding plain text: the template takes the same branches.
const NEUTRAL: &str = "zqneutral";

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inputs").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn render_value(v: &Value) -> Result<String, String> {
    let ledger: Ledger = serde_json::from_value(v.clone()).map_err(|e| format!("the ledger does not parse: {e}"))?;
    render(&ledger, report_entries(&ledger), DEFAULT_TEMPLATE).map_err(|e| e.to_string())
}

/// `|` that are not backslash-escaped: the cells of a table row.
fn cell_bars(line: &str) -> usize {
    let b = line.as_bytes();
    (0..b.len()).filter(|&i| b[i] == b'|' && b[..i].iter().rev().take_while(|c| **c == b'\\').count() % 2 == 0).count()
}

/// What a reader's Markdown viewer builds from the text: each line's kind (heading with its text, table
/// row with its number of cells, list item, blank, paragraph text).
fn skeleton(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            if l.starts_with('#') {
                format!("heading {l}")
            } else if l.starts_with('|') {
                format!("row of {} bars", cell_bars(l))
            } else if l.starts_with("- ") || l.starts_with("* ") {
                "item".into()
            } else if l.trim().is_empty() {
                "blank".into()
            } else {
                "text".into()
            }
        })
        .collect()
}

/// Occurrences of `needle` in `text` that are not preceded by a backslash.
fn unescaped(text: &str, needle: &str) -> usize {
    text.match_indices(needle).filter(|(i, _)| *i == 0 || text.as_bytes()[i - 1] != b'\\').count()
}

/// The payload rendered at `place` (a JSON pointer), compared with plain text rendered there. `None`
/// when neither renders (the place is a lookup key the template needs: refused with an error, never
/// printed as markup).
fn check_place(base: &Value, place: &str, set: impl Fn(&mut Value, &str)) -> Option<()> {
    let mut plain = base.clone();
    set(&mut plain, NEUTRAL);
    let mut forged = base.clone();
    set(&mut forged, PAYLOAD);
    let (plain, forged) = match (render_value(&plain), render_value(&forged)) {
        (Ok(p), Ok(f)) => (p, f),
        (Err(_), Err(e)) => {
            // A value the stage's typed record refuses (an enum field given free text) is named by entry and key.
            let clear = e.contains("REPORT.md")
                || e.contains("filter")
                || e.starts_with("the ledger does not parse")
                || e.contains("read as the stage's record: at `");
            assert!(clear, "{place}: an unclear error: {e}");
            return None;
        }
        (p, f) => panic!("{place}: plain text renders {:?}, the payload {:?}", p.err(), f.err()),
    };
    assert_eq!(skeleton(&plain), skeleton(&forged), "{place}: the value changed the report's structure");
    for marker in ["**forged**", "<script>", "[click](", "~~gone~~", "$m$"] {
        assert_eq!(unescaped(&forged, marker), 0, "{place}: {marker} printed as markup");
    }
    assert!(!forged.contains("\n## 7. Verdicts"), "{place}: a forged section");
    assert!(!forged.contains('\u{202e}') && !forged.contains('\r'), "{place}: a control character printed raw");
    assert_eq!(cited_heads(&forged).len(), 1, "{place}");
    Some(())
}

/// Every string leaf of `v` under `prefix`, as JSON pointers.
fn strings(v: &Value, prefix: String, out: &mut Vec<String>) {
    match v {
        Value::String(_) => out.push(prefix),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| strings(x, format!("{prefix}/{i}"), out)),
        Value::Object(m) => {
            m.iter().for_each(|(k, x)| strings(x, format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")), out))
        }
        _ => {}
    }
}

#[test]
fn every_string_of_the_config_and_the_ledger_renders_as_text() {
    let base = fixture("ledger_complete.json");
    let n = base["entries"].as_array().unwrap().len();
    let compare = (0..n).rev().find(|&i| base["entries"][i]["stage"] == "compare").unwrap();
    // The report reads the config the compare entry recorded; every entry's own metrics, env and git.
    let mut places = Vec::new();
    strings(&base["entries"][compare]["config"], format!("/entries/{compare}/config"), &mut places);
    for i in 0..n {
        for part in ["metrics", "env", "git"] {
            strings(&base["entries"][i][part], format!("/entries/{i}/{part}"), &mut places);
        }
    }
    places.extend(["/header/experiment".to_string(), "/header/signer/key_id".to_string()]);
    let mut rendered = Vec::new();
    for place in &places {
        let set = |v: &mut Value, s: &str| *v.pointer_mut(place).unwrap() = Value::String(s.into());
        if check_place(&base, place, set).is_some() {
            rendered.push(place.as_str());
        }
    }
    // The strings a reader sees most: each must have rendered (escaped), not merely been refused.
    let config = format!("/entries/{compare}/config");
    for must in [
        "/header/experiment".to_string(),
        format!("{config}/deviations/lora.r"),
        format!("{config}/model/source"),
        format!("{config}/data/files/0"),
        format!("{config}/lora/targets/0"),
        format!("{config}/runtime/device"),
    ] {
        assert!(rendered.contains(&must.as_str()), "{must} was not rendered");
    }
    let metric_strings =
        ["statement", "bertscore_model", "answer", "reference", "/context", "/question", "/os", "kernel", "cpu_model"];
    for m in metric_strings {
        assert!(rendered.iter().any(|p| p.ends_with(m) || p.contains(&format!("/{m}/"))), "no {m} was rendered");
    }
    eprintln!("{} of {} strings rendered escaped; the others were refused", rendered.len(), places.len());
    assert!(rendered.len() * 2 > places.len(), "only {} of {} strings rendered", rendered.len(), places.len());
}

#[test]
fn keys_of_recorded_maps_render_as_text() {
    let base = fixture("ledger_complete.json");
    let stage_of =
        |v: &Value, name: &str| v["entries"].as_array().unwrap().iter().rposition(|e| e["stage"] == name).unwrap();
    for (stage, map) in [("prepare", "files"), ("generator", "pairs_per_task")] {
        let i = stage_of(&base, stage);
        let place = format!("/entries/{i}/metrics/{map}");
        let set = |v: &mut Value, s: &str| {
            let m = v.pointer_mut(&place).unwrap().as_object_mut().unwrap();
            let (k, x) = m.iter().next().map(|(k, x)| (k.clone(), x.clone())).unwrap();
            m.remove(&k);
            m.insert(s.into(), x);
        };
        assert!(check_place(&base, &place, set).is_some(), "{place}: a renamed key was refused");
    }
}

#[test]
fn a_forged_deviation_reason_renders_escaped_and_one_citing_a_head_is_refused() {
    let mut v = fixture("ledger_complete.json");
    let first = v["entries"][0]["hash"].as_str().unwrap().to_owned();
    let forged = "smoke: sized for speed\n\n## 7. Verdicts (corrected by the auditor)\n\n| H1 | **supported** (p = 0.001) | A − B |";
    for e in v["entries"].as_array_mut().unwrap() {
        e["config"]["deviations"]["split.test"] = Value::String(forged.into());
    }
    let text = render_value(&v).unwrap();
    let row = text.lines().find(|l| l.starts_with("| `split.test` |")).expect("the deviation's row");
    assert!(
        row.ends_with(r"| smoke: sized for speed␊␊## 7. Verdicts (corrected by the auditor)␊␊/ H1 / \*\*supported\*\* (p = 0.001) / A − B / |"),
        "{row}"
    );
    assert!(!text.lines().any(|l| l.starts_with("## 7. Verdicts (corrected")), "a forged section");
    assert_eq!(text.lines().filter(|l| l.starts_with("## 7.")).count(), 1);
    // The same reason carrying a second citation, as the review's forged report did: refused, not printed.
    let cite = format!("{forged}\n\nRendered from ledger head: seq 0, sha256 {first}");
    for e in v["entries"].as_array_mut().unwrap() {
        e["config"]["deviations"]["split.test"] = Value::String(cite.clone());
    }
    let e = render_value(&v).unwrap_err();
    assert!(e.contains("cites 2 ledger heads") && e.contains(&format!("seq 0, sha256 {first}")), "{e}");
}

#[test]
fn the_report_cites_the_head_it_was_rendered_from_once_and_pins_it_in_the_reproduce_command() {
    let v = fixture("ledger_complete.json");
    let ledger: Ledger = serde_json::from_value(v).unwrap();
    let entries = report_entries(&ledger);
    let head = entries.last().unwrap();
    let text = render(&ledger, entries, DEFAULT_TEMPLATE).unwrap();
    let cited = cited_heads(&text);
    assert_eq!(cited.len(), 1, "{cited:?}");
    assert_eq!((cited[0].seq, cited[0].hash.as_str()), (head.seq, head.hash.as_str()));
    let verify = format!(
        "`hsx verify --ledger ledger/{}.json --trusted-keys ledger/trusted_keys --expect-head {}`",
        ledger.header.experiment, head.hash
    );
    assert!(text.lines().any(|l| l.starts_with("- Reproduce: ") && l.contains(&verify)), "no {verify}");
}

/// The fixture ledger with a report entry after it, as the report stage records one, and its REPORT.md
/// rendered into `ws/report/`.
fn with_report(ws: &std::path::Path) -> (Ledger, String) {
    let mut v = fixture("ledger_complete.json");
    let entries = v["entries"].as_array_mut().unwrap();
    let mut report = entries.last().unwrap().clone();
    report["seq"] = Value::from(entries.len());
    report["stage"] = Value::from("report");
    report["params"] = serde_json::json!({
        "report_dir": "report",
        "template_sha256": hsx::canonical::sha256_hex(DEFAULT_TEMPLATE.as_bytes()),
    });
    // The report-stage code identity it was made with (the fixture's entries record none).
    report["env"]["stage_code_sha256"] = Value::from("a".repeat(64));
    entries.push(report);
    let ledger: Ledger = serde_json::from_value(v).unwrap();
    let text = render(&ledger, report_entries(&ledger), DEFAULT_TEMPLATE).unwrap();
    std::fs::create_dir_all(ws.join("report")).unwrap();
    std::fs::write(ws.join("report/REPORT.md"), &text).unwrap();
    (ledger, text)
}

#[test]
fn a_hand_edited_report_citing_another_head_or_a_second_one_fails_the_report_check() {
    use hsx::ledger::head::citation;
    use hsx::ledger::Head;
    let d = tempfile::tempdir().unwrap();
    let (ledger, text) = with_report(d.path());
    let code = report_code(&ledger);
    assert_eq!(hsx::report::check_report_entry(&ledger, d.path(), &code), Ok(None));
    let cited = cited_heads(&text);
    assert_eq!(cited.len(), 1);
    let rendered_from = &ledger.entries[ledger.entries.len() - 2];
    assert_eq!((cited[0].seq, cited[0].hash.as_str()), (rendered_from.seq, rendered_from.hash.as_str()));
    let first = Head { seq: 0, hash: ledger.entries[0].hash.clone() };
    let cases = [
        // The citation replaced by one of an earlier entry (which the ledger has).
        ("another head", text.replace(&citation(&cited[0]), &citation(&first)), "cites ledger head seq 0"),
        // A second citation added, as a forged section would carry it.
        (
            "a second citation",
            text.replacen("\n## 1.", &format!("\nRendered from {}.\n\n## 1.", citation(&first)), 1),
            "cites 2 ledger heads",
        ),
    ];
    for (what, edited, says) in cases {
        assert_ne!(edited, text, "{what}");
        std::fs::write(d.path().join("report/REPORT.md"), &edited).unwrap();
        // Whichever report code made it: a report made by other code is still held to its one citation.
        for this_code in [code.clone(), "0".repeat(64)] {
            let f = hsx::report::check_report_entry(&ledger, d.path(), &this_code).expect_err(what);
            assert_eq!((f.entry, f.field.as_str()), (Some(ledger.entries.len() - 1), "outputs"), "{what}: {f}");
            assert!(f.message.contains(says) && f.message.contains("report/REPORT.md"), "{what}: {f}");
        }
    }
}

/// The report-stage code identity the fixture's report entry records.
fn report_code(ledger: &Ledger) -> String {
    ledger.entries.last().unwrap().env["stage_code_sha256"].as_str().unwrap().to_owned()
}

/// A report that differs from its re-render fails when this hsx's report code is the code that made it;
/// made by other report code it is not re-rendered (a note says so) but must be the signed output.
#[test]
fn a_differing_report_fails_under_the_same_report_code_and_is_held_to_its_hash_under_other_code() {
    let d = tempfile::tempdir().unwrap();
    let (mut ledger, text) = with_report(d.path());
    let code = report_code(&ledger);
    let other = "f".repeat(64);
    assert_ne!(code, other);
    // One changed character outside the citation, as an older renderer's spelling of a number would be.
    let line = text.lines().position(|l| l.contains("alpha = ")).expect("a LoRA line in the report");
    let edited = text.replacen("alpha = ", "alpha  = ", 1);
    assert_ne!(edited, text);
    std::fs::write(d.path().join("report/REPORT.md"), &edited).unwrap();
    let sha = hsx::canonical::sha256_hex(edited.as_bytes());
    let record =
        serde_json::json!({"root": "workspace", "path": "report/REPORT.md", "bytes": edited.len(), "sha256": sha});
    ledger.entries.last_mut().unwrap().outputs = vec![serde_json::from_value(record).unwrap()];

    let f = hsx::report::check_report_entry(&ledger, d.path(), &code).expect_err("same code, differing text");
    assert!(f.message.contains(&format!("line {} does not match the ledger", line + 1)), "{f}");

    let note = hsx::report::check_report_entry(&ledger, d.path(), &other).unwrap().expect("a note");
    assert!(note.contains("not re-rendered") && note.contains(&code[..12]) && note.contains(&other[..12]), "{note}");

    // Under other code the signed output hash is the check: bytes other than the recorded ones fail.
    std::fs::write(d.path().join("report/REPORT.md"), edited.replacen("alpha  = ", "alpha   = ", 1)).unwrap();
    let f = hsx::report::check_report_entry(&ledger, d.path(), &other).expect_err("bytes not the signed output");
    assert!(f.message.contains("is not the signed entry's output") && f.message.contains(&sha), "{f}");
    // And a report whose entry records no REPORT.md output has nothing to hold it to.
    ledger.entries.last_mut().unwrap().outputs.clear();
    std::fs::write(d.path().join("report/REPORT.md"), &edited).unwrap();
    let f = hsx::report::check_report_entry(&ledger, d.path(), &other).expect_err("no recorded output");
    assert!(f.message.contains("not among the signed entry's outputs"), "{f}");
}
