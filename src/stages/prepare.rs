//! `prepare`: read and validate the CosmosQA files, drop exact duplicates, split by context into
//! train / validation / test, and write them as JSONL with their statistics.
use serde_json::json;

use super::ctx::{write_json, StageCtx};
use crate::config::Config;
use crate::data::{self, split, stats, DataError};
use crate::error::PipelineError;
use crate::ledger::files::hash_file;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};

pub fn spec(cfg: &Config) -> StageSpec {
    StageSpec {
        stage: super::ctx::Stage::Prepare.name().into(),
        params: json!({ "data": cfg.data, "split": cfg.split, "seed": cfg.experiment.seed }),
        inputs: cfg.data.files.iter().map(|f| (Root::Data, f.clone())).collect(),
        determinism: Determinism::Bitwise,
    }
}

pub fn run(ctx: &StageCtx) -> Result<StageOutcome, PipelineError> {
    let cfg = ctx.cfg;
    let data_dir =
        ctx.roots.data.clone().ok_or_else(|| PipelineError::Usage("stage prepare needs a data directory".into()))?;
    let read_opts = data::ReadOptions { skip_invalid: cfg.data.skip_invalid, max_row_bytes: cfg.data.max_row_bytes };
    let mut all = Vec::new();
    let mut per_file = serde_json::Map::new();
    for f in &cfg.data.files {
        let path = data_dir.join(f);
        if !path.exists() {
            return Err(DataError::Missing(format!(
                "{} does not exist; run `hsx data fetch` to download the official CosmosQA files into {}, \
                 or set HSX_DATA_MIRROR to a directory holding cosmosqa/{f}",
                path.display(),
                cfg.data.dir
            ))
            .into());
        }
        let (_, sha) = hash_file(&path).map_err(|source| DataError::Io { path: path.clone(), source })?;
        if let Some(expected) = data::known_hash(f) {
            if cfg.data.verify_known_hashes && expected != sha {
                return Err(DataError::HashMismatch { path, expected: expected.into(), actual: sha }.into());
            }
        }
        let r = data::read_file(&path, &read_opts)?;
        per_file.insert(
            f.clone(),
            json!({ "rows": r.rows, "examples": r.examples.len(), "skipped": r.skipped, "sha256": sha,
                    "known_hash": data::known_hash(f).map(|h| h == sha) }),
        );
        all.extend(r.examples);
    }
    let read = all.len();
    let duplicates = split::dedup(&mut all);
    let sizes = split::SplitSizes { train: cfg.split.train, val: cfg.split.val, test: cfg.split.test };
    let s = split::split_by_context(all, sizes, ctx.seed, cfg.split.allow_shrink)?;
    let out_dir = ctx.out_dir()?;
    data::write_jsonl(&ctx.run_dir, &out_dir.join("human_train.jsonl"), &s.train)?;
    data::write_jsonl(&ctx.run_dir, &out_dir.join("human_val.jsonl"), &s.val)?;
    data::write_jsonl(&ctx.run_dir, &out_dir.join("human_test.jsonl"), &s.test)?;
    let st = json!({
        "train": stats::split_stats(&s.train),
        "val": stats::split_stats(&s.val),
        "test": stats::split_stats(&s.test),
    });
    write_json(&ctx.run_dir, &out_dir.join("stats.json"), &st)?;
    Ok(StageOutcome {
        outputs: ["human_train.jsonl", "human_val.jsonl", "human_test.jsonl", "stats.json"]
            .iter()
            .map(|f| (Root::Run, format!("prepare/{f}")))
            .collect(),
        metrics: json!({
            "files": per_file,
            "examples_read": read,
            "duplicates_dropped": duplicates,
            "train": s.train.len(),
            "val": s.val.len(),
            "test": s.test.len(),
            "shrunk": s.shrunk,
            "stats": st,
        }),
    })
}
