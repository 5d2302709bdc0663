//! One model card (`README.md`) per exported adapter, beside copies of its peft files: front matter
//! with `base_model`, `library_name: peft`, `pipeline_tag`, `tags`, `datasets` and a `model-index` holding
//! the test results compare recorded for it; a body with the intervals, the verdicts, the training and
//! the ledger head. A run whose base it built itself (scratch, random) gets its base model exported too,
//! and every card of such a run says plainly that its scores are not testable.
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

use super::dataset_card::{pct, COSMOSQA_HUB_ID};
use super::{card_text, records, ModelSummary};
use crate::export::recorded::{cite, copy_checked, typed, RunView};
use crate::export::ExportError;
use crate::ledger::Entry;
use crate::metrics::registry::METRICS;
use crate::stages::registry::{Arm, Instance, Model, Stage};

#[derive(Debug, Serialize)]
pub struct ModelMeta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library_name: Option<&'static str>,
    /// transformers 5 retired the text2text-generation pipeline; a seq2seq generator is text-generation.
    pub pipeline_tag: &'static str,
    pub language: Vec<&'static str>,
    pub tags: Vec<String>,
    pub datasets: Vec<&'static str>,
    #[serde(rename = "model-index", skip_serializing_if = "Vec::is_empty")]
    pub model_index: Vec<IndexEntry>,
}

#[derive(Debug, Serialize)]
pub struct IndexEntry {
    pub name: String,
    pub results: Vec<IndexResult>,
}

#[derive(Debug, Serialize)]
pub struct IndexResult {
    pub task: Task,
    pub dataset: IndexDataset,
    pub metrics: Vec<IndexMetric>,
}

#[derive(Debug, Serialize)]
pub struct Task {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: &'static str,
}

#[derive(Debug, Serialize)]
pub struct IndexDataset {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub split: &'static str,
}

#[derive(Debug, Serialize)]
pub struct IndexMetric {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: f64,
    pub name: &'static str,
    pub verified: bool,
}

/// The Hub's (and `evaluate`'s) metric id for a registry metric.
fn hub_metric(key: &str) -> &'static str {
    match key {
        "em" => "exact_match",
        "f1" => "f1",
        "rouge1" => "rouge1",
        "rouge2" => "rouge2",
        "rougeL" => "rougeL",
        "bertscore_f1" => "bertscore",
        "mc_accuracy" => "accuracy",
        _ => "other",
    }
}

/// The export's dataset config each arm was trained on.
fn trained_on(arm: Arm) -> &'static str {
    match arm {
        Arm::A => "human",
        Arm::B => "ai_contaminated",
        Arm::C => "synthetic",
    }
}

/// The `model-index` of arm `label` from compare's table: every compared metric it scored.
pub fn model_index(name: &str, label: &str, table: &records::Table, n: usize) -> Vec<IndexEntry> {
    let Some(scores) = table.get(label) else { return vec![] };
    let metrics: Vec<IndexMetric> = METRICS
        .iter()
        .filter(|m| m.compared)
        .filter_map(|m| {
            let value = scores.get(m.key)?.mean?;
            Some(IndexMetric { kind: hub_metric(m.key), value, name: m.title, verified: false })
        })
        .collect();
    if metrics.is_empty() {
        return vec![];
    }
    vec![IndexEntry {
        name: name.to_owned(),
        results: vec![IndexResult {
            task: Task { kind: "question-answering", name: "Question answering (free-form answers)" },
            dataset: IndexDataset {
                kind: COSMOSQA_HUB_ID,
                name: format!("CosmosQA dev split: hsx's held-out human test questions (n = {n})"),
                split: "validation",
            },
            metrics,
        }],
    }]
}

fn f4(x: Option<f64>) -> String {
    x.filter(|x| x.is_finite()).map_or_else(|| "n/a".into(), |x| format!("{x:.4}"))
}

/// The base model, as the cards name it: its Hub id (hf-dir) or nothing (a model this run built).
fn base_model(v: &RunView<'_>, opts: &super::HfOptions) -> Result<(records::ModelSource, Option<String>), ExportError> {
    let be = v.entry(Stage::BaseModel.name())?;
    let src = records::model_source(be)?;
    if !src.testable() {
        return Ok((src, None));
    }
    match &opts.base_model {
        Some(id) => Ok((src, Some(id.clone()))),
        None => Err(ExportError::entry(
            be,
            format!(
                "the base model is the local directory `{}`, and the ledger does not say which Hub model that is; \
                 name it with --base-model (e.g. google/flan-t5-base)",
                src.path.as_deref().unwrap_or("?")
            ),
        )),
    }
}

/// The paragraph every card of a run with a scratch or random base starts with (`lead`: its first
/// sentence, which says what is not testable).
fn not_testable(lead: &str, src: &records::ModelSource, be: &Entry) -> String {
    format!(
        "**{lead}** This run's base model is not a pretrained language \
         model but a `{}` model the run built itself {} — for the tiny and smoke profiles a very small T5 \
         pretrained for minutes on a few thousand CosmosQA passages — so no score of a model fine-tuned from it \
         says anything about flan-t5-base, AI-contaminated data or synthetic data. The export exists so that \
         the whole path, ledger to Hub card, can be checked.\n",
        src.source,
        cite(be)
    )
}

const SCORES_NOT_TESTABLE: &str = "The scores on this card are not testable.";

/// LoRA target modules as peft names them (`q`, `v`).
fn targets(lora: &crate::config::Lora) -> String {
    lora.targets
        .iter()
        .map(|t| serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(", ")
}

fn ledger_section(v: &RunView<'_>, files: &[(&str, &str)]) -> String {
    let mut s = String::from("## Provenance\n\n");
    for (name, sha) in files {
        let _ = writeln!(s, "- `{name}`: sha256 `{sha}`, as the ledger recorded it");
    }
    let _ = writeln!(
        s,
        "- `{}`; signer `{}`; check it with `hsx verify --ledger {} --expect-head {}`",
        v.head_citation(),
        v.header.signer.key_id,
        v.ledger_file(),
        v.head.hash
    );
    s
}

/// The card of a fine-tuned arm's adapter (`train-X`, `train-X@seed`).
fn train_card(
    v: &RunView<'_>,
    e: &Entry,
    arm: Arm,
    seed: u64,
    dir_name: &str,
    base: &(records::ModelSource, Option<String>),
    files: &[(&str, &str)],
) -> Result<String, ExportError> {
    let ce = v.entry(Stage::Compare.name())?;
    let cmp = records::compare(ce)?;
    let label = Model::Arm(arm).label();
    let table = cmp
        .table_for(seed)
        .ok_or_else(|| ExportError::entry(ce, format!("has no results for the replicate with training seed {seed}")))?;
    let name = format!("{}-{dir_name}", v.header.experiment);
    let lora = records::lora(e)?;
    let tm: crate::stages::train::TrainMetrics = typed(e, "metrics", &e.metrics)?;
    let mut tags = vec!["peft".to_owned(), "lora".into(), "hsx".into(), "cosmosqa".into(), format!("arm-{label}")];
    if let Some(id) = &base.1 {
        tags.push(format!("base_model:adapter:{id}"));
    }
    let meta = ModelMeta {
        base_model: base.1.clone(),
        library_name: Some("peft"),
        pipeline_tag: "text-generation",
        language: vec!["en"],
        tags,
        datasets: vec![COSMOSQA_HUB_ID],
        model_index: model_index(&name, label, table, cmp.n),
    };
    let mut b = String::new();
    let w = &mut b;
    let _ = writeln!(w, "# {name}: model {label}, LoRA on the {} set\n", arm.data());
    if !base.0.testable() {
        let _ = writeln!(w, "{}", not_testable(SCORES_NOT_TESTABLE, &base.0, v.entry(Stage::BaseModel.name())?));
    }
    let base_text = match &base.1 {
        Some(id) => format!("[`{id}`](https://huggingface.co/{id})"),
        None => "this run's own base model, exported beside this adapter as `../base-model` (not on the Hub)".into(),
    };
    let _ = writeln!(
        w,
        "A LoRA adapter (r {}, alpha {}, dropout {}, on {}) for {base_text}, trained by the hsx run `{}` on \
         the `{}` config of the exported dataset ({} examples, training seed {seed}) {}. `adapter_config.json` \
         names its base `base-model` (the run directory's folder): load the base yourself, then \
         `PeftModel.from_pretrained(base, this_folder)`.\n",
        lora.r,
        lora.alpha,
        lora.dropout,
        targets(&lora),
        v.header.experiment,
        trained_on(arm),
        tm.examples,
        cite(e)
    );
    match &tm.run {
        Some(r) => {
            let _ = writeln!(
                w,
                "Training: epochs {}, optimiser steps {}, final training loss {:.4}, best epoch {} by validation \
                 loss {}.\n",
                r.epochs,
                tm.optimizer_steps,
                r.final_train_loss,
                tm.best_epoch,
                cite(e)
            );
        }
        None => {
            let why = tm.reason.as_deref().unwrap_or("no examples");
            let _ = writeln!(w, "Training: none ({why}); the adapter is its initialisation {}.\n", cite(e));
        }
    }
    let _ = writeln!(
        w,
        "## Test results\n\nOn the held-out human test split ({} questions, the `test` split of the `human` \
         config), greedy answers; means with {:.0}% cluster-bootstrap intervals (resampling test contexts) {}:\n",
        cmp.n,
        100.0 * cmp.interval_level,
        cite(ce)
    );
    let _ = writeln!(w, "| metric | mean | {:.0}% interval |\n|---|---|---|", 100.0 * cmp.interval_level);
    for m in METRICS.iter().filter(|m| m.compared) {
        if let Some(s) = table.get(label).and_then(|t| t.get(m.key)) {
            let _ = writeln!(w, "| {} | {} | [{}, {}] |", m.title, f4(s.mean), f4(s.ci[0]), f4(s.ci[1]));
        }
    }
    if cmp.replicates.is_some() {
        let _ = writeln!(
            w,
            "\nThese are this replicate's own results (training seed {seed}); the verdicts below use the \
             results across every replicate."
        );
    }
    let _ = writeln!(w, "\n## Verdicts of the pre-registered analysis\n\n{}", verdicts(&cmp, ce));
    let _ = writeln!(w, "{}", ledger_section(v, files));
    card_text(&meta, &b)
}

/// The primary hypotheses and the power check, as compare decided them.
fn verdicts(cmp: &records::Compare, ce: &Entry) -> String {
    let mut s = format!(
        "Power check (model A beats the best trivial baseline, `{}`, on {}): {} {}.\n\n",
        cmp.power.best_baseline,
        cmp.power.metric,
        cmp.power.verdict,
        cite(ce)
    );
    s.push_str("| hypothesis | contrast | estimate | interval | p | verdict |\n|---|---|---|---|---|---|\n");
    for h in cmp.hypotheses.iter().filter(|h| h.primary && h.metric == cmp.primary_metric) {
        let _ = writeln!(
            s,
            "| {}: {} | {} | {} | [{}, {}] | {} | **{}** |",
            h.id,
            h.statement,
            h.contrast_label,
            f4(h.contrast.estimate),
            f4(h.contrast.ci.lo),
            f4(h.contrast.ci.hi),
            f4(h.contrast.test.p),
            h.verdict
        );
    }
    s
}

/// The card of the synthetic-data generator's adapter.
fn generator_card(
    v: &RunView<'_>,
    e: &Entry,
    base: &(records::ModelSource, Option<String>),
    files: &[(&str, &str)],
) -> Result<String, ExportError> {
    let gm: crate::stages::generator::GeneratorMetrics = typed(e, "metrics", &e.metrics)?;
    let lora = records::lora(e)?;
    let mut b = format!("# {}-generator: the synthetic-data generator\n\n", v.header.experiment);
    if !base.0.testable() {
        b.push_str(&not_testable(SCORES_NOT_TESTABLE, &base.0, v.entry(Stage::BaseModel.name())?));
        b.push('\n');
    }
    let tasks: Vec<String> = gm.pairs_per_task.iter().map(|(t, n)| format!("{t} {n}")).collect();
    let _ = write!(
        b,
        "A LoRA adapter (r {}, alpha {}, on {}) trained on the human train split only, on {} pairs ({}) {}; \
         the synthesize stage sampled the `synthetic` config of the exported dataset from it. It has no test \
         results of its own. Final training loss {} {}.",
        lora.r,
        lora.alpha,
        targets(&lora),
        gm.training.examples,
        tasks.join(", "),
        cite(e),
        gm.training.run.as_ref().map_or_else(|| "n/a".into(), |r| format!("{:.4}", r.final_train_loss)),
        cite(e)
    );
    if let Some(val) = gm.validation.as_ref().filter(|v| v.share > 0.0) {
        let _ = write!(
            b,
            " Validation: {} of the train split's contexts held out ({} examples, {} pairs); loss per epoch {}.",
            pct(val.share),
            val.examples,
            val.pairs,
            gm.training.val_loss_per_epoch.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", ")
        );
    }
    b.push_str("\n\n");
    b.push_str(&ledger_section(v, files));
    Ok(b)
}

/// The card of a base model the run built (scratch or random weights).
fn base_card(
    v: &RunView<'_>,
    be: &Entry,
    src: &records::ModelSource,
    files: &[(&str, &str)],
) -> Result<String, ExportError> {
    let m: records::BaseModel = typed(be, "metrics", &be.metrics)?;
    let mut b = format!("# {}-base-model: this run's own base model\n\n", v.header.experiment);
    b.push_str(&not_testable("The scores of models fine-tuned from it are not testable.", src, be));
    let params = m.pretrain.as_ref().map_or_else(|| "n/a".into(), |p| p.total_parameters.to_string());
    let steps = m.pretrain.as_ref().map_or_else(|| "none".into(), |p| p.optimizer_steps.to_string());
    let heldout = m.heldout.as_ref().map_or_else(String::new, |h| {
        format!("; span-corruption loss on held-out passages {:.4} before, {:.4} after", h.loss_start, h.loss_end)
    });
    let _ = writeln!(
        b,
        "\nA T5 of the flan-t5 architecture (source `{}`): {params} parameters, a Unigram vocabulary of {}, \
         {steps} pretraining steps on {} span-corruption examples{heldout} {}. The adapters of this run load \
         on it.\n",
        m.source,
        m.vocab_size.map_or_else(|| "n/a".into(), |x| x.to_string()),
        m.examples.map_or_else(|| "n/a".into(), |x| x.to_string()),
        cite(be)
    );
    b.push_str(&ledger_section(v, files));
    let meta = ModelMeta {
        base_model: None,
        library_name: None,
        pipeline_tag: "text-generation",
        language: vec!["en"],
        tags: vec!["hsx".into(), "t5".into(), format!("{}-weights", src.source)],
        datasets: vec![COSMOSQA_HUB_ID],
        model_index: vec![],
    };
    card_text(&meta, &b)
}

/// Copies the files an entry recorded under `prefix` into `dir` (their paths below the prefix); returns
/// (file name, sha256) of each.
fn copy_prefix<'e>(run: &Path, e: &'e Entry, prefix: &str, dir: &Path) -> Result<Vec<(&'e str, &'e str)>, ExportError> {
    let mut files = Vec::new();
    for rec in e.outputs.iter().filter(|r| r.path.starts_with(prefix)) {
        let rel = &rec.path[prefix.len()..];
        copy_checked(run, rec, e, &dir.join(rel))?;
        files.push((rel, rec.sha256.as_str()));
    }
    if files.is_empty() {
        return Err(ExportError::entry(e, format!("records no files under `{prefix}`")));
    }
    Ok(files)
}

/// Writes every adapter of the ledger's latest entries (train instances, the generator) and, for a run
/// that built its base model, that model, each in `dir/<name>/` with its card.
pub fn write_models(
    v: &RunView<'_>,
    run: &Path,
    dir: &Path,
    opts: &super::HfOptions,
) -> Result<Vec<ModelSummary>, ExportError> {
    let base = base_model(v, opts)?;
    let mut latest: Vec<&Entry> = v.latest().into_values().collect();
    latest.sort_by_key(|e| e.seq);
    let mut out = Vec::new();
    for e in latest {
        let Ok(inst) = Instance::parse(&e.stage) else { continue };
        let dir_name = match inst.replicate {
            Some(s) => format!("{}-seed{s}", inst.stage.name()),
            None => inst.stage.name().to_owned(),
        };
        let target = dir.join(&dir_name);
        let text = match inst.stage {
            Stage::Train(arm) => {
                let files = copy_prefix(run, e, &format!("{}/adapter/", e.stage), &target)?;
                let seed = inst.training_seed(e.seeds.master);
                out.push(ModelSummary { dir: dir_name.clone().into(), stage: e.stage.clone(), files: files.len() });
                train_card(v, e, arm, seed, &dir_name, &base, &files)?
            }
            Stage::Generator => {
                let files = copy_prefix(run, e, "generator/adapter/", &target)?;
                out.push(ModelSummary { dir: dir_name.clone().into(), stage: e.stage.clone(), files: files.len() });
                let meta = ModelMeta {
                    base_model: base.1.clone(),
                    library_name: Some("peft"),
                    pipeline_tag: "text-generation",
                    language: vec!["en"],
                    tags: vec!["peft".into(), "lora".into(), "hsx".into(), "synthetic-data-generator".into()],
                    datasets: vec![COSMOSQA_HUB_ID],
                    model_index: vec![],
                };
                card_text(&meta, &generator_card(v, e, &base, &files)?)?
            }
            Stage::BaseModel if !base.0.testable() => {
                let files = copy_prefix(run, e, "base-model/model/", &target)?;
                out.push(ModelSummary { dir: dir_name.clone().into(), stage: e.stage.clone(), files: files.len() });
                base_card(v, e, &base.0, &files)?
            }
            _ => continue,
        };
        crate::fsx::write(&target, &target.join("README.md"), text.as_bytes())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> records::Table {
        let v = serde_json::json!({
            "A": {"f1": {"mean": 0.25, "ci": [0.125, 0.375]}, "em": {"mean": 0.0, "ci": [0.0, 0.0]},
                  "mc_accuracy": {"mean": null, "ci": [null, null]}, "bertscore_precision": {"mean": 0.5, "ci": [0.4, 0.6]}},
            "B": {"f1": {"mean": 0.5, "ci": [0.25, 0.75]}}
        });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_model_index_holds_compares_means_of_the_compared_metrics() {
        let idx = model_index("smoke-train-A", "A", &table(), 100);
        assert_eq!(idx.len(), 1);
        let r = &idx[0].results[0];
        assert_eq!(r.dataset.kind, COSMOSQA_HUB_ID);
        assert!(r.dataset.name.contains("n = 100"));
        // In the registry's order; a null mean and a metric compare does not compare are left out.
        let got: Vec<(&str, f64)> = r.metrics.iter().map(|m| (m.kind, m.value)).collect();
        assert_eq!(got, [("exact_match", 0.0), ("f1", 0.25)]);
        assert!(r.metrics.iter().all(|m| !m.verified));
        assert!(model_index("x", "C", &table(), 100).is_empty(), "no scores, no model-index");
    }

    #[test]
    fn the_front_matter_has_the_hubs_keys() {
        let meta = ModelMeta {
            base_model: None,
            library_name: Some("peft"),
            pipeline_tag: "text-generation",
            language: vec!["en"],
            tags: vec!["peft".into()],
            datasets: vec![COSMOSQA_HUB_ID],
            model_index: model_index("m", "B", &table(), 7),
        };
        let text = card_text(&meta, "# body\n").unwrap();
        assert!(text.starts_with("---\n") && text.contains("\n---\n\n# body\n"), "{text}");
        let yaml = text.split("---\n").nth(1).unwrap();
        let back: serde_json::Value = serde_norway::from_str(yaml).unwrap();
        assert!(back.get("base_model").is_none(), "a scratch base has no Hub id");
        assert_eq!(back["library_name"], "peft");
        let m = &back["model-index"][0];
        assert_eq!(m["name"], "m");
        assert_eq!(m["results"][0]["task"]["type"], "question-answering");
        assert_eq!(m["results"][0]["dataset"]["type"], COSMOSQA_HUB_ID);
        assert_eq!(
            m["results"][0]["metrics"][0],
            serde_json::json!({"type": "f1", "value": 0.5, "name": "F1", "verified": false})
        );
        let with_base = ModelMeta { base_model: Some("google/flan-t5-base".into()), model_index: vec![], ..meta };
        let back: serde_json::Value =
            serde_norway::from_str(card_text(&with_base, "").unwrap().split("---\n").nth(1).unwrap()).unwrap();
        assert_eq!(back["base_model"], "google/flan-t5-base");
        assert!(back.get("model-index").is_none());
    }

    #[test]
    fn lora_targets_are_named_as_peft_names_them() {
        let lora = crate::config::Lora {
            targets: vec![crate::config::LoraTarget::Q, crate::config::LoraTarget::Wi0],
            ..Default::default()
        };
        assert_eq!(targets(&lora), "q, wi0");
    }
}
