//! Stage bodies after `prepare` and `base-model`: contaminate, generator, synthesize, train-A/B/C,
//! evaluate-A/B/C. Each reads only files earlier stages recorded and writes under its own folder of the
//! run directory; `pipeline` records each as a ledger entry.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use tch::Device;

use crate::config::Config;
use crate::data::{self, stats::round6, DataError, QaExample};
use crate::ledger::{Root, Roots, StageOutcome};
use crate::metrics::squad;
use crate::model::adapter::{load_t5_lora, load_with_adapter, save_adapter};
use crate::model::lora::LoraConfig;
use crate::model::train::{parameter_count, train, Example, Recipe, TrainProgress};
use crate::model::{generate, GenerateOptions, LoadedT5, ModelError};
use crate::pipeline::{base_model_dir, device_of, PipelineError};
use crate::synth::filters::{Filter, FilterState};
use crate::synth::{self, ContaminatedRow, Pair, Strategy, SyntheticRow};

fn merr(e: ModelError) -> PipelineError {
    PipelineError::Usage(e.to_string())
}

fn run_dir(roots: &Roots) -> &Path {
    roots.run.as_deref().expect("stages run with a run root")
}

fn write_json(path: &Path, v: &Value) -> Result<(), PipelineError> {
    std::fs::write(path, format!("{}\n", serde_json::to_string_pretty(v).expect("json")))
        .map_err(|source| DataError::Io { path: path.to_owned(), source }.into())
}

fn mkdir(path: &Path) -> Result<(), PipelineError> {
    std::fs::create_dir_all(path).map_err(|source| DataError::Io { path: path.to_owned(), source }.into())
}

/// Any row with context, question and answer (human, contaminated and synthetic files alike).
#[derive(Debug, Clone, Deserialize)]
pub struct QaLike {
    pub id: String,
    pub context: String,
    pub question: String,
    pub answer: String,
}

fn lora_of(cfg: &Config) -> LoraConfig {
    LoraConfig {
        r: cfg.lora.r,
        alpha: cfg.lora.alpha,
        dropout: cfg.lora.dropout,
        targets: cfg
            .lora
            .targets
            .iter()
            .map(|t| serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())
            .collect(),
    }
}

/// Generates one text per prompt, batched by length (deterministic order), each batch sampling from its
/// own seeded stream (`seed` + batch index).
pub fn generate_texts(
    m: &LoadedT5,
    prompts: &[String],
    opts: &GenerateOptions,
    batch: usize,
    max_input: usize,
    progress: Option<&dyn TrainProgress>,
) -> Result<Vec<String>, PipelineError> {
    let ids: Vec<Vec<i64>> = prompts.iter().map(|p| m.tokenizer.encode(p, Some(max_input))).collect::<Result<_, _>>().map_err(merr)?;
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| (ids[i].len(), i));
    let mut out = vec![String::new(); ids.len()];
    for (k, chunk) in order.chunks(batch.max(1)).enumerate() {
        let rows: Vec<Vec<i64>> = chunk.iter().map(|&i| ids[i].clone()).collect();
        let o = GenerateOptions { seed: opts.seed.wrapping_add(k as u64), ..opts.clone() };
        let gen = generate(&m.model, &rows, &o);
        for (j, &i) in chunk.iter().enumerate() {
            out[i] = m.tokenizer.decode(&gen[j]).map_err(merr)?.trim().to_owned();
        }
        if let Some(p) = progress {
            p.items(((k + 1) * batch.max(1)).min(ids.len()), ids.len(), "generated");
        }
    }
    Ok(out)
}

/// The `contaminate` stage: the base model answers 80% of the train questions itself and paraphrases
/// the human answer for the rest (temperature 0.3). Empty outputs are retried with the next seed, then
/// recorded as empty — never dropped.
pub fn contaminate(cfg: &Config, roots: &Roots, seed: u64, progress: &dyn TrainProgress) -> Result<StageOutcome, PipelineError> {
    let run = run_dir(roots);
    let human: Vec<QaExample> = data::read_jsonl_as(&run.join("prepare/human_train.jsonl"))?;
    let device = device_of(cfg)?;
    let m = crate::model::load_t5(&base_model_dir(cfg, roots), device).map_err(merr)?;
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
        .map(|(e, k)| if *k == "ai" { synth::answer_prompt(&e.context, &e.question) } else { synth::paraphrase_prompt(&e.question, &e.answer) })
        .collect();
    let opts = GenerateOptions { max_new_tokens: c.max_new_tokens, min_new_tokens: 0, temperature: c.temperature, top_p: c.top_p, seed };
    let mut answers = generate_texts(&m, &prompts, &opts, c.batch_size, cfg.train.max_input_tokens, Some(progress))?;
    let mut attempts = vec![1usize; human.len()];
    for retry in 1..=c.empty_retries {
        let empty: Vec<usize> = (0..answers.len()).filter(|&i| answers[i].is_empty()).collect();
        if empty.is_empty() {
            break;
        }
        let p: Vec<String> = empty.iter().map(|&i| prompts[i].clone()).collect();
        let o = GenerateOptions { seed: seed.wrapping_add(1_000_003 * retry as u64), ..opts.clone() };
        let again = generate_texts(&m, &p, &o, c.batch_size, cfg.train.max_input_tokens, None)?;
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
    let dir = run.join("contaminate");
    mkdir(&dir)?;
    data::write_jsonl(&dir.join("ai_contaminated.jsonl"), &rows)?;
    let words = |s: &str| s.split_whitespace().count() as f64;
    let n = rows.len().max(1) as f64;
    let differ = rows.iter().zip(&human).filter(|(r, h)| squad::normalize(&r.answer) != squad::normalize(&h.answer)).count();
    let per_kind = |k: &str| rows.iter().filter(|r| r.kind == k).count();
    let per_kind_differ = |k: &str| {
        rows.iter().zip(&human).filter(|(r, h)| r.kind == k && squad::normalize(&r.answer) != squad::normalize(&h.answer)).count()
    };
    Ok(StageOutcome {
        outputs: vec![(Root::Run, "contaminate/ai_contaminated.jsonl".into())],
        metrics: json!({
            "rows": rows.len(),
            "ai": per_kind("ai"),
            "paraphrase": per_kind("paraphrase"),
            "answer_difference_rate": round6(differ as f64 / n),
            "answer_difference_rate_ai": round6(per_kind_differ("ai") as f64 / per_kind("ai").max(1) as f64),
            "answer_difference_rate_paraphrase": round6(per_kind_differ("paraphrase") as f64 / per_kind("paraphrase").max(1) as f64),
            "mean_answer_words_before": round6(human.iter().map(|h| words(&h.answer)).sum::<f64>() / n),
            "mean_answer_words_after": round6(rows.iter().map(|r| words(&r.answer)).sum::<f64>() / n),
            "empty_outputs": rows.iter().filter(|r| r.answer.is_empty()).count(),
            "retried": attempts.iter().filter(|&&a| a > 1).count(),
            "temperature": c.temperature,
        }),
    })
}

fn pairs_to_examples(m: &LoadedT5, pairs: &[Pair], cfg: &Config) -> Result<Vec<Example>, PipelineError> {
    pairs
        .iter()
        .map(|p| {
            Ok(Example {
                input_ids: m.tokenizer.encode(&p.input, Some(cfg.train.max_input_tokens)).map_err(merr)?,
                labels: m.tokenizer.encode(&p.target, Some(cfg.train.max_target_tokens)).map_err(merr)?,
            })
        })
        .collect()
}

/// Trains a LoRA adapter with the seed's recipe and writes it (peft format) with `train_metrics.json`
/// (without wall time, which goes to the entry so the file reproduces bit for bit).
#[allow(clippy::too_many_arguments)]
fn train_adapter(
    cfg: &Config,
    roots: &Roots,
    seed: u64,
    train_pairs: &[Pair],
    val_pairs: &[Pair],
    epochs: usize,
    out_rel: &str,
    progress: &dyn TrainProgress,
) -> Result<Value, PipelineError> {
    let device = device_of(cfg)?;
    let lora = lora_of(cfg);
    tch::manual_seed(seed as i64);
    let base = base_model_dir(cfg, roots);
    let (m, lora_vs) = load_t5_lora(&base, device, &lora, None).map_err(merr)?;
    let train_ex = pairs_to_examples(&m, train_pairs, cfg)?;
    let val_ex = pairs_to_examples(&m, val_pairs, cfg)?;
    let bf16 = device.is_cuda() && cfg.runtime.precision == crate::config::Precision::Bf16;
    let mut recipe = Recipe::from_config(&cfg.train, seed, bf16);
    recipe.epochs = epochs;
    let total = parameter_count(&m.vs) + parameter_count(&lora_vs);
    let report = train(&m.model, &lora_vs, total, &train_ex, &val_ex, &recipe, m.tokenizer.pad_id, progress).map_err(merr)?;
    let dir = run_dir(roots).join(out_rel);
    save_adapter(&lora_vs, &lora, "base-model", &dir.join("adapter")).map_err(merr)?;
    let mut v = serde_json::to_value(&report).expect("json");
    let wall = v.as_object_mut().and_then(|o| o.remove("wall_seconds"));
    v["examples"] = json!(train_pairs.len());
    v["val_examples"] = json!(val_pairs.len());
    write_json(&dir.join("train_metrics.json"), &v)?;
    v["wall_seconds"] = wall.unwrap_or(Value::Null);
    Ok(v)
}

/// The `generator` stage: LoRA fine-tuning on the four seed-supervised tasks of the human train split.
pub fn generator(cfg: &Config, roots: &Roots, seed: u64, progress: &dyn TrainProgress) -> Result<StageOutcome, PipelineError> {
    let run = run_dir(roots);
    let human: Vec<QaExample> = data::read_jsonl_as(&run.join("prepare/human_train.jsonl"))?;
    let pairs = synth::generator_pairs(&human, cfg.generator.max_pairs_per_task, seed);
    let dir = run.join("generator");
    mkdir(&dir)?;
    data::write_jsonl(&dir.join("generator_train.jsonl"), &pairs)?;
    // No validation set: the generator sees the train split only, and keeps its last epoch.
    let mut metrics = train_adapter(cfg, roots, seed, &pairs, &[], cfg.generator.epochs, "generator", progress)?;
    let mut per_task: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pairs {
        *per_task.entry(p.task.clone()).or_default() += 1;
    }
    metrics["pairs_per_task"] = json!(per_task);
    Ok(StageOutcome {
        outputs: vec![
            (Root::Run, "generator/generator_train.jsonl".into()),
            (Root::Run, "generator/adapter".into()),
            (Root::Run, "generator/train_metrics.json".into()),
        ],
        metrics,
    })
}

/// The `synthesize` stage: sample complete examples with the generator, filter, repeat until the target
/// count has passed or the attempt cap is hit.
pub fn synthesize(cfg: &Config, roots: &Roots, seed: u64, progress: &dyn TrainProgress) -> Result<StageOutcome, PipelineError> {
    let run = run_dir(roots);
    let human: Vec<QaExample> = data::read_jsonl_as(&run.join("prepare/human_train.jsonl"))?;
    let device = device_of(cfg)?;
    let (m, _lora) = load_with_adapter(&base_model_dir(cfg, roots), &run.join("generator/adapter"), device).map_err(merr)?;
    let s = &cfg.synth;
    let f = &cfg.filters;
    let target = (human.len() as f64 * s.multiplier).round() as usize;
    let cap = (target as f64 * s.max_attempts_factor).ceil() as usize;
    let shares = [s.share_question_variants, s.share_context_augmentation, s.share_answer_expansion];
    let seed_texts: Vec<String> = human.iter().map(|e| format!("{} {} {}", e.context, e.question, e.answer)).collect();
    let mut state = FilterState::new(f, &seed_texts, seed);
    let bert = crate::model::bert::load_minilm(None, device).map_err(merr)?;
    let seed_emb = bert.embed(&seed_texts, f.embed_batch_size, 256).map_err(merr)?; // [n_seed, 384]

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
            *first_fail.entry("malformed").or_default() += 1;
            *would_fail.entry("malformed").or_default() += 1;
            rejected.push(json!({"strategy": strat, "seed_id": sid, "output": text, "filter": "malformed", "value": Value::Null}));
        }
        if cands.is_empty() {
            continue;
        }
        let texts: Vec<String> = cands.iter().map(SyntheticRow::full_text).collect();
        let emb = bert.embed(&texts, f.embed_batch_size, 256).map_err(merr)?;
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
    let dir = run.join("synthesize");
    mkdir(&dir)?;
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
    let mut filters_order: Vec<&str> = vec!["malformed"];
    filters_order.extend(Filter::ALL.iter().map(|f| f.name()));
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
            "thresholds": {
                "ngram_n": f.ngram_n, "ngram_max_overlap": f.ngram_max_overlap, "semantic_max_cosine": f.semantic_max_cosine,
                "minhash_shingle_words": f.minhash_shingle_words, "minhash_permutations": f.minhash_permutations,
                "minhash_bands": f.minhash_bands, "minhash_rows": f.minhash_rows, "minhash_jaccard": f.minhash_jaccard,
                "lsh_threshold_implied": round6((1.0 / f.minhash_bands as f64).powf(1.0 / f.minhash_rows as f64)),
                "min_words": f.min_words, "max_words": f.max_words,
            },
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

/// Which file trains which model.
pub fn training_file(model: char) -> &'static str {
    match model {
        'A' => "prepare/human_train.jsonl",
        'B' => "contaminate/ai_contaminated.jsonl",
        _ => "synthesize/synthetic.jsonl",
    }
}

fn qa_pairs(rows: &[QaLike], task: &str) -> Vec<Pair> {
    rows.iter()
        .map(|r| Pair { input: synth::answer_prompt(&r.context, &r.question), target: r.answer.clone(), task: task.into(), seed_id: r.id.clone() })
        .collect()
}

/// `train-A`, `train-B`, `train-C`: the seed's recipe on human / contaminated / synthetic data, best
/// epoch by loss on the human validation split.
pub fn train_model(cfg: &Config, roots: &Roots, seed: u64, model: char, progress: &dyn TrainProgress) -> Result<StageOutcome, PipelineError> {
    let run = run_dir(roots);
    let rows: Vec<QaLike> = data::read_jsonl_as(&run.join(training_file(model)))?;
    let val: Vec<QaLike> = data::read_jsonl_as(&run.join("prepare/human_val.jsonl"))?;
    let out = format!("train-{model}");
    if rows.is_empty() {
        // Nothing passed the filters (a shortfall synthesis reports): the adapter stays at its
        // initialisation (lora_B = 0), so this model *is* the base model, and the entry says so.
        let device = device_of(cfg)?;
        let lora = lora_of(cfg);
        tch::manual_seed(seed as i64);
        let (_m, lora_vs) = load_t5_lora(&base_model_dir(cfg, roots), device, &lora, None).map_err(merr)?;
        let dir = run.join(&out);
        save_adapter(&lora_vs, &lora, "base-model", &dir.join("adapter")).map_err(merr)?;
        let v = json!({"examples": 0, "trained": false, "reason": format!("{} holds no examples", training_file(model)),
                       "optimizer_steps": 0, "val_loss_per_epoch": [], "best_epoch": 0, "loss_curve": []});
        write_json(&dir.join("train_metrics.json"), &v)?;
        return Ok(StageOutcome {
            outputs: vec![(Root::Run, format!("{out}/adapter")), (Root::Run, format!("{out}/train_metrics.json"))],
            metrics: v,
        });
    }
    let mut metrics = train_adapter(cfg, roots, seed, &qa_pairs(&rows, "train"), &qa_pairs(&val, "val"), cfg.train.epochs, &out, progress)?;
    metrics["trained"] = json!(true);
    Ok(StageOutcome {
        outputs: vec![(Root::Run, format!("{out}/adapter")), (Root::Run, format!("{out}/train_metrics.json"))],
        metrics,
    })
}

/// A row of `predictions.jsonl`.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct Prediction {
    pub id: String,
    pub prediction: String,
    pub reference: String,
}

/// `evaluate-A/B/C`: greedy predictions on the human test split; every metric per example
/// (`scores.jsonl`) and as a mean with a bootstrap 95% interval.
pub fn evaluate(cfg: &Config, roots: &Roots, seed: u64, model: char, progress: &dyn TrainProgress) -> Result<StageOutcome, PipelineError> {
    let run = run_dir(roots);
    let test: Vec<QaExample> = data::read_jsonl_as(&run.join("prepare/human_test.jsonl"))?;
    let device = device_of(cfg)?;
    let (m, _l) = load_with_adapter(&base_model_dir(cfg, roots), &run.join(format!("train-{model}/adapter")), device).map_err(merr)?;
    let prompts: Vec<String> = test.iter().map(|e| synth::answer_prompt(&e.context, &e.question)).collect();
    let opts = GenerateOptions { max_new_tokens: cfg.eval.max_new_tokens, ..Default::default() };
    let preds = generate_texts(&m, &prompts, &opts, cfg.eval.batch_size, cfg.train.max_input_tokens, Some(progress))?;
    let refs: Vec<String> = test.iter().map(|e| e.answer.clone()).collect();
    use crate::metrics::Metric;
    let mut per = crate::metrics::lexical(&preds, &refs, &[Metric::Em, Metric::F1, Metric::Rouge], cfg.eval.rouge_stemmer);
    let bert_dir = (!cfg.eval.bertscore_model.is_empty()).then(|| roots.workspace.clone().expect("workspace").join(&cfg.eval.bertscore_model));
    let bert = crate::model::bert::load_minilm(bert_dir.as_deref(), device).map_err(merr)?;
    let bopts = crate::metrics::bertscore::BertScoreOptions { layer: cfg.eval.bertscore_layer, ..Default::default() };
    let bs = crate::metrics::bertscore::bertscore(&bert, &preds, &refs, &bopts).map_err(merr)?;
    per.bertscore_precision = bs.precision.clone();
    per.bertscore_recall = bs.recall.clone();
    per.bertscore_f1 = bs.f1.clone();
    let dir = run.join(format!("evaluate-{model}"));
    mkdir(&dir)?;
    let rows: Vec<Prediction> = test.iter().zip(&preds).map(|(e, p)| Prediction { id: e.id.clone(), prediction: p.clone(), reference: e.answer.clone() }).collect();
    data::write_jsonl(&dir.join("predictions.jsonl"), &rows)?;
    let score_rows: Vec<Value> = (0..test.len())
        .map(|i| {
            json!({"id": test[i].id, "em": per.em[i], "f1": per.f1[i], "rouge1": per.rouge1[i], "rouge2": per.rouge2[i],
                   "rougeL": per.rouge_l[i], "bertscore_f1": per.bertscore_f1[i]})
        })
        .collect();
    data::write_jsonl(&dir.join("scores.jsonl"), &score_rows)?;
    let mut means = serde_json::Map::new();
    for (k, (name, v)) in
        [("em", &per.em), ("f1", &per.f1), ("rouge1", &per.rouge1), ("rouge2", &per.rouge2), ("rougeL", &per.rouge_l), ("bertscore_f1", &per.bertscore_f1)]
            .iter()
            .enumerate()
    {
        let e = crate::metrics::estimate(v, cfg.eval.bootstrap_resamples, seed.wrapping_add(k as u64));
        means.insert((*name).into(), json!({"mean": round6(e.mean), "ci95": [round6(e.ci95.0), round6(e.ci95.1)]}));
    }
    Ok(StageOutcome {
        outputs: vec![(Root::Run, format!("evaluate-{model}/predictions.jsonl")), (Root::Run, format!("evaluate-{model}/scores.jsonl"))],
        metrics: json!({
            "model": model.to_string(),
            "n": test.len(),
            "metrics": means,
            "bertscore_model": bs.model,
            "bertscore_layer": bs.layer,
            "rouge_stemmer": cfg.eval.rouge_stemmer,
            "empty_predictions": preds.iter().filter(|p| p.is_empty()).count(),
        }),
    })
}
