//! `preregister`: the analysis plan ([`crate::prereg::AnalysisPlan`]) written after `prepare` and
//! before any model is trained: the hypotheses, primary and exploratory metrics, α, the equivalence
//! margin, resample counts, the resampling unit, the verdict rule's version and the test split's
//! sha256. The entry's `metrics.plan` is the signed record; `preregister/analysis_plan.json` is the
//! file every train stage and `compare` read (so a changed plan re-runs the models, and compare can use
//! no other plan).
use serde_json::json;

use super::ctx::{write_json, Stage, StageCtx};
use crate::config::Config;
use crate::data::DataError;
use crate::error::PipelineError;
use crate::ledger::files::hash_file;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};
use crate::metrics::registry;
use crate::prereg::AnalysisPlan;

/// The plan file, relative to the run directory.
pub const PLAN_FILE: &str = "preregister/analysis_plan.json";

/// The plan file as a stage input.
pub fn plan_input() -> (Root, String) {
    (Root::Run, PLAN_FILE.into())
}

/// The metrics the plan names: every compared metric of the registry (the primary one decides).
pub fn planned_metrics() -> Vec<&'static str> {
    registry::compared().map(|m| m.key).collect()
}

pub fn spec(cfg: &Config) -> StageSpec {
    let mut params = json!({ "analysis": cfg.analysis, "metrics": planned_metrics() });
    if let Some(r) = &cfg.experiment.replicates {
        params["replicates"] = json!(r);
    }
    StageSpec {
        stage: Stage::Preregister.name().into(),
        params,
        inputs: vec![super::ctx::human("test")],
        determinism: Determinism::Bitwise,
    }
}

/// The plan for this config and the test split at `test_path`.
pub fn plan_for(cfg: &Config, test_path: &std::path::Path) -> Result<AnalysisPlan, PipelineError> {
    let (_, sha) = hash_file(test_path).map_err(|source| DataError::Io { path: test_path.to_owned(), source })?;
    let mut plan = AnalysisPlan::new(&cfg.analysis, &planned_metrics(), &sha);
    plan.replicates = cfg.experiment.replicates.clone();
    Ok(plan)
}

pub fn run(ctx: &StageCtx) -> Result<StageOutcome, PipelineError> {
    let plan = plan_for(ctx.cfg, &ctx.run_path("prepare/human_test.jsonl"))?;
    let dir = ctx.out_dir()?;
    let v = serde_json::to_value(&plan).expect("an analysis plan serialises");
    write_json(&ctx.run_dir, &dir.join("analysis_plan.json"), &v)?;
    Ok(StageOutcome { outputs: vec![plan_input()], metrics: json!({ "plan": v }) })
}
