//! `prepare`: read and validate the CosmosQA files, drop exact duplicates, split by context into
//! train / validation / test, and write them as JSONL with their statistics.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::ctx::{write_record, StageCtx};
use crate::config::{Config, Data, Split};
use crate::data::stats::{self, SplitStats};
use crate::data::{self, split, DataError};
use crate::error::PipelineError;
use crate::ledger::files::hash_file;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};

/// The prepare stage's parameters: the data settings, the split and the master seed.
#[derive(Serialize)]
struct PrepareParams<'a> {
    data: &'a Data,
    split: &'a Split,
    seed: u64,
}

/// The prepare entry's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepareMetrics {
    /// Per source file, by its name under the data directory.
    pub files: BTreeMap<String, SourceFile>,
    pub examples_read: usize,
    /// Exact (context, question, answer) duplicates.
    pub duplicates_dropped: usize,
    pub train: usize,
    pub val: usize,
    pub test: usize,
    /// Whether a split was shrunk to fit the examples there are (`split.allow_shrink`).
    pub shrunk: bool,
    /// The splits' statistics, as in `prepare/stats.json`.
    pub stats: Splits<SplitStats>,
}

/// One CosmosQA file as `prepare` read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFile {
    pub rows: usize,
    pub examples: usize,
    /// Rows skipped (`data.skip_invalid`), by reason.
    pub skipped: BTreeMap<String, usize>,
    pub sha256: String,
    /// Whether it has the published sha256; null for a file with none known.
    pub known_hash: Option<bool>,
}

/// One value per split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Splits<T> {
    pub train: T,
    pub val: T,
    pub test: T,
}

pub fn spec(cfg: &Config) -> StageSpec {
    StageSpec {
        stage: super::ctx::Stage::Prepare.name().into(),
        params: super::ctx::params(&PrepareParams { data: &cfg.data, split: &cfg.split, seed: cfg.experiment.seed }),
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
    let mut files = BTreeMap::new();
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
        let known_hash = data::known_hash(f).map(|h| h == sha);
        files.insert(
            f.clone(),
            SourceFile { rows: r.rows, examples: r.examples.len(), skipped: r.skipped, sha256: sha, known_hash },
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
    let stats = Splits {
        train: stats::split_stats(&s.train),
        val: stats::split_stats(&s.val),
        test: stats::split_stats(&s.test),
    };
    write_record(&ctx.run_dir, &out_dir.join("stats.json"), &stats)?;
    let outputs = ["human_train.jsonl", "human_val.jsonl", "human_test.jsonl", "stats.json"]
        .iter()
        .map(|f| (Root::Run, format!("prepare/{f}")))
        .collect();
    let metrics = PrepareMetrics {
        files,
        examples_read: read,
        duplicates_dropped: duplicates,
        train: s.train.len(),
        val: s.val.len(),
        test: s.test.len(),
        shrunk: s.shrunk,
        stats,
    };
    StageOutcome::of(outputs, &metrics)
}
