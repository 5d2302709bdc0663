//! `hsx export --format hf`: a directory to push to the Hugging Face Hub as it is.
//!
//! ```text
//! OUT/dataset/README.md                      the dataset card (configs, schemas, licence; how each set was made)
//! OUT/dataset/human/{train,validation,test}.jsonl
//! OUT/dataset/ai_contaminated/train.jsonl
//! OUT/dataset/synthetic/train.jsonl
//! OUT/models/train-A/README.md               a model card per adapter, beside its peft files
//! OUT/models/train-A/adapter_config.json, adapter_model.safetensors   (train-B, train-C, replicates, generator)
//! OUT/models/base-model/                     the run's own base model, when it built one (scratch, random)
//! ```
//!
//! Every data and model file is a recorded output of the ledger, copied from the run directory and kept
//! only when its SHA-256 is the recorded one; each JSONL row is checked against its config's schema and
//! each split's row count against the count its entry recorded. The export is written into a staging
//! directory beside OUT and renamed into place at the end, so OUT is either the whole export or absent.
use serde::Serialize;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::recorded::{check_out_dir, copy_checked, output, RunView};
use super::ExportError;
use crate::data::QaExample;
use crate::synth::{ContaminatedRow, SyntheticRow};

mod dataset_card;
mod model_card;
mod records;

/// A column of an exported config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Str,
    Int,
    StrList,
}

/// Which recorded file fills a split.
#[derive(Debug)]
pub struct SplitSource {
    pub split: &'static str,
    pub stage: &'static str,
    pub path: &'static str,
}

/// One config of the exported dataset: its splits and its schema (the row type's fields, in order).
#[derive(Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    pub splits: &'static [SplitSource],
    pub features: &'static [(&'static str, Feature)],
    /// Reads one row as the type the stage wrote it as.
    pub check: fn(serde_json::Value) -> Result<(), serde_json::Error>,
}

const QA_FEATURES: [(&str, Feature); 6] = [
    ("id", Feature::Str),
    ("context", Feature::Str),
    ("question", Feature::Str),
    ("answer", Feature::Str),
    ("choices", Feature::StrList),
    ("label", Feature::Int),
];

/// The exported configs: the human splits first (the default config), then the two derived sets.
pub const CONFIGS: [ConfigDef; 3] = [
    ConfigDef {
        name: "human",
        splits: &[
            SplitSource { split: "train", stage: "prepare", path: "prepare/human_train.jsonl" },
            SplitSource { split: "validation", stage: "prepare", path: "prepare/human_val.jsonl" },
            SplitSource { split: "test", stage: "prepare", path: "prepare/human_test.jsonl" },
        ],
        features: &QA_FEATURES,
        check: |v| serde_json::from_value::<QaExample>(v).map(drop),
    },
    ConfigDef {
        name: "ai_contaminated",
        splits: &[SplitSource { split: "train", stage: "contaminate", path: "contaminate/ai_contaminated.jsonl" }],
        features: &[
            ("id", Feature::Str),
            ("context", Feature::Str),
            ("question", Feature::Str),
            ("answer", Feature::Str),
            ("kind", Feature::Str),
            ("original_answer_sha256", Feature::Str),
            ("attempts", Feature::Int),
        ],
        check: |v| serde_json::from_value::<ContaminatedRow>(v).map(drop),
    },
    ConfigDef {
        name: "synthetic",
        splits: &[SplitSource { split: "train", stage: "synthesize", path: "synthesize/synthetic.jsonl" }],
        features: &[
            ("id", Feature::Str),
            ("context", Feature::Str),
            ("question", Feature::Str),
            ("answer", Feature::Str),
            ("strategy", Feature::Str),
            ("seed_id", Feature::Str),
        ],
        check: |v| serde_json::from_value::<SyntheticRow>(v).map(drop),
    },
];

/// What `--format hf` needs beyond the ledger.
#[derive(Debug, Default, Clone)]
pub struct HfOptions {
    /// The base model's Hub id, for a run whose base is a local Hugging Face directory (`hf-dir`):
    /// the ledger records its path and file hashes, not where it came from.
    pub base_model: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct HfSummary {
    pub out: PathBuf,
    pub ledger_head: String,
    pub dataset: PathBuf,
    pub configs: Vec<ConfigSummary>,
    pub models: Vec<ModelSummary>,
}

#[derive(Debug, Serialize)]
pub struct ConfigSummary {
    pub config: &'static str,
    pub splits: Vec<SplitSummary>,
}

#[derive(Debug, Serialize)]
pub struct SplitSummary {
    pub split: &'static str,
    pub rows: usize,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct ModelSummary {
    pub dir: PathBuf,
    /// The stage instance that wrote it (`train-A`, `generator`, `base-model`).
    pub stage: String,
    pub files: usize,
}

/// The row count the ledger records for a split.
fn recorded_rows(v: &RunView<'_>, config: &str, split: &str) -> Result<usize, ExportError> {
    Ok(match (config, split) {
        ("human", s) => {
            let p = records::prepare(v.entry("prepare")?)?;
            match s {
                "train" => p.train,
                "validation" => p.val,
                _ => p.test,
            }
        }
        ("ai_contaminated", _) => records::contaminate(v.entry("contaminate")?)?.0.rows,
        _ => records::synthesize(v.entry("synthesize")?)?.0.passed,
    })
}

/// Reads every row of an exported JSONL file against its config's schema (exactly its fields, each of
/// the type the stage wrote); returns the row count. `shown` names the recorded file in errors.
fn check_rows(path: &Path, cfg: &ConfigDef, shown: &str) -> Result<usize, ExportError> {
    // The file was just written into the staging directory: read back below it, no link followed.
    let f = crate::fsx::open(crate::fsx::dir_of(path), path, crate::fsx::Limit::DATA)
        .map_err(|e| ExportError::file(path, e))?;
    let names: Vec<&str> = cfg.features.iter().map(|(n, _)| *n).collect();
    let mut rows = 0;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let at = |m: String| ExportError::File { path: PathBuf::from(format!("{shown} line {}", i + 1)), message: m };
        let line = line.map_err(|e| at(e.to_string()))?;
        let value: serde_json::Value = serde_json::from_str(&line).map_err(|e| at(e.to_string()))?;
        let keys: Vec<&str> = value.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        let (mut want, mut got) = (names.clone(), keys);
        want.sort_unstable();
        got.sort_unstable();
        if want != got {
            return Err(at(format!("has fields {got:?}, but config `{}` is {want:?}", cfg.name)));
        }
        (cfg.check)(value).map_err(|e| at(format!("not a `{}` row: {e}", cfg.name)))?;
        rows += 1;
    }
    Ok(rows)
}

/// Copies every split of every config into `dir` and writes the dataset card.
fn write_dataset(v: &RunView<'_>, run: &Path, dir: &Path) -> Result<Vec<ConfigSummary>, ExportError> {
    let mut summary = Vec::new();
    for cfg in &CONFIGS {
        let mut splits = Vec::new();
        for s in cfg.splits {
            let e = v.entry(s.stage)?;
            let bytes = copy_checked(run, output(e, s.path)?, e, &dir.join(cfg.file(s.split)))?;
            let found = check_rows(&dir.join(cfg.file(s.split)), cfg, s.path)?;
            let recorded = recorded_rows(v, cfg.name, s.split)?;
            if found != recorded {
                return Err(ExportError::entry(
                    e,
                    format!("records {recorded} rows for {}, but the recorded file holds {found}", s.path),
                ));
            }
            splits.push(SplitSummary { split: s.split, rows: found, bytes });
        }
        summary.push(ConfigSummary { config: cfg.name, splits });
    }
    let split =
        |c: &str, s: &str| summary.iter().find(|x| x.config == c).and_then(|x| x.splits.iter().find(|x| x.split == s));
    let rows = |c: &str, s: &str| split(c, s).map_or(0, |x| x.rows);
    let bytes = |c: &str, s: &str| split(c, s).map_or(0, |x| x.bytes);
    let meta = dataset_card::meta(&v.header.experiment, &rows, &bytes);
    let card = card_text(&meta, &dataset_card::body(v, &rows)?)?;
    crate::fsx::write(dir, &dir.join("README.md"), card.as_bytes())?;
    Ok(summary)
}

/// A card: the metadata as YAML front matter, then the Markdown body.
pub fn card_text<T: Serialize>(meta: &T, body: &str) -> Result<String, ExportError> {
    let yaml = serde_norway::to_string(meta)
        .map_err(|e| ExportError::File { path: "README.md".into(), message: format!("front matter: {e}") })?;
    Ok(format!("---\n{yaml}---\n\n{body}"))
}

/// The staging directory beside `out`: `.<name>.hsx-export-<pid>`.
fn staging_for(out: &Path) -> Result<PathBuf, ExportError> {
    let (Some(parent), Some(name)) = (out.parent(), out.file_name()) else {
        return Err(ExportError::Out { path: out.to_owned(), message: "--out has no parent directory".into() });
    };
    std::fs::create_dir_all(parent).map_err(|e| ExportError::file(parent, e))?;
    Ok(parent.join(format!(".{}.hsx-export-{}", name.to_string_lossy(), std::process::id())))
}

/// Writes the Hugging Face export of a verified ledger into `out` (absent or empty, outside the run
/// directory).
pub fn export(v: &RunView<'_>, out: &Path, opts: &HfOptions) -> Result<HfSummary, ExportError> {
    let run = v.run_dir()?.to_owned();
    let out = check_out_dir(out, &run)?;
    let staging = staging_for(&out)?;
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| ExportError::file(&staging, e))?;
    }
    let written = (|| -> Result<(Vec<ConfigSummary>, Vec<ModelSummary>), ExportError> {
        let configs = write_dataset(v, &run, &staging.join("dataset"))?;
        let models = model_card::write_models(v, &run, &staging.join("models"), opts)?;
        Ok((configs, models))
    })();
    let (configs, mut models) = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if out.exists() {
        std::fs::remove_dir(&out).map_err(|e| ExportError::file(&out, e))?;
    }
    crate::fsx::publish_dir(&staging, &out).map_err(|e| ExportError::file(&out, e))?;
    for m in &mut models {
        m.dir = out.join("models").join(&m.dir);
    }
    Ok(HfSummary { dataset: out.join("dataset"), out, ledger_head: v.head_citation(), configs, models })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The declared schemas are the fields the stages write, in their order: a field added to a row
    /// type fails here before it fails `datasets`.
    #[test]
    fn each_configs_features_are_its_row_types_fields() {
        let qa = QaExample {
            id: "i".into(),
            context: "c".into(),
            question: "q".into(),
            answer: "a".into(),
            choices: vec!["a".into()],
            label: 0,
        };
        let ai = ContaminatedRow {
            id: "i".into(),
            context: "c".into(),
            question: "q".into(),
            answer: "a".into(),
            kind: "ai".into(),
            original_answer_sha256: "0".into(),
            attempts: 1,
        };
        let syn = SyntheticRow {
            id: "i".into(),
            context: "c".into(),
            question: "q".into(),
            answer: "a".into(),
            strategy: crate::synth::Strategy::AnswerExpansion,
            seed_id: "s".into(),
        };
        let rows =
            [serde_json::to_value(qa).unwrap(), serde_json::to_value(ai).unwrap(), serde_json::to_value(syn).unwrap()];
        for (cfg, row) in CONFIGS.iter().zip(rows) {
            let mut keys: Vec<&str> = row.as_object().unwrap().keys().map(String::as_str).collect();
            let mut names: Vec<&str> = cfg.features.iter().map(|(n, _)| *n).collect();
            keys.sort_unstable();
            names.sort_unstable();
            assert_eq!(keys, names, "config {}", cfg.name);
            for (n, f) in cfg.features {
                let ok = match f {
                    Feature::Str => row[n].is_string(),
                    Feature::Int => row[n].is_u64(),
                    Feature::StrList => row[n].as_array().is_some_and(|a| a.iter().all(|x| x.is_string())),
                };
                assert!(ok, "config {} field {n}: {}", cfg.name, row[n]);
            }
            (cfg.check)(row).unwrap();
        }
    }

    #[test]
    fn a_row_with_another_schema_is_refused_naming_its_line() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.jsonl");
        let good =
            r#"{"id":"i","context":"c","question":"q","answer":"a","strategy":"answer_expansion","seed_id":"s"}"#;
        std::fs::write(&p, format!("{good}\n{good}\n")).unwrap();
        assert_eq!(check_rows(&p, &CONFIGS[2], "synthesize/synthetic.jsonl").unwrap(), 2);
        let extra = good.replace("\"id\"", "\"extra\":1,\"id\"");
        std::fs::write(&p, format!("{good}\n{extra}\n")).unwrap();
        let e = check_rows(&p, &CONFIGS[2], "synthesize/synthetic.jsonl").unwrap_err().to_string();
        assert!(e.contains("synthesize/synthetic.jsonl line 2") && e.contains("extra"), "{e}");
        let bad = good.replace("answer_expansion", "made_up");
        std::fs::write(&p, format!("{bad}\n")).unwrap();
        let e = check_rows(&p, &CONFIGS[2], "synthesize/synthetic.jsonl").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("not a `synthetic` row"), "{e}");
    }
}
