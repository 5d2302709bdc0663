//! CosmosQA ingestion and the `prepare` stage.
mod common;

use hsx::data::{read_csv, read_jsonl, ReadOptions};
use hsx::ledger::Root;
use hsx::pipeline::{self, Quiet, RunOptions};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

const HEADER: &str = "id,context,question,answer0,answer1,answer2,answer3,label\n";
// A good row whose context spans two lines (lines 2-3), so later line numbers test multi-line counting.
const GOOD: &str = "r1,\"He left.\nThen he came back.\",Why?,a,b,c,d,1\n";

fn write(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn csv_error(body: &[u8]) -> String {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "bad.csv", &[HEADER.as_bytes(), GOOD.as_bytes(), body].concat());
    let e = read_csv(&p, &ReadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("bad.csv"), "{e}");
    e
}

#[test]
fn malformed_rows_name_their_line() {
    let e = csv_error(b"r2,ctx,q,a,b,c,d,7\n");
    assert!(e.contains("line 4") && e.contains("label"), "{e}");
    let e = csv_error(b"r2,ctx,q,a,b,c,d\n");
    assert!(e.contains("line 4") && e.contains("7 fields"), "{e}");
    let e = csv_error(b"r2,\"ctx with no closing quote,q,a,b,c,d,0\nr3,ctx,q,a,b,c,d,0\n");
    assert!(e.contains("line 4") && e.contains("unterminated quote"), "{e}");
    let e = csv_error(b"r2,caf\xe9,q,a,b,c,d,0\n");
    assert!(e.contains("line 4") && e.contains("UTF-8") && e.contains("context"), "{e}");
    let e = csv_error(b"r2,ctx,,a,b,c,d,0\n");
    assert!(e.contains("line 4") && e.contains("empty question"), "{e}");
    let e = csv_error(b"r1,ctx,q,a,b,c,d,0\n");
    assert!(e.contains("line 4") && e.contains("duplicate id"), "{e}");
    let e = csv_error(b"r2,ctx,q,a,,c,d,1\n");
    assert!(e.contains("line 4") && e.contains("answer1"), "{e}");
    let long = format!("r2,{},q,a,b,c,d,0\n", "x".repeat(70_000));
    let e = csv_error(long.as_bytes());
    assert!(e.contains("line 4") && e.contains("byte limit"), "{e}");
}

#[test]
fn missing_column_in_header_is_named() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "h.csv", b"id,context,question,answer0,answer1,answer2,label\nr,c,q,a,b,c,0\n");
    let e = read_csv(&p, &ReadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("answer3"), "{e}");
}

#[test]
fn skip_invalid_counts_by_reason() {
    let d = tempfile::tempdir().unwrap();
    let body =
        [HEADER, GOOD, "r2,ctx,q,a,b,c,d,9\n", "r3,ctx,q,a,b,c,d\n", "r1,ctx,q,a,b,c,d,0\n", "r4,ctx,q,a,b,c,d,3\n"]
            .concat();
    let p = write(d.path(), "s.csv", body.as_bytes());
    let r = read_csv(&p, &ReadOptions { skip_invalid: true, ..Default::default() }).unwrap();
    assert_eq!(r.examples.len(), 2);
    assert_eq!(r.examples[1].answer, "d");
    assert_eq!(r.rows, 5);
    assert_eq!(r.skipped.get("bad_label"), Some(&1));
    assert_eq!(r.skipped.get("missing_column"), Some(&1));
    assert_eq!(r.skipped.get("duplicate_id"), Some(&1));
}

#[test]
fn jsonl_reader_names_lines() {
    let d = tempfile::tempdir().unwrap();
    let good =
        r#"{"id":"a","context":"c","question":"q","answer0":"x","answer1":"y","answer2":"z","answer3":"w","label":2}"#;
    let p = write(d.path(), "d.jsonl", format!("{good}\n\n{{\"id\": \"b\"\n").as_bytes());
    let e = read_jsonl(&p, &ReadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("line 3"), "{e}");
    let p = write(
        d.path(),
        "e.jsonl",
        format!("{good}\n{}\n", good.replace("\"a\"", "\"b\"").replace("\"label\":2", "\"label\":\"1\"")).as_bytes(),
    );
    let r = read_jsonl(&p, &ReadOptions::default()).unwrap();
    assert_eq!((r.examples[0].answer.as_str(), r.examples[1].answer.as_str()), ("z", "y"));
}

#[test]
fn the_dev_split_reads_completely() {
    let csv = common::mirror().join("cosmosqa/valid.csv");
    let t = std::time::Instant::now();
    let r = read_csv(&csv, &ReadOptions::default()).unwrap();
    eprintln!("read {} rows in {:?}", r.rows, t.elapsed());
    assert_eq!(r.rows, 2985);
    assert_eq!(r.examples.len(), 2985);
    let none = r.examples.iter().filter(|e| e.answer == hsx::data::stats::NONE_OF_THE_ABOVE).count();
    assert_eq!(none, 259, "SOURCE.md says 259 rows answer 'None of the above choices .'");
    let ctx: HashSet<&str> = r.examples.iter().map(|e| e.context.as_str()).collect();
    assert_eq!(ctx.len(), 2445);
}

fn run_prepare(ws: &Path, config: &str, seed: Option<u64>, ledger: &str) -> hsx::ledger::Entry {
    let mut text = std::fs::read_to_string(common::repo_path(config)).unwrap();
    if let Some(s) = seed {
        text = text.replace("seed = 42", &format!("seed = {s}"));
    }
    std::fs::write(ws.join("cfg.toml"), text).unwrap();
    let opts = RunOptions {
        config_path: ws.join("cfg.toml"),
        ledger_path: ws.join(ledger),
        key_path: common::key(ws, "k.pem"),
        workspace: ws.to_owned(),
        data_mirror: Some(common::mirror()),
        only: Some("prepare".into()),
        from: None,
        out: None,
    };
    pipeline::run(&opts, &Quiet).unwrap();
    hsx::ledger::store::read(&ws.join(ledger)).unwrap().entries.last().unwrap().clone()
}

#[test]
fn prepare_is_byte_identical_on_rerun_and_seed_sensitive() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let ea = run_prepare(a.path(), "configs/tiny.toml", None, "l.json");
    let eb = run_prepare(b.path(), "configs/tiny.toml", None, "l.json");
    let ec = run_prepare(c.path(), "configs/tiny.toml", Some(7), "l.json");
    assert_eq!(ea.outputs, eb.outputs, "same config, different bytes");
    assert_eq!(ea.inputs[0].root, Root::Data);
    let test_of = |e: &hsx::ledger::Entry| {
        e.outputs.iter().find(|r| r.path.ends_with("human_test.jsonl")).unwrap().sha256.clone()
    };
    assert_ne!(test_of(&ea), test_of(&ec), "a different seed gave the same split");
    assert_eq!(ea.metrics["train"], 2000);
    assert_eq!(ea.metrics["val"], 300);
    assert_eq!(ea.metrics["test"], 500);

    // No context in two splits.
    let dir = a.path().join("runs/exp-42/prepare");
    let ctx = |f: &str| -> HashSet<String> {
        hsx::data::read_jsonl_as::<hsx::data::QaExample>(&dir.join(f)).unwrap().into_iter().map(|e| e.context).collect()
    };
    let (tr, va, te) = (ctx("human_train.jsonl"), ctx("human_val.jsonl"), ctx("human_test.jsonl"));
    assert!(tr.is_disjoint(&te) && tr.is_disjoint(&va) && va.is_disjoint(&te));

    // The recorded run verifies.
    let roots = hsx::ledger::Roots {
        run: Some(a.path().join("runs/exp-42")),
        data: Some(common::mirror().join("cosmosqa")),
        workspace: Some(a.path().to_owned()),
    };
    let rep = hsx::ledger::verify::verify_file(&a.path().join("l.json"), &roots, &Default::default()).unwrap();
    assert!(rep.ok && rep.missing_artifacts == 0, "{:?}", rep.first_failure);
}

#[test]
fn a_modified_dev_split_is_refused_with_both_hashes() {
    let ws = tempfile::tempdir().unwrap();
    let mirror = ws.path().join("mirror/cosmosqa");
    std::fs::create_dir_all(&mirror).unwrap();
    let mut text = std::fs::read(common::mirror().join("cosmosqa/valid.csv")).unwrap();
    text.extend_from_slice(b"\n");
    std::fs::write(mirror.join("valid.csv"), text).unwrap();
    std::fs::write(
        ws.path().join("cfg.toml"),
        std::fs::read_to_string(common::repo_path("configs/smoke.toml")).unwrap(),
    )
    .unwrap();
    let opts = RunOptions {
        config_path: ws.path().join("cfg.toml"),
        ledger_path: ws.path().join("l.json"),
        key_path: common::key(ws.path(), "k.pem"),
        workspace: ws.path().to_owned(),
        data_mirror: Some(ws.path().join("mirror")),
        only: None,
        from: None,
        out: None,
    };
    let e = pipeline::run(&opts, &Quiet).unwrap_err().to_string();
    assert!(e.contains(hsx::data::KNOWN_HASHES[0].1) && e.contains("refusing"), "{e}");

    // And an empty mirror says where the data should come from.
    std::fs::remove_file(mirror.join("valid.csv")).unwrap();
    let e = pipeline::run(&opts, &Quiet).unwrap_err().to_string();
    assert!(e.contains("HSX_DATA_MIRROR") && e.contains("hsx data fetch"), "{e}");
}

/// `hsx data fetch` against a local HTTP server (no internet here).
#[test]
fn fetch_checks_hashes_and_leaves_no_partial_file() {
    use std::io::{Read, Write};
    let body_train = [HEADER, GOOD].concat();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = body_train.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(3) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let (status, body) = if req.starts_with("GET /data/train.csv") {
                ("200 OK", served.clone())
            } else if req.starts_with("GET /data/valid.csv") {
                ("200 OK", "not the official file\n".to_string())
            } else {
                ("404 Not Found", "no".to_string())
            };
            let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    let d = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{port}/data/");
    let got = hsx::data::fetch::fetch(&base, &["train.csv".into()], d.path()).unwrap();
    assert_eq!(got[0].sha256, hsx::canonical::sha256_hex(body_train.as_bytes()));
    assert_eq!(std::fs::read_to_string(d.path().join("train.csv")).unwrap(), body_train);
    let e = hsx::data::fetch::fetch(&base, &["valid.csv".into()], d.path()).unwrap_err().to_string();
    assert!(e.contains(hsx::data::KNOWN_HASHES[0].1), "{e}");
    assert!(!d.path().join("valid.csv").exists() && !d.path().join(".valid.csv.part").exists());
    let e = hsx::data::fetch::fetch(&base, &["test.jsonl".into()], d.path()).unwrap_err().to_string();
    assert!(e.contains("404"), "{e}");
    assert!(hsx::data::fetch::fetch("http://example.org/", &["x.csv".into()], d.path()).is_err());
}
