//! Everything the CLI prints: JSON lines, progress bars, and the text form of each command's result.
use serde_json::{json, Value};
use std::path::Path;

use hsx::ledger::verify::VerifyReport;
use hsx::ledger::Entry;
use hsx::model::train::TrainProgress;
use hsx::pipeline::{Progress, RunSummary};
use hsx::reproduce::ReproduceReport;

/// How to print: `--json` lines, text, or (`--quiet`) only errors.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
    pub quiet: bool,
}

pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

/// A JSON line with `--json`, else pretty JSON.
pub fn json_or_pretty(out: Out, v: &Value) {
    if out.json {
        print_json(v);
    } else {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }
}

/// Stage events for `hsx run` and `hsx reproduce`.
pub struct CliProgress(pub Out);

impl Progress for CliProgress {
    fn stage_started(&self, stage: &str) {
        if self.0.json {
            print_json(&json!({"event": "stage_started", "stage": stage}));
        } else if !self.0.quiet {
            eprintln!("[{stage}] running");
        }
    }
    fn stage_skipped(&self, stage: &str, reason: &str) {
        if self.0.json {
            print_json(&json!({"event": "stage_skipped", "stage": stage, "reason": reason}));
        } else if !self.0.quiet {
            eprintln!("[{stage}] skipped: {reason}");
        }
    }
    fn stage_finished(&self, stage: &str, entry: &Entry) {
        if self.0.json {
            print_json(&json!({"event": "stage_finished", "stage": stage, "seq": entry.seq, "hash": entry.hash}));
        } else if !self.0.quiet {
            eprintln!("[{stage}] recorded as entry {} ({})", entry.seq, &entry.hash[..12]);
        }
    }
    fn note(&self, message: &str) {
        if self.0.json {
            print_json(&json!({"event": "note", "message": message}));
        } else if !self.0.quiet {
            eprintln!("{message}");
        }
    }
    fn trainer(&self, _stage: &str) -> Box<dyn TrainProgress + '_> {
        Box::new(BarProgress::new(self.0, "  {bar:30} {pos}/{len}  {msg}  ETA {eta}"))
    }
}

/// A progress bar (hidden with `--json` or `--quiet`) that also emits JSON events with `--json`.
pub struct BarProgress {
    pub bar: indicatif::ProgressBar,
    json: bool,
}

impl BarProgress {
    pub fn new(out: Out, template: &str) -> Self {
        let bar = if out.quiet || out.json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(0) };
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        BarProgress { bar, json: out.json }
    }
}

impl TrainProgress for BarProgress {
    fn start(&self, total: usize) {
        self.bar.set_length(total as u64);
    }
    fn step(&self, step: usize, loss: Option<f64>, tps: f64) {
        self.bar.set_position(step as u64);
        if let Some(loss) = loss {
            self.bar.set_message(format!("loss {loss:.4}, {tps:.0} tok/s"));
        }
        if self.json {
            print_json(&json!({"event": "train_step", "step": step, "loss": loss, "tokens_per_s": tps}));
        }
    }
    fn items(&self, done: usize, total: usize, what: &str) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        self.bar.set_message(what.to_owned());
        if self.json {
            print_json(&json!({"event": "progress", "done": done, "total": total, "what": what}));
        }
    }
    fn epoch(&self, epoch: usize, val: Option<f64>) {
        self.bar.println(format!("epoch {epoch}: val loss {}", val.map(|v| format!("{v:.4}")).unwrap_or("-".into())));
        if self.json {
            print_json(&json!({"event": "epoch", "epoch": epoch, "val_loss": val}));
        }
    }
}

pub fn run_summary(out: Out, summary: &RunSummary) {
    if out.json {
        print_json(&json!({"event": "summary", "summary": summary}));
    } else if !out.quiet {
        let done: Vec<String> = summary.stages.iter().map(|s| format!("{} ({})", s.stage, s.status)).collect();
        println!("ledger {}: {}", summary.ledger, done.join(", "));
    }
}

/// Where a finished run's files are, and the command that checks them.
pub fn run_locations(ledger: &Path, report: &Path) {
    let exe = std::env::args().next().unwrap_or_else(|| "hsx".into());
    println!("ledger:        {}", ledger.display());
    println!("report:        {}", report.join("REPORT.md").display());
    println!("table:         {}", report.join("metrics_table.csv").display());
    println!("plots:         {}", report.join("plots").display());
    println!("verify with:   {exe} verify --ledger {}", ledger.display());
}

pub fn verify_report(out: Out, report: &VerifyReport, trusted: bool) {
    if out.json {
        print_json(&serde_json::to_value(report).unwrap_or_default());
        return;
    }
    for e in &report.entries {
        let seq = e.seq.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
        let stage = e.stage.clone().unwrap_or_else(|| "?".into());
        let detail = match (&e.failure, e.missing.len()) {
            (Some(f), _) => format!("FAILED {f}"),
            (None, 0) => "ok".into(),
            (None, n) => format!("ok, {n} artifact(s) missing: {}", e.missing.join(", ")),
        };
        println!("{seq:>4}  {stage:<14} {detail}");
    }
    for n in &report.notes {
        println!("note: {n}");
    }
    match &report.first_failure {
        None => println!(
            "verified {} entries of {} (format version {}, head {}): format, chain, signatures{}, times, config hashes; \
             {} of {} recorded files checked on disk under run {}, workspace {} ({} missing, {} superseded by a later entry)",
            report.entries.len(),
            report.ledger,
            report.version.unwrap_or(0),
            report.head.as_ref().map(|h| h.to_string()).unwrap_or_else(|| "none: no entries".into()),
            if trusted { ", trusted signer" } else { "" },
            report.checked_artifacts,
            report.recorded_artifacts,
            report.roots.run.as_deref().unwrap_or("?"),
            report.roots.workspace.as_deref().unwrap_or("?"),
            report.missing_artifacts,
            report.superseded_artifacts
        ),
        Some(f) => println!("verification FAILED: {f}"),
    }
}

pub fn reproduce_report(out: Out, rep: &ReproduceReport) {
    if out.json {
        print_json(&serde_json::to_value(rep).unwrap_or_default());
        return;
    }
    for s in &rep.stages {
        let extra = match (s.differing.first(), &s.detail) {
            (Some(f), d) => format!(" — {f}{}", d.as_ref().map(|d| format!(": {d}")).unwrap_or_default()),
            (None, Some(d)) => format!(" — {d}"),
            (None, None) => String::new(),
        };
        let time = s.time.as_ref().map(|t| format!("  [{t}]")).unwrap_or_default();
        println!("{:>4}  {:<12} {}{}{}", s.seq, s.stage, s.verdict, extra, time);
        for c in s.code_changed.iter().chain(&s.likely_cause) {
            println!("{:>18} {c}", "");
        }
        for line in s.stats.iter().flat_map(|st| st.moved.iter().chain(&st.items)) {
            println!("{:>18} {line}", "");
        }
    }
    if !rep.env_differences.is_empty() {
        println!("environment differs from the recording: {}", rep.env_differences.join("; "));
    }
    if let Some(t) = &rep.time {
        println!("reproduce time, all re-run stages: {t}");
    }
    if rep.verdict != hsx::repro_stats::IDENTICAL && !rep.largest_deviations.is_empty() {
        println!("largest deviation of each metric (re-run vs recorded):");
        for (m, d) in &rep.largest_deviations {
            println!("  {m:<13} {d}");
        }
    }
    match (rep.verdict.as_str(), &rep.first_divergence) {
        (_, Some(d)) => println!("DIVERGED first at {d}{}", if rep.moved.is_empty() { String::new() } else { format!(" ({})", rep.moved.join("; ")) }),
        (_, None) if !rep.ok => println!("NOT REPRODUCED: some stages were not compared"),
        (hsx::repro_stats::IDENTICAL, None) => println!("identical: reproduced {} stages into {}, every output compared and byte-identical", rep.stages.len(), rep.out),
        (_, None) => println!(
            "reproduced within tolerance into {}: bytes differ from {}, but every metric, gap and hypothesis verdict is within the recorded intervals",
            rep.out,
            rep.first_difference.as_deref().unwrap_or("?")
        ),
    }
    let repro = Path::new(&rep.out).join("reproduction.json");
    println!("reproduction ledger: {} (signed by your key)", repro.display());
    println!(
        "verify with:         {} verify --ledger {}",
        std::env::args().next().unwrap_or_else(|| "hsx".into()),
        repro.display()
    );
}

/// `hsx export`: where the export went and who signed what.
pub fn export_summary(out: Out, s: &hsx::export::ExportSummary) {
    if out.json {
        print_json(&serde_json::to_value(s).unwrap_or_default());
        return;
    }
    if out.quiet {
        return;
    }
    println!("exported {} as {} ({} documents) into {}", s.ledger, s.format, s.documents, s.out);
    println!("ledger signer: {}", s.ledger_signer);
    match &s.export_signer {
        Some(k) if *k == s.ledger_signer => println!("export signer: {k} (the ledger's signer)"),
        Some(k) => println!("export signer: {k} (not the ledger's signer: the new documents are signed by you)"),
        None => println!("export signer: none (the ledger's own signatures, re-wrapped)"),
    }
    if !s.entries_outside_i_json.is_empty() {
        println!(
            "note: {} entries (seq {}) hold integers beyond 2^53 (sealed before hsx refused them): their signatures \
             verify, but RFC 8785 tools cannot re-derive their canonical bytes",
            s.entries_outside_i_json.len(),
            s.entries_outside_i_json.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        );
    }
    println!(
        "files: export.json and {} more; checking them without hsx: docs/interop.md",
        s.files.len().saturating_sub(1)
    );
}

pub fn export_hf(out: Out, s: &hsx::export::hf::HfSummary) {
    if out.json {
        print_json(&serde_json::to_value(s).unwrap_or_default());
        return;
    }
    if out.quiet {
        return;
    }
    println!("exported {} ({})", s.out.display(), s.ledger_head);
    println!("dataset:  {}", s.dataset.display());
    for c in &s.configs {
        let splits: Vec<String> = c.splits.iter().map(|s| format!("{} {}", s.split, s.rows)).collect();
        println!("  {:<16} {}", c.config, splits.join(", "));
    }
    for m in &s.models {
        println!("model:    {} ({}, {} files)", m.dir.display(), m.stage, m.files);
    }
}

pub fn export_mlflow(out: Out, s: &hsx::export::mlflow::MlflowSummary) {
    if out.json {
        print_json(&serde_json::to_value(s).unwrap_or_default());
        return;
    }
    if let Some(why) = &s.artifacts_skipped {
        eprintln!("warning: artifacts not uploaded: {why}");
    }
    if out.quiet {
        return;
    }
    let created = s.children.iter().filter(|c| c.created).count();
    println!(
        "MLflow {} experiment {:?} (id {}): parent run {} ({})",
        s.tracking_uri,
        s.experiment,
        s.experiment_id,
        s.parent_run_id,
        if s.parent_created { "created" } else { "found" }
    );
    for c in &s.children {
        let what = if c.created {
            format!("created: {} params, {} metrics, {} datasets", c.params, c.metrics, c.datasets)
        } else {
            "already exported".into()
        };
        println!("  {:<14} {} {what}", c.stage, c.run_id);
    }
    for d in &s.deleted {
        println!("  deleted {d} (its entry was replaced, or an export left it unfinished)");
    }
    if !s.artifacts.is_empty() {
        println!("artifacts: {}", s.artifacts.join(", "));
    }
    println!(
        "{created} child run(s) created, {} already there; parent {}; {}",
        s.children.len() - created,
        if s.parent_updated { "updated" } else { "already up to date" },
        s.ledger_head
    );
}
