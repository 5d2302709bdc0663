//! `synthesize`: sample complete examples (context, question, answer) with the generator in three
//! strategies, pass each through the filters of [`crate::synth::filters`] in order, and repeat until the
//! target count has passed or the attempt cap is hit. Every rejection is kept with its first failing
//! filter and measured value.
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tch::Device;

use super::ctx::StageCtx;
use crate::config::Config;
use crate::data::{self, stats::round6, QaExample};
use crate::error::PipelineError;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};
use crate::model::adapter::load_with_adapter;
use crate::model::{generate_texts, GenerateOptions};
use crate::synth::filters::{self, FilterState};
use crate::synth::{self, Strategy, SyntheticRow};

pub fn spec(cfg: &Config) -> StageSpec {
    StageSpec {
        stage: super::ctx::Stage::Synthesize.name().into(),
        params: json!({ "synth": cfg.synth, "filters": cfg.filters, "max_input_tokens": cfg.train.max_input_tokens, "runtime": cfg.runtime }),
        inputs: vec![super::ctx::human("train"), super::ctx::base_input(cfg), (Root::Run, "generator/adapter".into())],
        determinism: Determinism::Bitwise,
    }
}

/// Sample complete examples with the generator, filter, repeat until the target
/// count has passed or the attempt cap is hit.
pub fn run(ctx: &StageCtx) -> Result<StageOutcome, PipelineError> {
    let (cfg, seed) = (ctx.cfg, ctx.seed);
    let progress = ctx.trainer();
    let human: Vec<QaExample> = data::read_jsonl_as(&ctx.run_path("prepare/human_train.jsonl"))?;
    let device = ctx.device()?;
    let (m, _lora) = load_with_adapter(&ctx.base_model(), &ctx.run_path("generator/adapter"), device)?;
    let s = &cfg.synth;
    let f = &cfg.filters;
    let target = (human.len() as f64 * s.multiplier).round() as usize;
    let cap = (target as f64 * s.max_attempts_factor).ceil() as usize;
    let shares = [s.share_question_variants, s.share_context_augmentation, s.share_answer_expansion];
    let seed_texts: Vec<String> = human.iter().map(|e| format!("{} {} {}", e.context, e.question, e.answer)).collect();
    let mut state = FilterState::new(f, &seed_texts, seed);
    let bert = crate::model::bert::load_minilm(None, device)?;
    let seed_emb = bert.embed(&seed_texts, f.embed_batch_size, 256)?; // [n_seed, 384]

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut accepted: Vec<SyntheticRow> = Vec::new();
    let mut rejected: Vec<Value> = Vec::new();
    let mut attempts = 0usize;
    let mut first_fail: BTreeMap<&str, usize> = BTreeMap::new();
    let mut would_fail: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_strategy: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut round_no = 0u64;
    let gen = |prompts: &[String], salt: u64, max_new: usize| {
        let o = GenerateOptions { max_new_tokens: max_new, min_new_tokens: 0, temperature: s.temperature, top_p: s.top_p, seed: seed ^ salt };
        generate_texts(&m, prompts, &o, s.batch_size, cfg.train.max_input_tokens, None)
    };
    while accepted.len() < target && attempts < cap {
        progress.items(attempts, cap, &format!("{} of {target} passed", accepted.len()));
        round_no += 1;
        // One round: a batch of seed examples per strategy, in proportion to the shares.
        let want = (target - accepted.len()).min(cap - attempts).min(s.batch_size * 4).max(1);
        let mut cands: Vec<SyntheticRow> = Vec::new();
        let mut malformed: Vec<(Strategy, String, String)> = Vec::new();
        for (k, strat) in Strategy::ALL.iter().enumerate() {
            let n = ((want as f64) * shares[k]).round() as usize;
            if n == 0 {
                continue;
            }
            let picks: Vec<&QaExample> = (0..n).map(|_| &human[rand::Rng::gen_range(&mut rng, 0..human.len())]).collect();
            let salt = round_no * 16 + k as u64;
            match strat {
                Strategy::QuestionVariants => {
                    let qs = gen(&picks.iter().map(|e| synth::question_variant_prompt(&e.context, &e.question)).collect::<Vec<_>>(), salt, 48)?;
                    let ans = gen(&picks.iter().zip(&qs).map(|(e, q)| synth::answer_prompt(&e.context, q)).collect::<Vec<_>>(), salt + 8, 32)?;
                    for ((e, q), a) in picks.iter().zip(qs).zip(ans) {
                        cands.push(SyntheticRow { id: String::new(), context: e.context.clone(), question: q, answer: a, strategy: *strat, seed_id: e.id.clone() });
                    }
                }
                Strategy::ContextAugmentation => {
                    let ctxs = gen(&picks.iter().map(|e| synth::context_prompt(&e.question, &e.answer)).collect::<Vec<_>>(), salt, s.max_new_tokens)?;
                    for (e, c) in picks.iter().zip(ctxs) {
                        cands.push(SyntheticRow { id: String::new(), context: c, question: e.question.clone(), answer: e.answer.clone(), strategy: *strat, seed_id: e.id.clone() });
                    }
                }
                Strategy::AnswerExpansion => {
                    let outs = gen(&picks.iter().map(|e| synth::expansion_prompt(&e.context)).collect::<Vec<_>>(), salt, 64)?;
                    for (e, o) in picks.iter().zip(outs) {
                        match synth::parse_expansion(&o) {
                            Some((q, a)) => cands.push(SyntheticRow { id: String::new(), context: e.context.clone(), question: q, answer: a, strategy: *strat, seed_id: e.id.clone() }),
                            None => malformed.push((*strat, e.id.clone(), o)),
                        }
                    }
                }
            }
        }
        for (strat, sid, text) in malformed {
            attempts += 1;
            per_strategy.entry(strat.name()).or_default().0 += 1;
            *first_fail.entry(filters::MALFORMED.0).or_default() += 1;
            *would_fail.entry(filters::MALFORMED.0).or_default() += 1;
            rejected.push(json!({"strategy": strat, "seed_id": sid, "output": text, "filter": filters::MALFORMED.0, "value": Value::Null}));
        }
        if cands.is_empty() {
            continue;
        }
        let texts: Vec<String> = cands.iter().map(SyntheticRow::full_text).collect();
        let emb = bert.embed(&texts, f.embed_batch_size, 256)?;
        let cos: Vec<f64> = max_cosine(&emb, &seed_emb, 4096);
        for (i, mut c) in cands.into_iter().enumerate() {
            if accepted.len() >= target || attempts >= cap {
                break;
            }
            attempts += 1;
            per_strategy.entry(c.strategy.name()).or_default().0 += 1;
            let checked = state.check(&texts[i], cos[i]);
            let fails = checked.failures(f);
            for (flt, _) in &fails {
                *would_fail.entry(flt.name()).or_default() += 1;
            }
            match fails.first() {
                None => {
                    state.accept(&texts[i]);
                    per_strategy.entry(c.strategy.name()).or_default().1 += 1;
                    c.id = format!("syn-{}", accepted.len());
                    accepted.push(c);
                }
                Some((flt, value)) => {
                    *first_fail.entry(flt.name()).or_default() += 1;
                    rejected.push(json!({"strategy": c.strategy, "seed_id": c.seed_id, "context": c.context, "question": c.question,
                                         "answer": c.answer, "filter": flt.name(), "value": value}));
                }
            }
        }
    }
    let dir = ctx.out_dir()?;
    data::write_jsonl(&dir.join("synthetic.jsonl"), &accepted)?;
    data::write_jsonl(&dir.join("rejected.jsonl"), &rejected)?;
    let mut dist: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &accepted {
        *dist.entry(a.strategy.name()).or_default() += 1;
    }
    let pass_rate: BTreeMap<&str, Value> = per_strategy
        .iter()
        .map(|(k, (att, ok))| (*k, json!({"attempts": att, "passed": ok, "pass_rate": round6(*ok as f64 / (*att).max(1) as f64)})))
        .collect();
    let filters_order: Vec<&str> = filters::rejection_reasons().map(|(name, _)| name).collect();
    let rejected_total: usize = first_fail.values().sum();
    Ok(StageOutcome {
        outputs: vec![(Root::Run, "synthesize/synthetic.jsonl".into()), (Root::Run, "synthesize/rejected.jsonl".into())],
        metrics: json!({
            "seed_examples": human.len(),
            "target": target,
            "attempt_cap": cap,
            "attempts": attempts,
            "passed": accepted.len(),
            "shortfall": target.saturating_sub(accepted.len()),
            "rejected": rejected_total,
            "rejections_first_failing": first_fail,
            "rejections_would_fail": would_fail,
            "filter_order": filters_order,
            "per_strategy": pass_rate,
            "final_strategy_distribution": dist,
            "thresholds": filters::thresholds_json(f),
            "embedding_model": "all-MiniLM-L6-v2",
        }),
    })
}

/// For each row of `a` [n, d] (normalised), its largest dot product with any row of `b` [m, d], in
/// chunks of `chunk` rows of `b` to bound memory.
pub fn max_cosine(a: &tch::Tensor, b: &tch::Tensor, chunk: i64) -> Vec<f64> {
    let n = a.size()[0];
    if n == 0 {
        return Vec::new();
    }
    let m = b.size()[0];
    let mut best = tch::Tensor::full([n], f64::NEG_INFINITY, (tch::Kind::Float, Device::Cpu));
    let mut start = 0;
    while start < m {
        let len = chunk.min(m - start);
        let part = a.matmul(&b.narrow(0, start, len).tr()).max_dim(1, false).0;
        best = best.maximum(&part);
        start += len;
    }
    Vec::<f32>::try_from(best).expect("floats").into_iter().map(|x| x as f64).collect()
}

