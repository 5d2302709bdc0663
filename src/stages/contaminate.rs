//! `contaminate`: the base model answers a share (`contaminate.ai_share`, 80%) of the train questions
//! itself and paraphrases the human answer for the rest. Empty outputs are retried with the next seed,
//! then recorded as empty — never dropped.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::ctx::StageCtx;
use crate::config::{Config, Contaminate, Runtime};
use crate::data::stats::{compare_answers, round6, vocabulary_size, AnswerComparison};
use crate::data::{self, QaExample};
use crate::error::PipelineError;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};
use crate::metrics::squad;
use crate::model::{dataset_keys, generate_texts, GenerateOptions};
use crate::synth::{self, ContaminatedRow};

/// The contaminate stage's parameters: the config's `[contaminate]`, the prompt length and `[runtime]`.
#[derive(Serialize)]
struct ContaminateParams<'a> {
    contaminate: &'a Contaminate,
    max_input_tokens: usize,
    runtime: &'a Runtime,
}

/// The contaminate entry's metrics: how many answers of each kind were written and how they differ from
/// the human answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContaminateMetrics {
    pub rows: usize,
    /// Rows answered by the base model, and rows whose human answer it paraphrased.
    pub ai: usize,
    pub paraphrase: usize,
    /// Shares of answers that differ from the human one after SQuAD normalisation: all, per kind.
    pub answer_difference_rate: f64,
    pub answer_difference_rate_ai: f64,
    pub answer_difference_rate_paraphrase: f64,
    pub mean_answer_words_before: f64,
    pub mean_answer_words_after: f64,
    /// Answers still empty after the retries (kept, never dropped), and rows retried.
    pub empty_outputs: usize,
    pub retried: usize,
    pub temperature: f64,
    /// The seed's §4.2: the contaminated answers against the human ones. Absent from older entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_human: Option<AnswerComparison>,
    /// Per kind: the base model's own answers, and its paraphrases against the originals they rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_human_by_kind: Option<ByKind>,
    /// Distinct lower-cased answer words, contaminated and human. Absent from older entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_vocabulary: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human_answer_vocabulary: Option<usize>,
    /// The sampler that drew the answers ([`crate::model::SAMPLER`]); absent from entries written by the
    /// host sampler ([`crate::model::SAMPLER_HOST_V1`]), which predates the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
}

impl ContaminateMetrics {
    /// The sampler of this entry: the recorded one, or the host sampler for entries without the field.
    pub fn sampler(&self) -> &str {
        self.sampler.as_deref().unwrap_or(crate::model::SAMPLER_HOST_V1)
    }
}

/// One value per kind of contaminated answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ByKind {
    pub ai: AnswerComparison,
    pub paraphrase: AnswerComparison,
}

pub fn spec(cfg: &Config) -> StageSpec {
    let params = ContaminateParams {
        contaminate: &cfg.contaminate,
        max_input_tokens: cfg.train.max_input_tokens,
        runtime: &cfg.runtime,
    };
    StageSpec {
        stage: super::ctx::Stage::Contaminate.name().into(),
        params: super::ctx::params(&params),
        inputs: [vec![super::ctx::human("train")], super::ctx::base_inputs(cfg)].concat(),
        determinism: Determinism::Bitwise,
    }
}

pub fn run(ctx: &StageCtx) -> Result<StageOutcome, PipelineError> {
    let (cfg, seed) = (ctx.cfg, ctx.seed);
    let human: Vec<QaExample> = data::read_jsonl_as(&ctx.run_path("prepare/human_train.jsonl"))?;
    let m = crate::model::load_t5(&ctx.base_model(), ctx.device()?)?;
    let c = &cfg.contaminate;
    let mut order: Vec<usize> = (0..human.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_ai = (human.len() as f64 * c.ai_share).round() as usize;
    let mut kind = vec!["paraphrase"; human.len()];
    for &i in &order[..n_ai] {
        kind[i] = "ai";
    }
    let prompts: Vec<String> = human
        .iter()
        .zip(&kind)
        .map(|(e, k)| {
            if *k == "ai" {
                synth::answer_prompt(&e.context, &e.question)
            } else {
                synth::paraphrase_prompt(&e.question, &e.answer)
            }
        })
        .collect();
    let opts = GenerateOptions {
        max_new_tokens: c.max_new_tokens,
        min_new_tokens: 0,
        temperature: c.temperature,
        top_p: c.top_p,
        seed,
        bf16: ctx.cfg.runtime.bf16(),
    };
    let progress = ctx.trainer();
    let mut answers = generate_texts(
        &m,
        &prompts,
        &dataset_keys(prompts.len()),
        &opts,
        c.batch_size,
        cfg.train.max_input_tokens,
        Some(progress.as_ref()),
    )?;
    let mut attempts = vec![1usize; human.len()];
    for retry in 1..=c.empty_retries {
        let empty: Vec<usize> = (0..answers.len()).filter(|&i| answers[i].is_empty()).collect();
        if empty.is_empty() {
            break;
        }
        let p: Vec<String> = empty.iter().map(|&i| prompts[i].clone()).collect();
        // A retry draws from other streams (its own seed), each row keyed by its index in the dataset.
        let o = GenerateOptions { seed: seed.wrapping_add(1_000_003 * retry as u64), ..opts.clone() };
        let keys: Vec<u64> = empty.iter().map(|&i| i as u64).collect();
        let again = generate_texts(&m, &p, &keys, &o, c.batch_size, cfg.train.max_input_tokens, None)?;
        for (j, &i) in empty.iter().enumerate() {
            answers[i] = again[j].clone();
            attempts[i] += 1;
        }
    }
    let rows: Vec<ContaminatedRow> = human
        .iter()
        .enumerate()
        .map(|(i, e)| ContaminatedRow {
            id: e.id.clone(),
            context: e.context.clone(),
            question: e.question.clone(),
            answer: answers[i].clone(),
            kind: kind[i].to_owned(),
            original_answer_sha256: crate::canonical::sha256_hex(e.answer.as_bytes()),
            attempts: attempts[i],
        })
        .collect();
    data::write_jsonl(&ctx.run_dir, &ctx.out_dir()?.join("ai_contaminated.jsonl"), &rows)?;
    let words = |s: &str| s.split_whitespace().count() as f64;
    let n = rows.len().max(1) as f64;
    let differs = |r: &ContaminatedRow, h: &QaExample| squad::normalize(&r.answer) != squad::normalize(&h.answer);
    let differ = rows.iter().zip(&human).filter(|(r, h)| differs(r, h)).count();
    let per_kind = |k: &str| rows.iter().filter(|r| r.kind == k).count();
    let per_kind_differ = |k: &str| rows.iter().zip(&human).filter(|(r, h)| r.kind == k && differs(r, h)).count();
    let vs_human = |kind: Option<&str>| {
        let pairs: Vec<(&str, &str)> = human
            .iter()
            .zip(&rows)
            .filter(|(_, r)| kind.is_none_or(|k| r.kind == k))
            .map(|(h, r)| (h.answer.as_str(), r.answer.as_str()))
            .collect();
        compare_answers(&pairs)
    };
    let metrics = ContaminateMetrics {
        rows: rows.len(),
        ai: per_kind("ai"),
        paraphrase: per_kind("paraphrase"),
        answer_difference_rate: round6(differ as f64 / n),
        answer_difference_rate_ai: round6(per_kind_differ("ai") as f64 / per_kind("ai").max(1) as f64),
        answer_difference_rate_paraphrase: round6(
            per_kind_differ("paraphrase") as f64 / per_kind("paraphrase").max(1) as f64,
        ),
        mean_answer_words_before: round6(human.iter().map(|h| words(&h.answer)).sum::<f64>() / n),
        mean_answer_words_after: round6(rows.iter().map(|r| words(&r.answer)).sum::<f64>() / n),
        empty_outputs: rows.iter().filter(|r| r.answer.is_empty()).count(),
        retried: attempts.iter().filter(|&&a| a > 1).count(),
        temperature: c.temperature,
        vs_human: Some(vs_human(None)),
        vs_human_by_kind: Some(ByKind { ai: vs_human(Some("ai")), paraphrase: vs_human(Some("paraphrase")) }),
        answer_vocabulary: Some(vocabulary_size(rows.iter().map(|r| r.answer.as_str()))),
        human_answer_vocabulary: Some(vocabulary_size(human.iter().map(|h| h.answer.as_str()))),
        sampler: Some(crate::model::SAMPLER.into()),
    };
    StageOutcome::of(vec![(Root::Run, "contaminate/ai_contaminated.jsonl".into())], &metrics)
}
