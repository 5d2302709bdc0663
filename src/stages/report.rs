//! `report`: REPORT.md rendered from the ledger's entries (up to `compare`) by [`crate::report`], with
//! the table and plots, into `experiment.report_dir` under the workspace — or, for a self-contained run
//! (`hsx run --out`, a reproduction), under the run directory. The directory belongs to this ledger: the
//! executor claims it before any stage runs, and a second ledger's report there is refused.
use std::path::PathBuf;

use super::ctx::{Stage, StageCtx};
use crate::config::Config;
use crate::error::PipelineError;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};
use crate::report::{write_report, ReportMetrics, ReportTarget, DEFAULT_TEMPLATE};

/// The report stage's parameters: where the report goes, and the template it is rendered with.
#[derive(serde::Serialize)]
struct ReportParams<'a> {
    report_dir: &'a str,
    template_sha256: String,
}

pub fn spec(cfg: &Config) -> StageSpec {
    let params = ReportParams {
        report_dir: &cfg.experiment.report_dir,
        template_sha256: crate::canonical::sha256_hex(DEFAULT_TEMPLATE.as_bytes()),
    };
    StageSpec {
        stage: Stage::Report.name().into(),
        params: super::ctx::params(&params),
        inputs: vec![(Root::Run, Stage::Compare.name().into())],
        determinism: Determinism::Bitwise,
    }
}

pub fn run(ctx: &StageCtx) -> Result<StageOutcome, PipelineError> {
    let cfg = ctx.cfg;
    let ledger = crate::ledger::store::read(ctx.ledger)?;
    let (base, root) = if ctx.self_contained { (&ctx.run_dir, Root::Run) } else { (&ctx.workspace, Root::Workspace) };
    let out = base.join(&cfg.experiment.report_dir);
    // The executor claimed the directory for this ledger before any stage ran (`Setup::claim_report_dir`).
    // The report directory is the root, taken as named like the run directory (`..` in report_dir is
    // refused when the config is validated); below it no link is followed.
    let target = ReportTarget {
        root: out.clone(),
        markdown: out.join("REPORT.md"),
        ledger: ctx.ledger.to_owned(),
        claimed: true,
        force: false,
    };
    let written = write_report(&ledger, &ctx.run_dir, &target, DEFAULT_TEMPLATE)?;
    let rel = |p: &PathBuf| {
        let name = p.strip_prefix(&out).map(|r| r.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{}/{}", cfg.experiment.report_dir.trim_end_matches('/'), name)
    };
    let mut outputs: Vec<(Root, String)> = written.iter().map(|p| (root, rel(p))).collect();
    outputs.sort();
    let metrics = ReportMetrics { files: written.len(), report: format!("{}/REPORT.md", cfg.experiment.report_dir) };
    StageOutcome::of(outputs, &metrics)
}
