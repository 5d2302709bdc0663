//! `synthesize`: sample complete examples (context, question, answer) with the generator in three
//! strategies, pass each through the filters of [`crate::synth::filters`] in order, and repeat until the
//! target count has passed or the attempt cap is hit. Every rejection is kept with its first failing
//! filter and measured value.
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Device;

use super::ctx::{present, StageCtx};
use crate::config::{Config, Filters, Runtime, Synth};
use crate::data::{self, stats::round6, QaExample};
use crate::error::PipelineError;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};
use crate::model::adapter::load_with_adapter;
use crate::model::{generate_texts_capped, GenerateOptions};
use crate::synth::filters::{self, Fields, FilterState, Part, Scope, Thresholds};
use crate::synth::{self, QuotedExample, Strategy, SyntheticRow};

/// The synthesize stage's parameters: the config's `[synth]` and `[filters]`, the prompt length and
/// `[runtime]`.
#[derive(Serialize)]
struct SynthesizeParams<'a> {
    synth: &'a Synth,
    filters: &'a Filters,
    max_input_tokens: usize,
    runtime: &'a Runtime,
}

/// The synthesize entry's metrics: the target, the attempts, what passed and why the rest was rejected
/// (in total and per strategy, by the filter names of [`filters::rejection_reasons`]), the thresholds,
/// quotes of accepted examples and the full-text sensitivity figure. Fields added after the first ledgers
/// are options, absent from the entries that predate them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthesizeMetrics {
    pub seed_examples: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    pub target: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts_factor: Option<f64>,
    pub attempt_cap: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_cap_hit: Option<bool>,
    pub attempts: usize,
    pub passed: usize,
    pub shortfall: usize,
    pub rejected: usize,
    /// Per reason, the candidates it rejected first, and those it would have rejected (reasons with none
    /// are left out).
    pub rejections_first_failing: BTreeMap<String, usize>,
    pub rejections_would_fail: BTreeMap<String, usize>,
    /// Every rejection reason, in the order a candidate meets them (`malformed` first).
    pub filter_order: Vec<String>,
    /// `filters.scope`, and per strategy the parts of an example its similarity filters judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged_parts: Option<BTreeMap<String, Vec<String>>>,
    pub per_strategy: BTreeMap<String, StrategyCounts>,
    /// How the accepted examples of `per_strategy.*.examples` were chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted_examples: Option<QuoteRule>,
    pub final_strategy_distribution: BTreeMap<String, usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_text_sensitivity: Option<Sensitivity>,
    pub thresholds: Thresholds,
    pub embedding_model: String,
    /// The sampler that drew the candidates ([`crate::model::SAMPLER`]); absent from entries written by
    /// the host sampler ([`crate::model::SAMPLER_HOST_V1`]), which predates the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
}

impl SynthesizeMetrics {
    /// The sampler of this entry: the recorded one, or the host sampler for entries without the field.
    pub fn sampler(&self) -> &str {
        self.sampler.as_deref().unwrap_or(crate::model::SAMPLER_HOST_V1)
    }
}

/// One strategy's candidates. Each reason of `filter_order` has a count in `first_failing` and
/// `would_fail` (0 when none), so the report reads a full table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyCounts {
    pub attempts: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed: Option<usize>,
    /// Of the attempts: null when there were none.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub malformed_share: Option<Option<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failing: Option<BTreeMap<String, usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would_fail: Option<BTreeMap<String, usize>>,
    pub passed: usize,
    /// Of the attempts: null when there were none.
    pub pass_rate: Option<f64>,
    /// Up to [`synth::QUOTED_PER_STRATEGY`] accepted examples, the first in generation order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples: Option<Vec<QuotedExample>>,
}

/// The rule the quoted examples follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuoteRule {
    pub per_strategy: usize,
    pub context_chars: usize,
    pub rule: String,
}

/// How many of the accepted examples would also pass every filter reading the whole example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sensitivity {
    pub accepted: usize,
    pub would_pass: usize,
    /// Of the accepted: null when none was accepted.
    pub pass_rate: Option<f64>,
    /// Per filter, the accepted examples it would reject.
    pub would_fail: BTreeMap<String, usize>,
}

/// A row of `rejected.jsonl`: a malformed output, or a candidate with its first failing filter, the
/// part it judged and the value it measured.
#[derive(Serialize)]
#[serde(untagged)]
enum Rejected {
    Malformed {
        strategy: Strategy,
        seed_id: String,
        output: String,
        filter: &'static str,
        value: Option<f64>,
    },
    Filtered {
        strategy: Strategy,
        seed_id: String,
        context: String,
        question: String,
        answer: String,
        filter: &'static str,
        part: Option<Part>,
        value: f64,
    },
}

pub fn spec(cfg: &Config) -> StageSpec {
    let params = SynthesizeParams {
        synth: &cfg.synth,
        filters: &cfg.filters,
        max_input_tokens: cfg.train.max_input_tokens,
        runtime: &cfg.runtime,
    };
    StageSpec {
        stage: super::ctx::Stage::Synthesize.name().into(),
        params: super::ctx::params(&params),
        inputs: [
            vec![super::ctx::human("train")],
            super::ctx::base_inputs(cfg),
            vec![(Root::Run, "generator/adapter".into())],
        ]
        .concat(),
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
    let scope = Scope::parse(&f.scope).ok_or_else(|| PipelineError::Stage {
        stage: "synthesize",
        message: format!(
            "config key filters.scope: must be one of {:?}, got {:?}",
            crate::config::FILTER_SCOPES,
            f.scope
        ),
    })?;
    let target = (human.len() as f64 * s.multiplier).round() as usize;
    let cap = (target as f64 * s.max_attempts_factor).ceil() as usize;
    let shares = [s.share_question_variants, s.share_context_augmentation, s.share_answer_expansion];
    let seed_fields: Vec<Fields> =
        human.iter().map(|e| (e.context.as_str(), e.question.as_str(), e.answer.as_str())).collect();
    let mut state = FilterState::new(f, scope, &seed_fields, seed);
    let bert = crate::model::bert::load_minilm(None, device)?;
    // The seed's embeddings, once per part judged (and the whole example, for the full-text sensitivity
    // figure): [distinct texts, 384] each.
    let mut seed_emb: BTreeMap<Part, tch::Tensor> = BTreeMap::new();
    for part in scope.parts().into_iter().chain([Part::Full]) {
        if let std::collections::btree_map::Entry::Vacant(slot) = seed_emb.entry(part) {
            slot.insert(bert.embed(&filters::distinct_texts(part, &seed_fields), f.embed_batch_size, 256)?);
        }
    }

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut accepted: Vec<SyntheticRow> = Vec::new();
    let mut rejected: Vec<Rejected> = Vec::new();
    let mut attempts = 0usize;
    let mut counts: BTreeMap<Strategy, Counts> = Strategy::ALL.iter().map(|s| (*s, Counts::default())).collect();
    // Every pick of a seed example gets the next ordinal `j`, its index in the stage's stream of prompts:
    // its first generation samples with key 2j, a question variant's answer with key 2j + 1
    // (crate::model::generate), so a candidate does not depend on the batch it ran in. That is what lets a
    // round send all three strategies' prompts through one queue of full batches, each prompt with its
    // task's cap on new tokens.
    let mut picked = 0u64;
    let gen = |prompts: &[String], keys: &[u64], caps: &[usize]| {
        let o = GenerateOptions {
            max_new_tokens: caps.iter().copied().max().unwrap_or(0),
            min_new_tokens: 0,
            temperature: s.temperature,
            top_p: s.top_p,
            seed,
            bf16: ctx.cfg.runtime.bf16(),
        };
        generate_texts_capped(&m, prompts, keys, Some(caps), &o, s.batch_size, cfg.train.max_input_tokens, None)
    };
    while accepted.len() < target && attempts < cap {
        progress.items(attempts, cap, &format!("{} of {target} passed", accepted.len()));
        // One round: seed examples for each strategy, in proportion to the shares.
        let want = (target - accepted.len()).min(cap - attempts).min(s.batch_size * 4).max(1);
        let mut cands: Vec<SyntheticRow> = Vec::new();
        let mut malformed: Vec<(Strategy, String, String)> = Vec::new();
        // The round's picks, strategy by strategy, and their first prompts in one queue.
        let mut picks: Vec<(Strategy, &QaExample, u64)> = Vec::new();
        for (strat, n) in Strategy::ALL.iter().zip(allocate(want, &shares)) {
            for _ in 0..n {
                picks.push((*strat, &human[rand::Rng::gen_range(&mut rng, 0..human.len())], picked));
                picked += 1;
            }
        }
        let (prompts, (keys, caps)): (Vec<String>, (Vec<u64>, Vec<usize>)) = picks
            .iter()
            .map(|(strat, e, j)| match strat {
                Strategy::QuestionVariants => (synth::question_variant_prompt(&e.context, &e.question), (2 * j, 48)),
                Strategy::ContextAugmentation => {
                    (synth::context_prompt(&e.question, &e.answer), (2 * j, s.max_new_tokens))
                }
                Strategy::AnswerExpansion => (synth::expansion_prompt(&e.context), (2 * j, 64)),
            })
            .unzip();
        let firsts = gen(&prompts, &keys, &caps)?;
        // Question variants' answers, the second queue.
        let qv: Vec<usize> = (0..picks.len()).filter(|&i| picks[i].0 == Strategy::QuestionVariants).collect();
        let ans_prompts: Vec<String> =
            qv.iter().map(|&i| synth::answer_prompt(&picks[i].1.context, &firsts[i])).collect();
        let ans_keys: Vec<u64> = qv.iter().map(|&i| 2 * picks[i].2 + 1).collect();
        let answers = gen(&ans_prompts, &ans_keys, &vec![32; qv.len()])?;
        let mut answer_of: BTreeMap<usize, String> = qv.into_iter().zip(answers).collect();
        for (i, ((strat, e, _), first)) in picks.iter().zip(firsts).enumerate() {
            let strat = *strat;
            match strat {
                Strategy::QuestionVariants => {
                    let (q, a) = (first, answer_of.remove(&i).unwrap_or_default());
                    // A generated field that is empty or degenerate (no letter or digit, one word
                    // repeated) is a malformed output, not a candidate.
                    if degenerate(&q) || degenerate(&a) {
                        malformed.push((strat, e.id.clone(), format!("Question: {q} Answer: {a}")));
                        continue;
                    }
                    cands.push(SyntheticRow {
                        id: String::new(),
                        context: e.context.clone(),
                        question: q,
                        answer: a,
                        strategy: strat,
                        seed_id: e.id.clone(),
                    });
                }
                Strategy::ContextAugmentation => {
                    if degenerate(&first) {
                        malformed.push((strat, e.id.clone(), first));
                        continue;
                    }
                    cands.push(SyntheticRow {
                        id: String::new(),
                        context: first,
                        question: e.question.clone(),
                        answer: e.answer.clone(),
                        strategy: strat,
                        seed_id: e.id.clone(),
                    });
                }
                Strategy::AnswerExpansion => match synth::parse_expansion(&first) {
                    Some((q, a)) if degenerate(&q) || degenerate(&a) => malformed.push((strat, e.id.clone(), first)),
                    Some((q, a)) => cands.push(SyntheticRow {
                        id: String::new(),
                        context: e.context.clone(),
                        question: q,
                        answer: a,
                        strategy: strat,
                        seed_id: e.id.clone(),
                    }),
                    None => malformed.push((strat, e.id.clone(), first)),
                },
            }
        }
        for (strat, sid, text) in malformed {
            if attempts >= cap {
                break;
            }
            attempts += 1;
            let c = counts.entry(strat).or_default();
            c.attempts += 1;
            c.malformed += 1;
            rejected.push(Rejected::Malformed {
                strategy: strat,
                seed_id: sid,
                output: text,
                filter: filters::MALFORMED.0,
                value: None,
            });
        }
        if cands.is_empty() {
            continue;
        }
        // Filter 3: per judged part, one batched embedding call over this round's candidates.
        let mut cosines: Vec<Vec<(Part, f64)>> = vec![Vec::new(); cands.len()];
        for (part, emb) in &seed_emb {
            let idx: Vec<usize> =
                (0..cands.len()).filter(|&i| filters::judged_parts(cands[i].strategy, scope).contains(part)).collect();
            if idx.is_empty() {
                continue;
            }
            let texts: Vec<String> = idx.iter().map(|&i| part.text(cands[i].fields())).collect();
            let cos = max_cosine(&bert.embed(&texts, f.embed_batch_size, 256)?, emb, 4096);
            for (i, v) in idx.into_iter().zip(cos) {
                cosines[i].push((*part, v));
            }
        }
        for (i, mut c) in cands.into_iter().enumerate() {
            if accepted.len() >= target || attempts >= cap {
                break;
            }
            attempts += 1;
            let checked = state.check(c.strategy, c.fields(), &cosines[i]);
            let fails = checked.failures(f);
            let n = counts.entry(c.strategy).or_default();
            n.attempts += 1;
            for (flt, _) in &fails {
                *n.would_fail.entry(flt.name()).or_default() += 1;
            }
            match fails.first() {
                None => {
                    state.accept(c.strategy, c.fields());
                    n.passed += 1;
                    c.id = format!("syn-{}", accepted.len());
                    accepted.push(c);
                }
                Some((flt, value)) => {
                    *n.first_failing.entry(flt.name()).or_default() += 1;
                    rejected.push(Rejected::Filtered {
                        part: checked.part(*flt),
                        strategy: c.strategy,
                        seed_id: c.seed_id,
                        context: c.context,
                        question: c.question,
                        answer: c.answer,
                        filter: flt.name(),
                        value: *value,
                    });
                }
            }
        }
    }
    let sensitivity = full_text_sensitivity(f, &seed_fields, &accepted, &seed_emb[&Part::Full], &bert, seed)?;
    let dir = ctx.out_dir()?;
    data::write_jsonl(&ctx.run_dir, &dir.join("synthetic.jsonl"), &accepted)?;
    // Each row through a JSON value, whose keys are sorted: the bytes do not depend on the field order.
    let rejected: Vec<serde_json::Value> =
        rejected.iter().map(serde_json::to_value).collect::<Result<_, _>>().map_err(PipelineError::Record)?;
    data::write_jsonl(&ctx.run_dir, &dir.join("rejected.jsonl"), &rejected)?;
    let mut dist: BTreeMap<String, usize> = BTreeMap::new();
    for a in &accepted {
        *dist.entry(a.strategy.name().into()).or_default() += 1;
    }
    let reasons: Vec<&str> = filters::rejection_reasons().map(|(name, _)| name).collect();
    // Totals over the strategies; `malformed` is its own reason, first in the order.
    let mut first_fail: BTreeMap<String, usize> = BTreeMap::new();
    let mut would_fail: BTreeMap<String, usize> = BTreeMap::new();
    for c in counts.values() {
        for (k, v) in c.first_failing_with_malformed() {
            *first_fail.entry(k.into()).or_default() += v;
        }
        for (k, v) in c.would_fail_with_malformed() {
            *would_fail.entry(k.into()).or_default() += v;
        }
    }
    first_fail.retain(|_, v| *v > 0);
    would_fail.retain(|_, v| *v > 0);
    // Up to QUOTED_PER_STRATEGY accepted examples of each strategy, the first in generation order.
    let mut quotes = synth::quoted_examples(&accepted, synth::QUOTED_PER_STRATEGY, synth::QUOTED_CONTEXT_CHARS);
    let per_strategy: BTreeMap<String, StrategyCounts> = counts
        .iter()
        .map(|(k, c)| (k.name().into(), c.record(&reasons, quotes.remove(k.name()).unwrap_or_default())))
        .collect();
    let rejected_total: usize = first_fail.values().sum();
    let judged_parts = Strategy::ALL
        .iter()
        .map(|s| (s.name().into(), filters::judged_parts(*s, scope).iter().map(|p| p.name().into()).collect()))
        .collect();
    let metrics = SynthesizeMetrics {
        seed_examples: human.len(),
        multiplier: Some(s.multiplier),
        target,
        max_attempts_factor: Some(s.max_attempts_factor),
        attempt_cap: cap,
        attempt_cap_hit: Some(attempts >= cap),
        attempts,
        passed: accepted.len(),
        shortfall: target.saturating_sub(accepted.len()),
        rejected: rejected_total,
        rejections_first_failing: first_fail,
        rejections_would_fail: would_fail,
        filter_order: reasons.iter().map(|r| r.to_string()).collect(),
        scope: Some(scope.name().into()),
        judged_parts: Some(judged_parts),
        per_strategy,
        quoted_examples: Some(QuoteRule {
            per_strategy: synth::QUOTED_PER_STRATEGY,
            context_chars: synth::QUOTED_CONTEXT_CHARS,
            rule: "the first accepted examples of each strategy in generation order (synthetic.jsonl's order)".into(),
        }),
        final_strategy_distribution: dist,
        full_text_sensitivity: Some(sensitivity),
        thresholds: Thresholds::of(f),
        embedding_model: "all-MiniLM-L6-v2".into(),
        sampler: Some(crate::model::SAMPLER.into()),
    };
    let outputs =
        vec![(Root::Run, "synthesize/synthetic.jsonl".into()), (Root::Run, "synthesize/rejected.jsonl".into())];
    StageOutcome::of(outputs, &metrics)
}

/// One strategy's candidates: attempts, malformed outputs, first failing and would-fail counts per
/// filter, and passes.
#[derive(Default)]
struct Counts {
    attempts: usize,
    malformed: usize,
    first_failing: BTreeMap<&'static str, usize>,
    would_fail: BTreeMap<&'static str, usize>,
    passed: usize,
}

impl Counts {
    fn first_failing_with_malformed(&self) -> BTreeMap<&'static str, usize> {
        let mut m = self.first_failing.clone();
        m.insert(filters::MALFORMED.0, self.malformed);
        m
    }
    fn would_fail_with_malformed(&self) -> BTreeMap<&'static str, usize> {
        let mut m = self.would_fail.clone();
        m.insert(filters::MALFORMED.0, self.malformed);
        m
    }
    /// The strategy's record: every reason in `reasons` gets a count (0 when none), so the report reads a
    /// full table.
    fn record(&self, reasons: &[&str], examples: Vec<QuotedExample>) -> StrategyCounts {
        let (first, would) = (self.first_failing_with_malformed(), self.would_fail_with_malformed());
        let full = |m: &BTreeMap<&str, usize>| {
            reasons.iter().map(|r| (r.to_string(), m.get(r).copied().unwrap_or(0))).collect::<BTreeMap<_, _>>()
        };
        let share = |x: usize| (self.attempts > 0).then(|| round6(x as f64 / self.attempts as f64));
        StrategyCounts {
            attempts: self.attempts,
            malformed: Some(self.malformed),
            malformed_share: Some(share(self.malformed)),
            first_failing: Some(full(&first)),
            would_fail: Some(full(&would)),
            passed: self.passed,
            pass_rate: share(self.passed),
            examples: Some(examples),
        }
    }
}

/// Splits `want` candidates over the strategies by their shares (largest remainder, ties to the earlier
/// strategy), so a round asks for exactly `want` and never for none.
fn allocate(want: usize, shares: &[f64; 3]) -> [usize; 3] {
    let exact: Vec<f64> = shares.iter().map(|s| want as f64 * s).collect();
    let mut n = [0usize; 3];
    for (k, e) in exact.iter().enumerate() {
        n[k] = e.floor() as usize;
    }
    let mut order: Vec<usize> = (0..3).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
    let mut left = want.saturating_sub(n.iter().sum());
    for k in order.into_iter().cycle().take(3 * want.max(1)) {
        if left == 0 {
            break;
        }
        if shares[k] > 0.0 {
            n[k] += 1;
            left -= 1;
        }
    }
    n
}

/// The sensitivity figure: how many of the accepted examples would also pass every filter under
/// `scope = "full"` (whole example against whole seed examples, and against the accepted examples before
/// it), with the would-fail count per filter.
fn full_text_sensitivity(
    f: &crate::config::Filters,
    seed_fields: &[Fields],
    accepted: &[SyntheticRow],
    seed_full: &tch::Tensor,
    bert: &crate::model::bert::Bert,
    seed: u64,
) -> Result<Sensitivity, PipelineError> {
    let mut state = FilterState::new(f, Scope::Full, seed_fields, seed);
    let cos = if accepted.is_empty() {
        Vec::new()
    } else {
        let texts: Vec<String> = accepted.iter().map(SyntheticRow::full_text).collect();
        max_cosine(&bert.embed(&texts, f.embed_batch_size, 256)?, seed_full, 4096)
    };
    let mut pass = 0usize;
    let mut would_fail: BTreeMap<String, usize> = BTreeMap::new();
    for (a, c) in accepted.iter().zip(cos) {
        let fails = state.check(a.strategy, a.fields(), &[(Part::Full, c)]).failures(f);
        for (flt, _) in &fails {
            *would_fail.entry(flt.name().into()).or_default() += 1;
        }
        pass += usize::from(fails.is_empty());
        state.accept(a.strategy, a.fields());
    }
    let pass_rate = (!accepted.is_empty()).then(|| round6(pass as f64 / accepted.len() as f64));
    Ok(Sensitivity { accepted: accepted.len(), would_pass: pass, pass_rate, would_fail })
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

/// Whether a generated field is unusable: empty, no letter or digit, or one word repeated.
fn degenerate(field: &str) -> bool {
    field.trim().is_empty() || crate::data::stats::is_degenerate(field)
}

#[cfg(test)]
mod tests {
    use super::allocate;

    #[test]
    fn a_round_asks_for_exactly_what_it_wants_and_never_for_nothing() {
        let shares = [0.4, 0.3, 0.3];
        // Rounding each share alone asked for 0 + 0 + 0 at want = 1 (a round that never ends) and
        // 1 + 1 + 1 at want = 2.
        assert_eq!(allocate(1, &shares), [1, 0, 0]);
        assert_eq!(allocate(2, &shares), [1, 1, 0]);
        assert_eq!(allocate(10, &shares), [4, 3, 3]);
        assert_eq!(allocate(7, &shares), [3, 2, 2]);
        assert_eq!(allocate(5, &[0.0, 0.5, 0.5]), [0, 3, 2]);
        for want in 1..200 {
            assert_eq!(allocate(want, &shares).iter().sum::<usize>(), want);
        }
    }
}
