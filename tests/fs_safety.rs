//! Nothing hsx writes can be redirected, nothing it reads can hang it (issue 28), one test per class:
//! planted symbolic links and hard links at every path hsx writes (locks, the old temporary names, the
//! ledger, its head, stage outputs, reports, Slurm state and fragments), FIFOs and endless files at
//! every path it reads (ledger, head, claim, config, template, report, fragment, Slurm state, data),
//! `..` in every config path, and report directories that belong to one ledger. Each ends in a clear
//! refusal, with nothing outside the directory touched and nothing recorded lost; every call that
//! could hang runs under a timeout, so a hang fails the test instead of blocking it.
mod common;

use hsx::ledger::fragment::{read_checked, FragmentWriter};
use hsx::ledger::verify::{verify_file, VerifyOptions};
use hsx::ledger::{
    Determinism, GitState, Ledger, LedgerWriter, Locations, Recorder, Root, Roots, SigningKeyFile, StageOutcome,
    StageSpec,
};
use hsx::report::{write_report, ReportTarget};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `f` on a thread; fails the test if it has not returned within `secs` (it would hang forever).
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs)).unwrap_or_else(|_| panic!("{what}: did not return within {secs} s"))
}

/// Runs the hsx binary in `cwd`, killing it and failing the test after `secs`; (exit code, output).
fn hsx(args: &[&str], cwd: &Path, secs: u64) -> (Option<i32>, String) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(common::hsx_bin())
        .args(args)
        .current_dir(cwd)
        .env("HSX_DATA_MIRROR", common::mirror())
        .env_remove("HSX_SIGNING_KEY")
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "hsx {args:?} did not finish within {secs} s (hung): {}",
                std::fs::read_to_string(log.path()).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code(), std::fs::read_to_string(log.path()).unwrap())
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().expect("mkfifo (coreutils) must be installed");
    assert!(st.success());
}

fn key(dir: &Path) -> SigningKeyFile {
    SigningKeyFile::load(&common::key(dir, "signer.pem")).unwrap()
}

fn entries(ledger: &Path) -> usize {
    hsx::ledger::store::read(ledger).unwrap().entries.len()
}

fn smoke_with(ws: &Path, name: &str, edit: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(common::repo_path("configs/smoke.toml")).unwrap();
    for (from, to) in edit {
        assert!(text.contains(from), "smoke.toml holds no {from:?}");
        text = text.replacen(from, to, 1);
    }
    let p = ws.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn links_planted_at_the_locks_the_old_temporary_name_the_head_and_the_ledger_are_refused_and_their_targets_untouched() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, _) = common::fixture_ledger(d.path());
    let ws = d.path().join("ws");
    let loc = Locations::new(ws.join("runs/fx"), &ws);
    let victim = d.path().join("victim.txt");
    std::fs::write(&victim, "keep\n").unwrap();

    for lock in [ws.join("ledger/fx.json.lock"), ws.join("runs/fx/.hsx-run.lock")] {
        let name = lock.file_name().unwrap().to_string_lossy().into_owned();
        std::os::unix::fs::symlink(&victim, &lock).unwrap();
        let e = LedgerWriter::open(&ledger, "fx", &loc, key(d.path())).unwrap_err().to_string();
        assert!(e.contains(&name) && e.contains("symbolic link"), "{e}");
        std::fs::remove_file(&lock).unwrap();
        std::fs::hard_link(&victim, &lock).unwrap();
        let e = LedgerWriter::open(&ledger, "fx", &loc, key(d.path())).unwrap_err().to_string();
        assert!(e.contains(&name) && e.contains("hard link"), "{e}");
        std::fs::remove_file(&lock).unwrap();
    }

    // The temporary name an earlier hsx used (`.<ledger>.tmp.<pid>`) is never opened.
    let old_tmp = ws.join(format!("ledger/.fx.json.tmp.{}", std::process::id()));
    std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
    let mut w = LedgerWriter::open(&ledger, "fx", &loc, key(d.path())).unwrap();
    common::append(&mut w, "more").unwrap();
    drop(w);
    assert!(std::fs::symlink_metadata(&ledger).unwrap().is_file(), "the ledger is no longer a regular file");
    assert_eq!(entries(&ledger), 5);
    std::fs::remove_file(&old_tmp).unwrap();

    // A signed head that is a link: the ledger is not used, and nothing is written through it.
    let head = ws.join("ledger/fx.head.json");
    std::fs::rename(&head, d.path().join("head.bak")).unwrap();
    std::os::unix::fs::symlink(&victim, &head).unwrap();
    let e = LedgerWriter::open(&ledger, "fx", &loc, key(d.path())).unwrap_err().to_string();
    assert!(e.contains("fx.head.json") && e.contains("symbolic link"), "{e}");
    std::fs::remove_file(&head).unwrap();
    std::fs::rename(d.path().join("head.bak"), &head).unwrap();

    // A ledger with a second name outside: the append is refused before anything is written.
    let outside = d.path().join("outside-copy.json");
    std::fs::hard_link(&ledger, &outside).unwrap();
    let before = std::fs::read(&outside).unwrap();
    let mut w = LedgerWriter::open(&ledger, "fx", &loc, key(d.path())).unwrap();
    let e = common::append(&mut w, "again").unwrap_err().to_string();
    assert!(e.contains("fx.json") && e.contains("hard link"), "{e}");
    drop(w);
    assert_eq!(std::fs::read(&outside).unwrap(), before);
    assert_eq!(entries(&ledger), 5, "a recorded entry was lost or one was added");

    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
    let left: Vec<String> = std::fs::read_dir(ws.join("ledger"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn a_symlinked_stage_directory_or_a_hard_linked_output_is_refused_before_anything_is_recorded() {
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let outside = d.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let k = common::key(d.path(), "k.pem");
    let cfg = common::repo_path("configs/smoke.toml");
    let run = || {
        let args =
            ["run", "--config", cfg.to_str().unwrap(), "--ledger", "ledger/s.json", "--key", k.to_str().unwrap()];
        hsx(&[&args[..], &["--only", "prepare"]].concat(), &ws, 120)
    };
    let (code, out) = run();
    assert_eq!(code, Some(0), "{out}");
    let ledger = ws.join("ledger/s.json");
    let n = entries(&ledger);

    let prepare = ws.join("runs/smoke/prepare");
    std::fs::rename(&prepare, d.path().join("prepare.bak")).unwrap();
    std::os::unix::fs::symlink(&outside, &prepare).unwrap();
    let (code, out) = run();
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("runs/smoke/prepare") && out.contains("symbolic link"), "{out}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "a stage wrote through the link");
    assert_eq!(entries(&ledger), n);
    std::fs::remove_file(&prepare).unwrap();
    std::fs::rename(d.path().join("prepare.bak"), &prepare).unwrap();

    let stats = prepare.join("stats.json");
    std::fs::write(outside.join("stats.json"), "victim\n").unwrap();
    std::fs::remove_file(&stats).unwrap();
    std::fs::hard_link(outside.join("stats.json"), &stats).unwrap();
    let (code, out) = run();
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("stats.json") && out.contains("hard link"), "{out}");
    assert_eq!(std::fs::read_to_string(outside.join("stats.json")).unwrap(), "victim\n");
    assert_eq!(entries(&ledger), n);
}

#[test]
fn a_report_directory_belongs_to_one_ledger_and_a_planted_lock_or_foreign_report_there_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    // `runs/` linked to scratch space, as on a cluster: the configured directories are taken as named.
    std::fs::create_dir_all(d.path().join("scratch")).unwrap();
    std::os::unix::fs::symlink(d.path().join("scratch"), ws.join("runs")).unwrap();
    let k = common::key(d.path(), "k.pem");
    let run = |cfg: &Path, ledger: &str| {
        let args = ["run", "--config", cfg.to_str().unwrap(), "--ledger", ledger, "--key", k.to_str().unwrap()];
        hsx(&[&args[..], &["--only", "prepare"]].concat(), &ws, 120)
    };
    let (code, out) = run(&common::repo_path("configs/smoke.toml"), "ledger/a.json");
    assert_eq!(code, Some(0), "{out}");
    assert!(d.path().join("scratch/smoke/prepare/stats.json").is_file());
    let claim: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("scratch/smoke-report/.hsx-ledger")).unwrap()).unwrap();
    assert!(claim["ledger"].as_str().unwrap().ends_with("ledger/a.json"), "{claim}");

    // Another experiment (its own run directory) with the same report_dir: refused before any stage.
    let other = smoke_with(&ws, "smoke2.toml", &[("id = \"smoke\"", "id = \"smoke2\"")]);
    let (code, out) = run(&other, "ledger/b.json");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("report directory") && out.contains("a.json") && out.contains("b.json"), "{out}");
    assert!(!ws.join("runs/smoke2/prepare").exists(), "a stage ran");

    // A lock file planted as a link in a report directory is never opened through.
    let victim = d.path().join("victim.txt");
    std::fs::write(&victim, "keep\n").unwrap();
    let three = smoke_with(
        &ws,
        "smoke3.toml",
        &[
            ("id = \"smoke\"", "id = \"smoke3\""),
            ("report_dir = \"runs/smoke-report\"", "report_dir = \"reports/three\""),
        ],
    );
    std::fs::create_dir_all(ws.join("reports/three")).unwrap();
    std::os::unix::fs::symlink(&victim, ws.join("reports/three/.hsx-report.lock")).unwrap();
    let (code, out) = run(&three, "ledger/c.json");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(".hsx-report.lock") && out.contains("symbolic link"), "{out}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");

    // An unclaimed directory holding another report (the shipped `report/`): refused, left as it was.
    let four = smoke_with(
        &ws,
        "smoke4.toml",
        &[("id = \"smoke\"", "id = \"smoke4\""), ("report_dir = \"runs/smoke-report\"", "report_dir = \"shipped\"")],
    );
    std::fs::create_dir_all(ws.join("shipped")).unwrap();
    std::fs::write(ws.join("shipped/REPORT.md"), "the shipped report\n").unwrap();
    let (code, out) = run(&four, "ledger/d.json");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("REPORT.md") && out.contains("did not write"), "{out}");
    assert_eq!(std::fs::read_to_string(ws.join("shipped/REPORT.md")).unwrap(), "the shipped report\n");
}

/// A complete ledger (tests/inputs/ledger_complete.json) whose compare entry records a table, a plot and
/// comparison.json that exist under `run`.
fn complete_ledger(run: &Path) -> Ledger {
    let text = std::fs::read_to_string(common::repo_path("tests/inputs/ledger_complete.json")).unwrap();
    let mut ledger: Ledger = serde_json::from_str(&text).unwrap();
    let files = [
        ("compare/metrics_table.csv", "model,f1\nA,0.5\n"),
        ("compare/plots/f1.png", "png"),
        ("compare/comparison.json", "{}"),
    ];
    let mut outputs = Vec::new();
    for (rel, body) in files {
        std::fs::create_dir_all(run.join(rel).parent().unwrap()).unwrap();
        std::fs::write(run.join(rel), body).unwrap();
        let (bytes, sha256) = hsx::ledger::files::hash_file(&run.join(rel)).unwrap();
        outputs.push(hsx::ledger::FileRecord { root: Root::Run, path: rel.into(), bytes, sha256 });
    }
    ledger.entries.iter_mut().filter(|e| e.stage == "compare").for_each(|e| e.outputs = outputs.clone());
    ledger
}

#[test]
fn hsx_report_out_writes_only_the_files_it_names_and_replaces_only_what_its_ledger_wrote() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let ledger = complete_ledger(&run);
    let dir = d.path().join("out");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("REPORT.md"), "someone else's report\n").unwrap();
    std::fs::write(dir.join("metrics_table.csv"), "someone else's table\n").unwrap();
    let mut target = ReportTarget {
        root: dir.clone(),
        markdown: dir.join("summary.md"),
        ledger: d.path().join("l.json"),
        claimed: false,
        force: false,
    };
    let write = |t: &ReportTarget| write_report(&ledger, &run, t, hsx::report::DEFAULT_TEMPLATE);

    let e = write(&target).unwrap_err().to_string();
    assert!(e.contains("metrics_table.csv") && e.contains("--force"), "{e}");
    assert!(!dir.join("summary.md").exists() && !dir.join("plots").exists(), "written before the refusal");
    let written = {
        target.force = true;
        write(&target).unwrap()
    };
    assert_eq!(written, [dir.join("metrics_table.csv"), dir.join("plots/f1.png"), dir.join("summary.md")]);
    assert_eq!(std::fs::read_to_string(dir.join("REPORT.md")).unwrap(), "someone else's report\n");
    assert!(!dir.join("comparison.json").exists());
    // The same files again need no --force; a file that differs does, unless the directory is this ledger's.
    target.force = false;
    write(&target).unwrap();
    std::fs::write(dir.join("summary.md"), "edited\n").unwrap();
    assert!(write(&target).unwrap_err().to_string().contains("summary.md"));
    let claim = |sha: &str, name: &str| {
        let c = json!({"header_sha256": sha, "ledger": name});
        std::fs::write(dir.join(".hsx-ledger"), serde_json::to_vec(&c).unwrap()).unwrap();
    };
    claim(&ledger.header.sha256(), "../l.json");
    write(&target).unwrap();
    // A directory another (existing) ledger claims is refused, naming both, even for new file names.
    std::fs::write(dir.join("other.json"), "{}").unwrap();
    claim(&"0".repeat(64), "other.json");
    target.markdown = dir.join("new.md");
    let e = write(&target).unwrap_err().to_string();
    assert!(e.contains("other.json") && e.contains("l.json") && e.contains("report directory"), "{e}");
    assert!(!dir.join("new.md").exists());
    // --force does not write through a link.
    let victim = d.path().join("victim.txt");
    std::fs::write(&victim, "keep\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("new.md")).unwrap();
    target.force = true;
    let e = write(&target).unwrap_err().to_string();
    assert!(e.contains("new.md") && e.contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");

    // `hsx report --help` names what it writes and --force.
    let (code, help) = hsx(&["report", "--help"], d.path(), 30);
    assert_eq!(code, Some(0), "{help}");
    assert!(help.contains("metrics_table.csv") && help.contains("plots/") && help.contains("--force"), "{help}");
}

/// The fixture ledger with a `report` entry recording `rep/REPORT.md` under the workspace.
fn ledger_with_report(dir: &Path) -> (PathBuf, PathBuf) {
    let (ledger, roots) = common::fixture_ledger(dir);
    let ws = roots.workspace.clone().unwrap();
    std::fs::create_dir_all(ws.join("rep")).unwrap();
    std::fs::write(ws.join("rep/REPORT.md"), "# report\n").unwrap();
    let mut w = LedgerWriter::open(&ledger, "fx", &Locations::new(ws.join("runs/fx"), &ws), key(dir)).unwrap();
    let mut rec = Recorder {
        writer: &mut w,
        roots,
        config: json!({}),
        master_seed: 42,
        git: GitState::NoRepository,
        env: Box::new(|| json!({})),
    };
    let spec = StageSpec {
        stage: "report".into(),
        params: json!({"report_dir": "rep", "template_sha256": "0".repeat(64)}),
        inputs: vec![],
        determinism: Determinism::Bitwise,
    };
    rec.record::<std::io::Error>(spec, |_| {
        Ok(StageOutcome { outputs: vec![(Root::Workspace, "rep/REPORT.md".into())], metrics: json!({}) })
    })
    .unwrap()
    .unwrap();
    (ledger, ws.join("rep/REPORT.md"))
}

#[test]
fn fifos_and_endless_files_at_every_path_hsx_reads_are_refused_without_hanging() {
    let d = tempfile::tempdir().unwrap();

    // The report verify re-renders: a FIFO, then a link to /dev/zero.
    let (ledger, report) = ledger_with_report(d.path());
    for plant in ["fifo", "zero"] {
        std::fs::remove_file(&report).unwrap();
        if plant == "fifo" {
            mkfifo(&report);
        } else {
            std::os::unix::fs::symlink("/dev/zero", &report).unwrap();
        }
        let l = ledger.clone();
        let r = within(20, "verify", move || hsx::audit::verify(&l, None, &VerifyOptions::default()).unwrap());
        let f = r.first_failure.expect("a report that is not a regular file passed");
        assert!(f.message.contains("REPORT.md"), "{plant}: {f}");
    }
    let (code, out) = hsx(&["verify", "--ledger", ledger.to_str().unwrap()], d.path(), 30);
    assert_eq!(code, Some(1), "{out}");

    // The ledger, its head and the run directory's claim.
    let fifo = d.path().join("fifo.json");
    mkfifo(&fifo);
    let (f, r) = (fifo.clone(), Roots::default());
    let e = within(20, "a FIFO ledger", move || verify_file(&f, &r, &VerifyOptions::default()).unwrap_err());
    assert!(e.to_string().contains("FIFO"), "{e}");
    let zero = d.path().join("zero.json");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let e = within(20, "a /dev/zero ledger", move || verify_file(&zero, &Roots::default(), &VerifyOptions::default()));
    assert!(e.unwrap_err().to_string().contains("device"));
    let head = ledger.with_file_name("fx.head.json");
    std::fs::rename(&head, d.path().join("head.bak")).unwrap();
    mkfifo(&head);
    let l = ledger.clone();
    let r = within(20, "a FIFO head", move || hsx::ledger::store::read(&l).map(|_| ()).unwrap_err().to_string());
    assert!(r.contains("fx.head.json") && r.contains("FIFO"), "{r}");
    std::fs::remove_file(&head).unwrap();
    std::fs::rename(d.path().join("head.bak"), &head).unwrap();
    let ws = d.path().join("ws");
    let claim = ws.join("runs/fx/.hsx-ledger");
    std::fs::remove_file(&claim).unwrap();
    mkfifo(&claim);
    let (l, w, k) = (ledger.clone(), ws.clone(), key(d.path()));
    let e = within(20, "a FIFO claim", move || {
        LedgerWriter::open(&l, "fx", &Locations::new(w.join("runs/fx"), &w), k).unwrap_err().to_string()
    });
    assert!(e.contains(".hsx-ledger") && e.contains("FIFO"), "{e}");

    // A config, a template, a data file (through the binary: each exits 2 promptly, naming the file).
    let cfg = d.path().join("c.toml");
    mkfifo(&cfg);
    let (code, out) = hsx(&["run", "--config", "c.toml", "--ledger", "l.json"], d.path(), 30);
    assert!(code == Some(2) && out.contains("c.toml") && out.contains("FIFO"), "{out}");
    std::os::unix::fs::symlink("/dev/zero", d.path().join("z.toml")).unwrap();
    let (code, out) = hsx(&["run", "--config", "z.toml", "--ledger", "l.json"], d.path(), 30);
    assert!(code == Some(2) && out.contains("z.toml") && out.contains("device"), "{out}");
    std::fs::remove_file(&claim).unwrap();
    let t = d.path().join("t.j2");
    mkfifo(&t);
    let args = ["report", "--ledger", ledger.to_str().unwrap(), "--template", "t.j2", "--out", "r/REPORT.md"];
    let (code, out) = hsx(&args, d.path(), 30);
    assert!(code == Some(2) && out.contains("t.j2") && out.contains("FIFO"), "{out}");
    let csv = d.path().join("valid.csv");
    mkfifo(&csv);
    let (code, out) = hsx(&["data", "stats", "valid.csv"], d.path(), 30);
    assert!(code == Some(2) && out.contains("valid.csv") && out.contains("FIFO"), "{out}");

    // A Slurm job's fragment.
    let frag_dir = ws.join("runs/fx/slurm/fragments");
    std::fs::create_dir_all(&frag_dir).unwrap();
    mkfifo(&frag_dir.join("ingest.json"));
    let header = hsx::ledger::store::read(&ledger).unwrap().header;
    let run = ws.join("runs/fx");
    let e = within(20, "a FIFO fragment", move || read_checked(&run, "ingest", &header).unwrap_err().to_string());
    assert!(e.contains("ingest.json") && e.contains("FIFO"), "{e}");
}

#[test]
fn the_slurm_drivers_state_and_a_jobs_fragment_are_never_read_or_written_through_a_fifo_or_a_link() {
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    let run = ws.join("runs/smoke");
    let ledger = ws.join("ledger/s.json");
    // A ledger for the smoke experiment, its run directory claimed (as a first `hsx run` leaves it).
    drop(LedgerWriter::open(&ledger, "smoke", &Locations::new(&run, &ws), key(d.path())).unwrap());
    std::fs::create_dir_all(run.join("slurm")).unwrap();
    mkfifo(&run.join("slurm/jobs.json"));
    let k = common::key(d.path(), "signer.pem");
    let cfg = common::repo_path("configs/smoke.toml");
    let args = ["run", "--executor", "slurm", "--config", cfg.to_str().unwrap(), "--ledger", "ledger/s.json"];
    let args = [&args[..], &["--key", k.to_str().unwrap()]].concat();
    let (code, out) = hsx(&args, &ws, 30);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("jobs.json") && out.contains("FIFO"), "{out}");
    assert!(!ws.join("ledger/s.json.lock").exists(), "the ledger's lock was left held");

    let outside = d.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::remove_dir_all(run.join("slurm")).unwrap();
    std::os::unix::fs::symlink(&outside, run.join("slurm")).unwrap();
    let (code, out) = hsx(&args, &ws, 30);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("slurm") && out.contains("symbolic link"), "{out}");
    // A job writing its fragment through the same link is refused too.
    let header = hsx::ledger::store::read(&ledger).unwrap().header;
    let mut fw = FragmentWriter::new(&run, "prepare", header, key(d.path())).unwrap();
    let e = common::append(&mut fw, "prepare").unwrap_err().to_string();
    assert!(e.contains("slurm") && e.contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "something was written through the link");
}

#[test]
fn dot_dot_and_control_characters_in_every_config_path_are_refused_naming_the_key() {
    let smoke = std::fs::read_to_string(common::repo_path("configs/smoke.toml")).unwrap();
    let base = std::fs::read_to_string(common::repo_path("configs/base.toml")).unwrap();
    let cases = [
        (&smoke, "experiment.runs_dir", "runs_dir = \"runs\"", "runs_dir = \"../runs\""),
        (&smoke, "experiment.report_dir", "report_dir = \"runs/smoke-report\"", "report_dir = \"../report\""),
        (&smoke, "experiment.report_dir", "report_dir = \"runs/smoke-report\"", "report_dir = \"a/../../b\""),
        (&smoke, "experiment.report_dir", "report_dir = \"runs/smoke-report\"", "report_dir = \"rep\\nort\""),
        (&smoke, "data.dir", "dir = \"data/cosmosqa\"", "dir = \"../data\""),
        (&base, "model.path", "path = \"models/flan-t5-base\"", "path = \"../models/flan-t5-base\""),
        (&base, "eval.bertscore_model", "bertscore_model = \"\"", "bertscore_model = \"../minilm\""),
    ];
    for (text, key, from, to) in cases {
        assert!(text.contains(from), "{from}");
        let e = hsx::config::Config::from_toml_str(&text.replacen(from, to, 1), Path::new("c.toml")).unwrap_err();
        assert!(matches!(&e, hsx::config::ConfigError::Invalid { key: k, .. } if k == key), "{to}: {e}");
    }
    // Through the binary: refused at validation, nothing written outside the workspace.
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    smoke_with(&ws, "c.toml", &[("report_dir = \"runs/smoke-report\"", "report_dir = \"../escaped\"")]);
    let k = common::key(d.path(), "k.pem");
    let (code, out) =
        hsx(&["run", "--config", "c.toml", "--ledger", "ledger/c.json", "--key", k.to_str().unwrap()], &ws, 30);
    assert!(code == Some(2) && out.contains("experiment.report_dir") && out.contains(".."), "{out}");
    assert!(!d.path().join("escaped").exists() && !ws.join("ledger").exists() && !ws.join("runs").exists());
}

#[test]
fn every_shipped_profile_reports_into_its_own_directory_and_only_tiny_into_the_shipped_report() {
    let mut seen = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(common::repo_path("configs")).unwrap().filter_map(Result::ok) {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let cfg = hsx::config::Config::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let dir = cfg.experiment.report_dir.trim_end_matches('/').to_owned();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(dir == "report", name == "tiny.toml", "{name}: report_dir {dir}");
        assert!(!dir.starts_with("report/"), "{name}: report_dir {dir} is inside the shipped report/");
        if let Some(other) = seen.insert(dir.clone(), name.clone()) {
            panic!("{name} and {other} share report_dir {dir}");
        }
    }
    assert!(seen.len() >= 4, "{seen:?}");
}

/// The rule of docs/ARCHITECTURE.md, *Files*: outside `src/fsx/` no source file opens a file for writing,
/// renames or copies one, or reads one whole by path (test modules and the kernel's `/proc` files aside).
/// A new writer or reader that bypasses `fsx` fails here, naming the file and line.
#[test]
fn no_source_file_writes_or_reads_a_file_around_fsx() {
    let forbidden = [
        "fs::write(",
        "File::create(",
        "File::open(",
        "OpenOptions::new(",
        "fs::read_to_string(",
        "fs::read(",
        "fs::copy(",
        "fs::rename(",
    ];
    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    assert!(files.len() > 50, "read {} source files", files.len());
    let mut found = Vec::new();
    for p in files.iter().filter(|p| !p.starts_with(root.join("src/fsx"))) {
        let text = std::fs::read_to_string(p).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, line) in text.lines().enumerate() {
            let code = line.trim_start();
            // The kernel's own files (/proc) are not something a user or a ledger can plant.
            if code.starts_with("//") || line.contains("\"/proc/") {
                continue;
            }
            if let Some(pat) = forbidden.iter().find(|pat| line.contains(*pat)) {
                found.push(format!("{}:{} ({pat})", p.strip_prefix(root).unwrap().display(), i + 1));
            }
        }
    }
    assert!(found.is_empty(), "file access around hsx::fsx: {found:?}");
}
