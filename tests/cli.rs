//! The binary's surface: help text, exit codes, errors that name the file and key.
mod common;

use std::process::{Command, Output};

fn hsx(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(common::hsx_bin()).args(args).current_dir(dir).env_remove("HSX_SIGNING_KEY").output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn help_works_for_every_subcommand() {
    let d = tempfile::tempdir().unwrap();
    let o = hsx(&["--help"], d.path());
    assert_eq!(o.status.code(), Some(0));
    for sub in [
        "run",
        "reproduce",
        "verify",
        "report",
        "export",
        "keygen",
        "score",
        "generate",
        "embed",
        "train",
        "data",
        "data fetch",
        "data stats",
    ] {
        let mut args: Vec<&str> = sub.split(' ').collect();
        args.push("--help");
        let o = hsx(&args, d.path());
        assert_eq!(o.status.code(), Some(0), "{sub}: {}", text(&o));
        assert!(text(&o).contains("Usage: hsx"), "{sub}");
    }
}

#[test]
fn usage_and_input_errors_exit_2_naming_the_problem() {
    let d = tempfile::tempdir().unwrap();
    let o = hsx(&["run", "--config", "configs/nope.toml", "--ledger", "l.json"], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("configs/nope.toml"), "{}", text(&o));

    let cfg = std::fs::read_to_string(common::repo_path("configs/smoke.toml"))
        .unwrap()
        .replace("[split]\n", "[split]\ntrian = 5\n");
    std::fs::write(d.path().join("typo.toml"), cfg).unwrap();
    let o = hsx(&["run", "--config", "typo.toml", "--ledger", "l.json"], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("typo.toml") && text(&o).contains("trian"), "{}", text(&o));

    let o = hsx(&["frobnicate"], d.path());
    assert_eq!(o.status.code(), Some(2));
    let o = hsx(&["verify", "--ledger", "absent.json"], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("absent.json"));
    std::fs::write(d.path().join("junk.json"), "{\"header\": ").unwrap();
    let o = hsx(&["verify", "--ledger", "junk.json"], d.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn commands_on_a_missing_ledger_exit_2_naming_it() {
    let d = tempfile::tempdir().unwrap();
    for args in [
        vec!["reproduce", "--ledger", "x.json"],
        vec!["report", "--ledger", "x.json"],
        vec!["verify", "--ledger", "x.json"],
    ] {
        let o = hsx(&args, d.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(text(&o).contains("x.json"), "{args:?}: {}", text(&o));
    }
}

#[test]
fn keygen_then_run_then_verify_then_tamper() {
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("cfg/hsx/key.pem");
    let key_s = key.to_str().unwrap();
    let o = hsx(&["keygen", "--out", key_s], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = hsx(&["keygen", "--out", key_s], d.path());
    assert_eq!(o.status.code(), Some(2), "keygen overwrote without --force");
    assert!(text(&o).contains("--force"));
    let o = hsx(&["--json", "keygen", "--out", key_s, "--if-missing"], d.path());
    assert_eq!(o.status.code(), Some(0));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    std::fs::write(d.path().join("trusted_keys"), format!("{}\n", info["trusted_keys_line"].as_str().unwrap()))
        .unwrap();

    let mirror = common::mirror();
    let cfg = common::repo_path("configs/smoke.toml");
    let run = |extra: &[&str]| {
        let mut c = Command::new(common::hsx_bin());
        c.args(["run", "--config", cfg.to_str().unwrap(), "--ledger", "ledger/s.json", "--key", key_s])
            .args(extra)
            .env("HSX_DATA_MIRROR", &mirror)
            .current_dir(d.path());
        c.output().unwrap()
    };
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("prepare (ran)"), "{}", text(&o));
    let o = run(&[]);
    assert!(text(&o).contains("prepare (skipped)"), "resume did not skip: {}", text(&o));

    let verify = || {
        Command::new(common::hsx_bin())
            .args(["verify", "--ledger", "ledger/s.json", "--trusted-keys", "trusted_keys"])
            .env("HSX_DATA_MIRROR", &mirror)
            .current_dir(d.path())
            .output()
            .unwrap()
    };
    let o = verify();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("0 missing"), "{}", text(&o));

    let test_file = d.path().join("runs/smoke/prepare/human_test.jsonl");
    let mut body = std::fs::read_to_string(&test_file).unwrap();
    body.push_str("{}\n");
    std::fs::write(&test_file, body).unwrap();
    let o = verify();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("tampered") && text(&o).contains("prepare/human_test.jsonl"), "{}", text(&o));

    // A re-run notices the edited output and records prepare again; the new entry supersedes the old one.
    let o = run(&[]);
    assert!(text(&o).contains("prepare (ran)"), "{}", text(&o));
    let o = verify();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Editing any number in REPORT.md fails verify, naming the line.
    let md = d.path().join("runs/smoke-report/REPORT.md");
    let body = std::fs::read_to_string(&md).unwrap();
    let (i, line) =
        body.lines().enumerate().find(|(_, l)| l.starts_with("| model B ")).expect("results table row for model B");
    let edited = body.replacen(line, &line.replacen("0.", "9.", 1), 1);
    assert_ne!(edited, body);
    std::fs::write(&md, edited).unwrap();
    let o = verify();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&format!("REPORT.md line {}", i + 1)), "{}", text(&o));

    // The report cites the head it was rendered from, once; its reproduce command pins that head.
    std::fs::write(&md, &body).unwrap();
    let cited = hsx::ledger::head::cited_heads(&body);
    assert_eq!(cited.len(), 1, "{cited:?}");
    let pin = format!("--expect-head {}`", cited[0].hash);
    assert!(body.lines().any(|l| l.starts_with("- Reproduce: ") && l.contains(&pin)), "no {pin} in the report");
    let o = Command::new(common::hsx_bin())
        .args(["verify", "--ledger", "ledger/s.json", "--trusted-keys", "trusted_keys", "--expect-head"])
        .arg(&cited[0].hash)
        .env("HSX_DATA_MIRROR", &mirror)
        .current_dir(d.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // A hand edit citing an earlier entry of the same ledger, or adding a second citation, fails verify.
    let ledger: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("ledger/s.json")).unwrap()).unwrap();
    let first = hsx::ledger::Head { seq: 0, hash: ledger["entries"][0]["hash"].as_str().unwrap().to_owned() };
    let (real, forged) = (hsx::ledger::head::citation(&cited[0]), hsx::ledger::head::citation(&first));
    for (edited, says) in [
        (body.replace(&real, &forged), "cites ledger head seq 0".to_string()),
        (format!("{body}\nRendered from {forged}.\n"), "cites 2 ledger heads".to_string()),
    ] {
        std::fs::write(&md, edited).unwrap();
        let o = verify();
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(&says), "{says}: {}", text(&o));
    }
}

/// The README's verify line pins the shipped ledger's head (`--expect-head`), the one its signed head
/// file names: without it, a consistent rollback of ledger and head file verifies.
#[test]
fn the_readme_verify_line_pins_the_shipped_head() {
    let readme = std::fs::read_to_string(common::repo_path("README.md")).unwrap();
    let head: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::repo_path("ledger/exp-42.head.json")).unwrap()).unwrap();
    let hash = head["hash"].as_str().unwrap();
    let lines: Vec<&str> = readme.lines().filter(|l| l.contains("hsx verify --ledger ledger/exp-42.json")).collect();
    assert!(
        readme.lines().any(|l| l.starts_with("hsx verify --ledger ledger/exp-42.json")),
        "no verify line in Using it"
    );
    for line in lines {
        assert!(line.contains(&format!("--expect-head {hash}")), "the README pins another head than {hash}: {line}");
    }
}

/// The archived shipping's report was rendered by earlier report code (its entry's code identity is not
/// this build's): verify does not re-render it, says so in a note (text and `--json`), holds it to the
/// signed output hash, and passes with the archived head and key.
#[test]
fn the_archived_ledger_verifies_with_a_note_for_its_report_made_by_other_report_code() {
    let dir = "ledger/archive/exp-42-2026-11-26/ledger";
    let head: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::repo_path(&format!("{dir}/exp-42.head.json"))).unwrap())
            .unwrap();
    let hash = head["hash"].as_str().unwrap();
    let (ledger, keys) = (format!("{dir}/exp-42.json"), format!("{dir}/trusted_keys"));
    let args = ["--ledger", ledger.as_str(), "--trusted-keys", keys.as_str(), "--expect-head", hash];
    let root = common::repo_path(".");
    let o = hsx(&[&["verify"][..], &args].concat(), &root);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("note: entry 74 (report): report/REPORT.md not re-rendered"), "{}", text(&o));
    let o = hsx(&[&["--json", "verify"][..], &args].concat(), &root);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    let notes = v["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n.as_str().unwrap().contains("made by other report code")), "{notes:?}");
}

#[test]
fn score_reads_id_matched_jsonl_and_rejects_bad_input() {
    let d = tempfile::tempdir().unwrap();
    let w = |name: &str, body: &str| std::fs::write(d.path().join(name), body).unwrap();
    w("p.jsonl", "{\"id\": \"a\", \"text\": \"the cat sat\", \"extra\": 1}\n{\"id\": 2, \"text\": \"\"}\n");
    w("r.jsonl", "{\"id\": 2, \"text\": \"the\"}\n{\"id\": \"a\", \"text\": \"The cat sat.\"}\n");
    let o = hsx(&["--json", "score", "--pred", "p.jsonl", "--ref", "r.jsonl", "--metrics", "em,f1,rouge"], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["n"], 2);
    assert_eq!(v["em"], 1.0, "both pairs normalise equal (\"\" vs \"the\" is EM 1)");
    assert_eq!(v["f1"], 0.5);
    assert!(v["ci95"]["f1"].as_array().unwrap().len() == 2);

    w("q.jsonl", "{\"id\": \"a\", \"text\": \"x\"}\n{\"id\": \"zzz\", \"text\": \"y\"}\n");
    let o = hsx(&["score", "--pred", "q.jsonl", "--ref", "r.jsonl", "--metrics", "em"], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("zzz") && text(&o).contains("ids do not match"), "{}", text(&o));

    w("bad.jsonl", "{\"id\": \"a\", \"text\": \"x\"}\n{\"id\": \"b\", \"text\": \n");
    let o = hsx(&["score", "--pred", "bad.jsonl", "--ref", "r.jsonl", "--metrics", "em"], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("bad.jsonl") && text(&o).contains("line 2"), "{}", text(&o));

    w("empty.jsonl", "");
    let o = hsx(&["score", "--pred", "empty.jsonl", "--ref", "r.jsonl", "--metrics", "em"], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("empty.jsonl") && text(&o).contains("no rows"), "{}", text(&o));

    let o = hsx(&["score", "--pred", "p.jsonl", "--ref", "r.jsonl", "--metrics", "bleu"], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("bleu"));
}

/// `hsx export`: its usage errors come before any work, and an export into the recorded run directory
/// or to something that is not a tracking server is refused (the shipped ledger verifies from a clone,
/// so these reach the export itself).
#[test]
fn export_refuses_bad_targets_with_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let ledger = common::repo_path("ledger/exp-42.json");
    let ledger = ledger.to_str().unwrap();
    let o = hsx(&["export", "--format", "csv", "--ledger", ledger], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("hf, mlflow"), "{}", text(&o));
    let o = hsx(&["export", "--format", "hf", "--ledger", ledger], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("needs --out"), "{}", text(&o));
    let o = hsx(&["export", "--format", "mlflow", "--ledger", ledger, "--out", "x"], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("not to --out"), "{}", text(&o));
    let o = Command::new(common::hsx_bin())
        .args(["export", "--format", "mlflow", "--ledger", ledger])
        .current_dir(d.path())
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("needs --tracking-uri"), "{}", text(&o));
    let o =
        hsx(&["export", "--format", "mlflow", "--ledger", ledger, "--tracking-uri", "file:///tmp/mlruns"], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("not an http(s) URI"), "{}", text(&o));
    let inside = common::repo_path("runs/exp-42/hf-export");
    let o = hsx(&["export", "--format", "hf", "--ledger", ledger, "--out", inside.to_str().unwrap()], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("inside the recorded run directory"), "{}", text(&o));
    assert!(!inside.exists());
}
