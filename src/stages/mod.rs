//! The stages of the experiment, one file each, each holding its spec (inputs, parameters,
//! determinism class) beside its `run`. [`registry`] names and orders them; the executor
//! (`crate::pipeline`) records each as a signed ledger entry.
//!
//! | stage | file | reads | writes (under the run directory) |
//! |---|---|---|---|
//! | `prepare` | [`prepare`] | CosmosQA CSVs | `prepare/human_{train,val,test}.jsonl`, `stats.json` |
//! | `preregister` | [`preregister`] | human test | `preregister/analysis_plan.json` (the signed analysis plan) |
//! | `base-model` | [`base_model`] | human train (scratch) or `models/…` | `base-model/model` |
//! | `contaminate` | [`contaminate`] | human train, base model | `contaminate/ai_contaminated.jsonl` |
//! | `generator` | [`generator`] | human train, base model | `generator/adapter` |
//! | `synthesize` | [`synthesize`] | human train, base model, generator | `synthesize/synthetic.jsonl` |
//! | `train-A/B/C` | [`train`] | the arm's data, human val, base model, the plan | `train-X/adapter` |
//! | `evaluate-0` | [`evaluate`] | human test, base model (no adapter: model 0, zero-shot) | `evaluate-0/{predictions,scores}.jsonl` |
//! | `evaluate-A/B/C` | [`evaluate`] | human test, base model, `train-X/adapter` | `evaluate-X/{predictions,scores}.jsonl` |
//! | `compare` | [`compare`] | the plan, human train/test, every `evaluate-X` (0 included), `train-X/train_metrics.json` | `compare/…` |
//! | `report` | [`report`] | the ledger, `compare/` | `report/REPORT.md` (workspace) |
//!
//! Seeds: every stage's seed is [`crate::ledger::stage_seed`]`(master seed, stage name)`; a stage never
//! draws from another's stream.
use crate::config::Config;
use crate::error::PipelineError;
use crate::ledger::{StageOutcome, StageSpec};

pub mod base_model;
pub mod code;
pub mod compare;
pub mod contaminate;
pub mod ctx;
pub mod evaluate;
pub mod generator;
pub mod prepare;
pub mod preregister;
pub mod registry;
pub mod report;
pub mod synthesize;
pub mod train;

pub use ctx::{base_inputs, human, QaLike, StageCtx};
pub use registry::{Arm, Instance, Model, Stage};

/// The stage's spec: what it reads, its slice of the config (its resume key) and its determinism class.
pub fn spec(instance: Instance, cfg: &Config) -> StageSpec {
    match instance.stage {
        Stage::Prepare => prepare::spec(cfg),
        Stage::Preregister => preregister::spec(cfg),
        Stage::BaseModel => base_model::spec(cfg),
        Stage::Contaminate => contaminate::spec(cfg),
        Stage::Generator => generator::spec(cfg),
        Stage::Synthesize => synthesize::spec(cfg),
        Stage::Train(arm) => train::spec(cfg, arm, instance),
        Stage::Evaluate(model) => evaluate::spec(cfg, model, instance),
        Stage::Compare => compare::spec(cfg),
        Stage::Report => report::spec(cfg),
    }
}

/// Runs the stage's body (the work between hashing its inputs and hashing its outputs).
pub fn run(ctx: &StageCtx) -> Result<StageOutcome, PipelineError> {
    crate::runtime::seed(ctx.seed);
    match ctx.stage {
        Stage::Prepare => prepare::run(ctx),
        Stage::Preregister => preregister::run(ctx),
        Stage::BaseModel => base_model::run(ctx),
        Stage::Contaminate => contaminate::run(ctx),
        Stage::Generator => generator::run(ctx),
        Stage::Synthesize => synthesize::run(ctx),
        Stage::Train(arm) => train::run(ctx, arm),
        Stage::Evaluate(model) => evaluate::run(ctx, model),
        Stage::Compare => compare::run(ctx),
        Stage::Report => report::run(ctx),
    }
}
