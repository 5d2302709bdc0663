//! `preregister`: the analysis plan ([`crate::prereg::AnalysisPlan`]) written after `prepare` and
//! before any model is trained: the hypotheses, primary and exploratory metrics, α, the equivalence
//! margin, resample counts, the resampling unit, the verdict rule's version and the test split's
//! sha256. The entry's `metrics.plan` is the signed record; `preregister/analysis_plan.json` is the
//! file every train stage and `compare` read (so a changed plan re-runs the models, and compare can use
//! no other plan).
use serde::{Deserialize, Serialize};

use super::ctx::{write_record, Stage, StageCtx};
use crate::config::{Analysis, Config};
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

/// The preregister stage's parameters: the config's `[analysis]`, the metrics planned and, when the
/// experiment has them, the training seeds.
#[derive(Serialize)]
struct PreregisterParams<'a> {
    analysis: &'a Analysis,
    metrics: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replicates: Option<&'a Vec<u64>>,
}

/// The preregister entry's metrics: the signed plan, as in `preregister/analysis_plan.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreregisterMetrics {
    pub plan: AnalysisPlan,
}

pub fn spec(cfg: &Config) -> StageSpec {
    let params = PreregisterParams {
        analysis: &cfg.analysis,
        metrics: planned_metrics(),
        replicates: cfg.experiment.replicates.as_ref(),
    };
    StageSpec {
        stage: Stage::Preregister.name().into(),
        params: super::ctx::params(&params),
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
    write_record(&ctx.run_dir, &dir.join("analysis_plan.json"), &plan)?;
    StageOutcome::of(vec![plan_input()], &PreregisterMetrics { plan })
}
