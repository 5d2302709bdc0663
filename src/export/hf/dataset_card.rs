//! The dataset card (`dataset/README.md`): YAML front matter that `datasets.load_dataset` and
//! `huggingface_hub.DatasetCard` read (configs with their data files and splits, one schema per config in
//! `dataset_info`, licence, languages, sources, sizes), and a body that says from the ledger how each
//! set was made, citing each number's entry.
use serde::Serialize;
use std::fmt::Write as _;

use super::records;
use super::{ConfigDef, Feature, CONFIGS};
use crate::export::recorded::{cite, RunView};
use crate::export::ExportError;
use crate::ledger::Entry;
use crate::synth::{filters, Strategy};

/// CosmosQA on the Hugging Face Hub: the source of every row.
pub const COSMOSQA_HUB_ID: &str = "allenai/cosmos_qa";
/// CosmosQA's licence, and so the derived sets'.
pub const LICENSE: &str = "cc-by-4.0";
pub const ATTRIBUTION: &str = "Lifu Huang, Ronan Le Bras, Chandra Bhagavatula and Yejin Choi. 2019. *Cosmos QA: \
     Machine Reading Comprehension with Contextual Commonsense Reasoning.* EMNLP-IJCNLP 2019";

/// The front matter, field for field as the Hub's dataset card metadata names them.
#[derive(Debug, Serialize)]
pub struct DatasetMeta {
    pub pretty_name: String,
    pub license: &'static str,
    pub language: Vec<&'static str>,
    pub multilinguality: Vec<&'static str>,
    pub annotations_creators: Vec<&'static str>,
    pub language_creators: Vec<&'static str>,
    pub source_datasets: Vec<String>,
    pub task_categories: Vec<&'static str>,
    pub size_categories: Vec<&'static str>,
    pub tags: Vec<&'static str>,
    pub configs: Vec<ConfigMeta>,
    pub dataset_info: Vec<InfoMeta>,
}

#[derive(Debug, Serialize)]
pub struct ConfigMeta {
    pub config_name: &'static str,
    pub data_files: Vec<DataFile>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
}

#[derive(Debug, Serialize)]
pub struct DataFile {
    pub split: &'static str,
    pub path: String,
}

#[derive(Debug, Serialize)]
pub struct InfoMeta {
    pub config_name: &'static str,
    pub features: Vec<FeatureMeta>,
    /// `datasets` checks each split's row count against these when it loads the config.
    pub splits: Vec<SplitMeta>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum FeatureMeta {
    Value {
        name: &'static str,
        dtype: &'static str,
    },
    /// `sequence: string`: the spelling every `datasets` version reads (4.x also reads `list:`).
    Sequence {
        name: &'static str,
        sequence: &'static str,
    },
}

#[derive(Debug, Serialize)]
pub struct SplitMeta {
    pub name: &'static str,
    pub num_examples: usize,
    /// The exported JSONL file's size (`datasets` requires the field, records its Arrow size there when
    /// it builds a dataset itself, and checks only `num_examples`).
    pub num_bytes: u64,
}

/// The Hub's size category for `n` rows.
pub fn size_category(n: usize) -> &'static str {
    const CATS: [(usize, &str); 6] = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
    ];
    CATS.iter().find(|(lim, _)| n < *lim).map(|(_, c)| *c).unwrap_or("n>100M")
}

fn feature_meta(name: &'static str, f: Feature) -> FeatureMeta {
    match f {
        Feature::Str => FeatureMeta::Value { name, dtype: "string" },
        Feature::Int => FeatureMeta::Value { name, dtype: "int64" },
        Feature::StrList => FeatureMeta::Sequence { name, sequence: "string" },
    }
}

/// The front matter for the exported configs, `rows(config, split)` and `bytes(config, split)` giving each
/// split's row count and file size.
pub fn meta(experiment: &str, rows: &dyn Fn(&str, &str) -> usize, bytes: &dyn Fn(&str, &str) -> u64) -> DatasetMeta {
    let total: usize = CONFIGS.iter().flat_map(|c| c.splits.iter().map(|s| rows(c.name, s.split))).sum();
    DatasetMeta {
        pretty_name: format!("hsx {experiment}: human, AI-contaminated and synthetic CosmosQA"),
        license: LICENSE,
        language: vec!["en"],
        multilinguality: vec!["monolingual"],
        annotations_creators: vec!["crowdsourced", "machine-generated"],
        language_creators: vec!["found", "crowdsourced", "machine-generated"],
        source_datasets: vec![format!("extended|{COSMOSQA_HUB_ID}")],
        task_categories: vec!["question-answering", "text-generation"],
        size_categories: vec![size_category(total)],
        tags: vec!["hsx", "provenance", "synthetic-data", "data-contamination", "cosmosqa"],
        configs: CONFIGS
            .iter()
            .enumerate()
            .map(|(i, c)| ConfigMeta {
                config_name: c.name,
                data_files: c.splits.iter().map(|s| DataFile { split: s.split, path: c.file(s.split) }).collect(),
                default: i == 0,
            })
            .collect(),
        dataset_info: CONFIGS
            .iter()
            .map(|c| InfoMeta {
                config_name: c.name,
                features: c.features.iter().map(|(n, f)| feature_meta(n, *f)).collect(),
                splits: c
                    .splits
                    .iter()
                    .map(|s| SplitMeta {
                        name: s.split,
                        num_examples: rows(c.name, s.split),
                        num_bytes: bytes(c.name, s.split),
                    })
                    .collect(),
            })
            .collect(),
    }
}

pub fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn share(part: usize, whole: usize) -> String {
    if whole == 0 {
        "n/a".into()
    } else {
        pct(part as f64 / whole as f64)
    }
}

/// The synthesize entry's threshold text of rejection reason `name`, from the filter registry, rendered
/// with the recorded thresholds (as REPORT.md renders it).
fn threshold_text(name: &str, sy: &Entry) -> Result<String, ExportError> {
    let (_, text) = filters::rejection_reasons().find(|(r, _)| *r == name).ok_or_else(|| {
        ExportError::entry(sy, format!("counts rejections by {name:?}, a filter this hsx does not know"))
    })?;
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("f", |v: f64, digits: Option<usize>| format!("{:.*}", digits.unwrap_or(4), v));
    env.render_str(text, minijinja::Value::from_serialize(&sy.metrics))
        .map_err(|e| ExportError::entry(sy, format!("the threshold of filter {name}: {e:#}")))
}

/// The card's body: what the export is, the ledger it shows, and how each set was made.
pub fn body(v: &RunView<'_>, rows: &dyn Fn(&str, &str) -> usize) -> Result<String, ExportError> {
    let (pe, ce, se) = (v.entry("prepare")?, v.entry("contaminate")?, v.entry("synthesize")?);
    let p = records::prepare(pe)?;
    let (c, cp) = records::contaminate(ce)?;
    let (s, sp) = records::synthesize(se)?;
    let base = records::model_source(v.entry("base-model")?)?;
    let exp = &v.header.experiment;
    let mut b = String::new();
    let w = &mut b;
    let _ = writeln!(w, "# hsx {exp}: human, AI-contaminated and synthetic CosmosQA\n");
    let _ = writeln!(
        w,
        "The three training sets of one run of the hsx experiment `{exp}` — does synthetic data generated from a \
         clean human seed recover the quality lost when training data is contaminated by AI output? — and its \
         human validation and test splits, exported from the run's signed provenance ledger. Every file is \
         byte for byte the file the ledger recorded (its SHA-256 is below), and every number on this card is \
         read from a ledger entry, cited as `[#seq hash]`.\n"
    );
    let _ = writeln!(w, "## The ledger\n");
    let _ = writeln!(w, "- experiment `{exp}`, `{}`", v.head_citation());
    let _ = writeln!(w, "- signer: `{}` (ed25519)", v.header.signer.key_id);
    let _ = writeln!(w, "- check it: `hsx verify --ledger {} --expect-head {}`\n", v.ledger_file(), v.head.hash);
    let _ = writeln!(w, "## Configs\n");
    let _ = writeln!(w, "| config | split | rows | file | recorded as | sha256 |\n|---|---|---|---|---|---|");
    for cfg in &CONFIGS {
        for sp_ in cfg.splits {
            let e = v.entry(sp_.stage)?;
            let rec = crate::export::recorded::output(e, sp_.path)?;
            let _ = writeln!(
                w,
                "| `{}` | {} | {} | `{}` | `{}` {} | `{}` |",
                cfg.name,
                sp_.split,
                rows(cfg.name, sp_.split),
                cfg.file(sp_.split),
                sp_.path,
                cite(e),
                rec.sha256
            );
        }
    }
    let _ = writeln!(w, "\n{}\n", schemas());
    let _ = writeln!(w, "## How each set was made\n");
    let _ = writeln!(w, "### `human`\n");
    for (name, f) in &p.files {
        let official = if f.known_hash { "the official file's hash" } else { "not a known official hash" };
        let _ =
            writeln!(w, "- read CosmosQA's `{name}`: {} rows, sha256 `{}` ({official}) {}", f.rows, f.sha256, cite(pe));
    }
    let _ = writeln!(
        w,
        "- {} examples read; {} exact duplicates dropped; split by context (no context in two splits), \
         seeded: {} train, {} validation, {} test {}",
        p.examples_read,
        p.duplicates_dropped,
        p.train,
        p.val,
        p.test,
        cite(pe)
    );
    let _ = writeln!(
        w,
        "- contexts are personal narratives from blogs and the questions and answers are crowdsourced, as in \
         CosmosQA; `answer` is the gold option's text, `choices` the four options, `label` the gold index.\n"
    );
    let _ = writeln!(w, "### `ai_contaminated`\n");
    let _ = writeln!(
        w,
        "The human train split with every answer replaced by the run's base model (source `{}`): a seeded {} \
         of the rows ({} of {}, `kind = ai`) answered anew, the other {} ({}, `kind = paraphrase`) paraphrased, \
         sampled at temperature {} (top-p {}) {}. {} empty outputs after {} retries; answers average {:.2} \
         words against the human {:.2}; token F1 against the human answer {:.4}, exact matches {}, degenerate \
         answers {} {}. `original_answer_sha256` is the SHA-256 of the human answer each row replaced.\n",
        base.source,
        pct(cp.ai_share),
        c.ai,
        c.rows,
        share(c.paraphrase, c.rows),
        c.paraphrase,
        cp.temperature,
        cp.top_p,
        cite(ce),
        c.empty_outputs,
        c.retried,
        c.mean_answer_words_after,
        c.mean_answer_words_before,
        c.vs_human.mean_f1_vs_human,
        pct(c.vs_human.exact_match_share),
        pct(c.vs_human.degenerate_share),
        cite(ce)
    );
    let _ = writeln!(w, "### `synthetic`\n");
    let _ = writeln!(
        w,
        "Generated by the run's generator (a LoRA adapter trained on the human train split only) from the \
         human train split as seed, sampled at temperature {} (top-p {}): {} accepted of {} candidates for a \
         target of {} (shortfall {}), {} rejected {}. Strategy shares asked for: question variants {}, context \
         augmentation {}, answer expansion {}; accepted: {} {}.\n",
        sp.temperature,
        sp.top_p,
        s.passed,
        s.attempts,
        s.target,
        s.shortfall,
        s.rejected,
        cite(se),
        pct(sp.share_question_variants),
        pct(sp.share_context_augmentation),
        pct(sp.share_answer_expansion),
        Strategy::ALL
            .iter()
            .map(|k| {
                let n = s.final_strategy_distribution.get(k.name()).copied().unwrap_or(0);
                format!("{} {n} ({})", k.name(), share(n, s.passed))
            })
            .collect::<Vec<_>>()
            .join(", "),
        cite(se)
    );
    let _ = writeln!(
        w,
        "Each candidate met the filters in this order (judged on what each strategy generated: scope \
         `{}`); *first failing* counts each rejected candidate once, *would fail* counts every filter it fails \
         {}:\n\n| filter | threshold | first failing | would fail |\n|---|---|---|---|",
        s.scope,
        cite(se)
    );
    for name in &s.filter_order {
        let n = |m: &std::collections::BTreeMap<String, usize>| m.get(name).copied().unwrap_or(0);
        let _ = writeln!(
            w,
            "| {name} | {} | {} | {} |",
            threshold_text(name, se)?,
            n(&s.rejections_first_failing),
            n(&s.rejections_would_fail)
        );
    }
    if let Some(t) = &s.full_text_sensitivity {
        let _ = writeln!(
            w,
            "\nJudged on whole examples instead, {} of the accepted examples would pass (sensitivity) {}.",
            pct(t.pass_rate),
            cite(se)
        );
    }
    if !base.testable() {
        let _ = writeln!(
            w,
            "\n**A test fixture, not realistic AI text.** This run's base model is a `{}` model built by the \
             run itself (a very small T5 pretrained for minutes, or random weights), so the AI answers and the \
             synthetic examples are what such a model writes: they exercise the pipeline and say nothing about \
             real AI-generated data.",
            base.source
        );
    }
    let _ = writeln!(w, "\n## Licence and attribution\n");
    let _ = writeln!(
        w,
        "Every row derives from CosmosQA's dev split ([`{COSMOSQA_HUB_ID}`](https://huggingface.co/datasets/{COSMOSQA_HUB_ID})), \
         released under CC BY 4.0 by {ATTRIBUTION}. These sets are shared under the same licence ({LICENSE}); \
         the AI answers and the synthetic examples were written by the models of this run."
    );
    Ok(b)
}

/// The fields of each config, as a Markdown list.
fn schemas() -> String {
    let mut s = String::from("Schemas (one per config):\n");
    for c in &CONFIGS {
        let fields: Vec<String> = c
            .features
            .iter()
            .map(|(n, f)| {
                let t = match f {
                    Feature::Str => "string",
                    Feature::Int => "int64",
                    Feature::StrList => "list of string",
                };
                format!("`{n}` ({t})")
            })
            .collect();
        let _ = write!(s, "\n- `{}`: {}", c.name, fields.join(", "));
    }
    s
}

impl ConfigDef {
    /// Where a split's file lies in the dataset directory.
    pub fn file(&self, split: &str) -> String {
        format!("{}/{split}.jsonl", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_categories_follow_the_hubs_bounds() {
        assert_eq!(size_category(0), "n<1K");
        assert_eq!(size_category(999), "n<1K");
        assert_eq!(size_category(1000), "1K<n<10K");
        assert_eq!(size_category(20_000), "10K<n<100K");
        assert_eq!(size_category(2_000_000_000), "n>100M");
    }

    #[test]
    fn the_front_matter_names_every_config_split_and_row_count() {
        let rows = |c: &str, s: &str| c.len() * 100 + s.len();
        let bytes = |c: &str, s: &str| (c.len() * 1000 + s.len()) as u64;
        let m = meta("smoke", &rows, &bytes);
        let yaml = serde_norway::to_string(&m).unwrap();
        let back: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(back["license"], "cc-by-4.0");
        assert_eq!(back["configs"][0]["config_name"], "human");
        assert_eq!(back["configs"][0]["default"], true);
        assert!(back["configs"][1].get("default").is_none());
        let human = &back["configs"][0]["data_files"];
        assert_eq!(human[1]["split"], "validation");
        assert_eq!(human[1]["path"], "human/validation.jsonl");
        for (i, c) in CONFIGS.iter().enumerate() {
            let info = &back["dataset_info"][i];
            assert_eq!(info["config_name"], c.name);
            for (j, s) in c.splits.iter().enumerate() {
                assert_eq!(info["splits"][j]["num_examples"], rows(c.name, s.split) as u64);
                assert_eq!(info["splits"][j]["num_bytes"], bytes(c.name, s.split));
            }
            assert_eq!(info["features"].as_array().unwrap().len(), c.features.len());
        }
        assert_eq!(
            back["dataset_info"][0]["features"][4],
            serde_json::json!({"name": "choices", "sequence": "string"})
        );
        assert_eq!(back["source_datasets"][0], "extended|allenai/cosmos_qa");
        let total: usize = CONFIGS.iter().flat_map(|c| c.splits.iter().map(|s| rows(c.name, s.split))).sum();
        assert_eq!(back["size_categories"][0], size_category(total));
    }
}
