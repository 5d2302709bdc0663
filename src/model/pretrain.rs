//! The tiny and smoke profiles' own base model: no pretrained weights exist offline, so the pipeline
//! trains a T5-style Unigram tokenizer on the human train split (the `tokenizers` crate), initialises a
//! small T5 of the flan-t5 architecture from the stage seed, and pretrains it with T5's span-corruption
//! objective (Raffel et al., 2020, §3.1.4) on the train split's contexts — never val or test text.
//!
//! Span corruption: of a sequence of n tokens, round(n · noise_density) are masked in
//! round(masked / mean_span_length) spans whose lengths, and those of the kept stretches between them,
//! are random segmentations (ChaCha8, seeded); each masked span becomes one sentinel `<extra_id_k>` in the
//! input, and the target lists each sentinel followed by the tokens it hides, then `</s>`.
//!
//! ```text
//! hsx run --config configs/tiny.toml --ledger ledger/exp-42.json --only base-model
//! ```
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::path::Path;
use tch::{nn, Device, Tensor};
use tokenizers::models::unigram::{Unigram, UnigramTrainerBuilder};
use tokenizers::normalizers::{Replace, Sequence as NormSeq, NFKC};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, NormalizerWrapper, TokenizerImpl};

use super::train::{train, Example, Recipe, TrainProgress, TrainReport};
use super::{file_err, ModelError, T5Config, T5};

/// Trains a T5-style Unigram tokenizer: `<pad>`=0, `</s>`=1, `<unk>`=2, the learned pieces, then
/// `extra_ids` sentinels with `<extra_id_0>` last (T5's order). The trainer runs single-threaded, and the
/// learned pieces are re-sorted by (score rounded to 1e-3, piece): the trainer gives the characters it
/// must keep near-equal scores (steps of 1e-4) in hash-map order, which differs run to run.
pub fn train_tokenizer(
    texts: &[String],
    vocab_size: usize,
    extra_ids: usize,
) -> Result<tokenizers::Tokenizer, ModelError> {
    build_tokenizer(texts, vocab_size, extra_ids, false)
}

/// [`train_tokenizer`], then filled up to exactly `vocab_size` entries with placeholder pieces that no
/// text can match (a private-use character and a number, at the lowest score), so that the embedding and
/// head have the real model's row count when a corpus is too small to learn that many pieces.
pub fn train_tokenizer_filled(
    texts: &[String],
    vocab_size: usize,
    extra_ids: usize,
) -> Result<tokenizers::Tokenizer, ModelError> {
    build_tokenizer(texts, vocab_size, extra_ids, true)
}

/// The first character of every placeholder piece of [`train_tokenizer_filled`] (Unicode private use).
pub const PLACEHOLDER_MARK: char = '\u{E000}';

fn build_tokenizer(
    texts: &[String],
    vocab_size: usize,
    extra_ids: usize,
    fill: bool,
) -> Result<tokenizers::Tokenizer, ModelError> {
    let err = |m: String| ModelError::Config(format!("tokenizer training: {m}"));
    tokenizers::utils::parallelism::set_parallelism(false);
    let specials = ["<pad>", "</s>", "<unk>"];
    let mut trainer = UnigramTrainerBuilder::default()
        .show_progress(false)
        .vocab_size((vocab_size - extra_ids) as u32)
        .special_tokens(specials.iter().map(|s| AddedToken::from(*s, true)).collect())
        .unk_token(Some("<unk>".into()))
        .max_piece_length(16)
        .build()
        .map_err(|e| err(e.to_string()))?;
    let normalizer: NormalizerWrapper = NormSeq::new(vec![
        NFKC.into(),
        Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(" {2,}".into()), " ")
            .map_err(|e| err(e.to_string()))?
            .into(),
    ])
    .into();
    let metaspace = Metaspace::new('\u{2581}', PrependScheme::Always, true);
    let mut tk: TokenizerImpl<Unigram, NormalizerWrapper, Metaspace, TemplateProcessing, Metaspace> =
        TokenizerImpl::new(Unigram::default());
    tk.with_normalizer(Some(normalizer.clone()));
    tk.with_pre_tokenizer(Some(metaspace.clone()));
    tk.train(&mut trainer, texts.iter().map(String::as_str)).map_err(|e| err(e.to_string()))?;

    // Canonical order: specials, then pieces by (score desc, piece), scores rounded.
    let learned: Vec<(String, f64)> = tk.get_model().iter().map(|(p, s)| (p.clone(), *s)).collect();
    let mut pieces: Vec<(String, f64)> = learned
        .into_iter()
        .filter(|(p, _)| !specials.contains(&p.as_str()))
        .map(|(p, s)| (p, (s * 1e3).round() / 1e3))
        .collect();
    pieces.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal).then_with(|| a.0.cmp(&b.0)));
    if fill {
        let want = vocab_size.saturating_sub(extra_ids + specials.len());
        let floor = pieces.iter().map(|p| p.1).fold(0.0f64, f64::min) - 10.0;
        let mut k = 0usize;
        while pieces.len() < want {
            pieces.push((format!("{PLACEHOLDER_MARK}{k}"), floor));
            k += 1;
        }
    }
    let mut vocab: Vec<(String, f64)> = specials.iter().map(|s| (s.to_string(), 0.0)).collect();
    vocab.extend(pieces);
    let sentinels: Vec<String> = (0..extra_ids).rev().map(|i| format!("<extra_id_{i}>")).collect();
    vocab.extend(sentinels.iter().map(|s| (s.clone(), 0.0)));
    let model = Unigram::from(vocab, Some(2), false).map_err(|e| err(e.to_string()))?;
    let post = TemplateProcessing::builder()
        .try_single("$A </s>")
        .and_then(|b| b.try_pair("$A </s> $B </s>"))
        .map_err(|e| err(e.to_string()))?
        .special_tokens(vec![("</s>", 1u32)])
        .build()
        .map_err(|e| err(e.to_string()))?;
    let mut out: TokenizerImpl<Unigram, NormalizerWrapper, Metaspace, TemplateProcessing, Metaspace> =
        TokenizerImpl::new(model);
    out.with_normalizer(Some(normalizer));
    out.with_pre_tokenizer(Some(metaspace.clone()));
    out.with_post_processor(Some(post));
    out.with_decoder(Some(metaspace));
    let special: Vec<AddedToken> = specials
        .iter()
        .chain(sentinels.iter().map(String::as_str).collect::<Vec<_>>().iter())
        .map(|s| AddedToken::from(s.to_string(), true))
        .collect();
    out.add_special_tokens(&special);
    let json = out.to_string(false).map_err(|e| err(e.to_string()))?;
    json.parse::<tokenizers::Tokenizer>().map_err(|e| err(e.to_string()))
}

/// The T5 config of a scratch model (flan-t5 architecture: gated-gelu, untied head).
pub fn scratch_config(arch: &crate::config::T5Arch, vocab_size: usize) -> T5Config {
    T5Config {
        vocab_size,
        d_model: arch.d_model,
        d_kv: arch.d_kv,
        d_ff: arch.d_ff,
        num_layers: arch.num_layers,
        num_decoder_layers: Some(arch.num_decoder_layers),
        num_heads: arch.num_heads,
        relative_attention_num_buckets: arch.relative_attention_num_buckets,
        relative_attention_max_distance: arch.relative_attention_max_distance,
        dropout_rate: arch.dropout_rate,
        layer_norm_epsilon: 1e-6,
        feed_forward_proj: "gated-gelu".into(),
        tie_word_embeddings: false,
        scale_decoder_outputs: Some(false),
        pad_token_id: 0,
        eos_token_id: 1,
        decoder_start_token_id: 0,
        model_type: Some("t5".into()),
        is_encoder_decoder: Some(true),
        dense_act_fn: None,
        is_gated_act: None,
    }
}

/// Re-initialises every variable as transformers' `T5PreTrainedModel._init_weights` does (factor 1):
/// embeddings N(0, 1); q N(0, (d_model·d_kv)^-½); k, v N(0, d_model^-½); o N(0, (heads·d_kv)^-½);
/// wi N(0, d_model^-½); wo N(0, d_ff^-½); relative bias N(0, d_model^-½); lm_head N(0, d_model^-½);
/// layer norms 1. Draws from libtorch's generator, which the caller seeds.
pub fn init_like_transformers(vs: &nn::VarStore, cfg: &T5Config) {
    let d = cfg.d_model as f64;
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut t) in vars {
            let std = if name.ends_with("layer_norm.weight") {
                let _ = t.fill_(1.0);
                continue;
            } else if name == "shared.weight" {
                1.0
            } else if name.ends_with(".q.weight") {
                (d * cfg.d_kv as f64).powf(-0.5)
            } else if name.ends_with(".o.weight") {
                ((cfg.num_heads * cfg.d_kv) as f64).powf(-0.5)
            } else if name.ends_with(".wo.weight") {
                (cfg.d_ff as f64).powf(-0.5)
            } else {
                d.powf(-0.5)
            };
            let _ = t.normal_(0.0, std);
        }
    });
}

/// Writes `config.json` in the layout transformers writes for flan-t5 (`T5ForConditionalGeneration`,
/// gated-GELU, untied head), which [`super::read_t5_config`] reads back.
pub fn write_hf_config(cfg: &T5Config, root: &Path, out: &Path) -> Result<(), ModelError> {
    let mut cfg_text = serde_json::to_string_pretty(&json!({
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": cfg.vocab_size, "d_model": cfg.d_model, "d_kv": cfg.d_kv, "d_ff": cfg.d_ff,
        "num_layers": cfg.num_layers, "num_decoder_layers": cfg.num_decoder_layers, "num_heads": cfg.num_heads,
        "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
        "relative_attention_max_distance": cfg.relative_attention_max_distance,
        "dropout_rate": cfg.dropout_rate, "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "feed_forward_proj": cfg.feed_forward_proj, "dense_act_fn": "gelu_new", "is_gated_act": true,
        "tie_word_embeddings": false, "scale_decoder_outputs": false, "is_encoder_decoder": true,
        "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
    }))
    .expect("json");
    cfg_text.push('\n');
    Ok(crate::fsx::write(root, &out.join("config.json"), cfg_text.as_bytes())?)
}

/// Writes every variable of `vs` to `out/model.safetensors` under its (transformers) name, in name order.
fn write_weights(vs: &nn::VarStore, root: &Path, out: &Path) -> Result<(), ModelError> {
    let mut vars: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(k, t)| (k, t.detach().to_device(Device::Cpu))).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    crate::fsx::place_file(root, &out.join("model.safetensors"), |at| {
        Ok::<_, ModelError>(Tensor::write_safetensors(&vars, at)?)
    })
}

/// Saves `tok` as `out/tokenizer.json` below `root`, through [`crate::fsx::place_file`].
fn save_tokenizer(tok: &tokenizers::Tokenizer, root: &Path, out: &Path) -> Result<(), ModelError> {
    crate::fsx::place_file(root, &out.join("tokenizer.json"), |at| {
        tok.save(at, false).map_err(|e| file_err(out, e.to_string()))
    })
}

/// What [`build_random_model`] wrote.
pub struct RandomModel {
    pub tokenizer_pieces_learnt: usize,
    pub tokenizer_size: usize,
}

/// Writes a T5 of `arch` with random weights as an HF directory in `out`: `config.json` (vocabulary
/// `vocab_size`), `tokenizer.json` (learnt from `texts`, filled to `tok_spec.vocab_size`) and
/// `model.safetensors` (every tensor under transformers' names, initialised as transformers does, from
/// `seed`). The rehearsal's base model: it is loaded back through [`super::load_t5`] like flan-t5-base.
pub fn build_random_model(
    texts: &[String],
    arch: &crate::config::T5Arch,
    vocab_size: usize,
    tok_spec: &crate::config::TokenizerSpec,
    seed: u64,
    root: &Path,
    out: &Path,
) -> Result<RandomModel, ModelError> {
    crate::fsx::create_dirs(root, out)?;
    let tok = train_tokenizer_filled(texts, tok_spec.vocab_size, tok_spec.extra_ids)?;
    let tokenizer_size = tok.get_vocab_size(true);
    let tokenizer_pieces_learnt = tok.get_vocab(true).keys().filter(|p| !p.starts_with(PLACEHOLDER_MARK)).count();
    if tokenizer_size > vocab_size {
        return Err(ModelError::Config(format!(
            "the tokenizer has {tokenizer_size} entries, more than model.vocab_size = {vocab_size}"
        )));
    }
    save_tokenizer(&tok, root, out)?;
    let cfg = scratch_config(arch, vocab_size);
    write_hf_config(&cfg, root, out)?;
    tch::manual_seed(seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = T5::new(&vs.root(), &cfg, None)?;
    init_like_transformers(&vs, &cfg);
    write_weights(&vs, root, out)?;
    Ok(RandomModel { tokenizer_pieces_learnt, tokenizer_size })
}

/// T5's random span corruption of `tokens` (no `</s>`): (inputs, targets), both ending in `</s>`.
pub fn span_corrupt(
    tokens: &[i64],
    density: f64,
    mean_span: f64,
    sentinel0: i64,
    eos: i64,
    rng: &mut ChaCha8Rng,
) -> (Vec<i64>, Vec<i64>) {
    let n = tokens.len();
    let noise = ((n as f64 * density).round() as usize).clamp(1, n.saturating_sub(1).max(1));
    let spans = ((noise as f64 / mean_span).round() as usize).clamp(1, noise);
    let segment = |total: usize, parts: usize, rng: &mut ChaCha8Rng| -> Vec<usize> {
        // A random composition of `total` into `parts` positive lengths.
        let mut cuts: Vec<usize> = (1..total).collect();
        cuts.shuffle(rng);
        let mut chosen: Vec<usize> = cuts.into_iter().take(parts - 1).collect();
        chosen.sort_unstable();
        let mut out = Vec::with_capacity(parts);
        let mut prev = 0;
        for c in chosen.into_iter().chain(std::iter::once(total)) {
            out.push(c - prev);
            prev = c;
        }
        out
    };
    let keep_total = n - noise;
    let spans = spans.min(keep_total.max(1));
    let noise_lens = segment(noise, spans, rng);
    let keep_lens = if keep_total >= spans { segment(keep_total, spans, rng) } else { vec![keep_total] };
    let (mut inp, mut tgt) = (Vec::new(), Vec::new());
    let mut pos = 0;
    for (k, (&keep, &mask)) in keep_lens.iter().zip(noise_lens.iter()).enumerate() {
        inp.extend_from_slice(&tokens[pos..pos + keep]);
        pos += keep;
        let sentinel = sentinel0 - k as i64;
        inp.push(sentinel);
        tgt.push(sentinel);
        tgt.extend_from_slice(&tokens[pos..pos + mask]);
        pos += mask;
    }
    inp.extend_from_slice(&tokens[pos..]);
    inp.push(eos);
    tgt.push(eos);
    (inp, tgt)
}

pub struct PretrainResult {
    pub report: TrainReport,
    pub initial_loss: f64,
    pub vocab_size: usize,
    pub examples: usize,
    /// The held-out slice's span-corruption loss before and after pretraining; None when
    /// `heldout_share` is 0 (or the corpus has a single document).
    pub heldout: Option<HeldOut>,
}

/// The held-out slice of the pretraining corpus and its eval-mode span-corruption loss (token
/// cross-entropy, mean over every target token: sentinels, hidden tokens and `</s>`), measured with the
/// same corruption masks on the initialised model and on the model after the last optimiser step.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HeldOut {
    /// `model.pretrain.heldout_share`: the share of the corpus's documents held out.
    pub share: f64,
    /// Documents (distinct contexts, question texts) held out of tokenizer training and pretraining.
    pub documents: usize,
    /// Their chunks of at most the pretraining chunk length (a chunk equal to a training chunk is dropped).
    pub chunks: usize,
    /// Target tokens the losses average over.
    pub target_tokens: usize,
    /// Before the first optimiser step (the initialised weights).
    pub loss_start: f64,
    /// After the last optimiser step.
    pub loss_end: f64,
}

/// The documents held out of pretraining: round(share · n) of the `n` documents (at least one when
/// `share` > 0, never all of them), chosen by a ChaCha8 shuffle seeded with `seed`; sorted.
pub fn heldout_documents(n: usize, share: f64, seed: u64) -> Vec<usize> {
    if n < 2 || share.is_nan() || share <= 0.0 {
        return Vec::new();
    }
    let k = ((n as f64 * share).round() as usize).clamp(1, n - 1);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut held: Vec<usize> = order.into_iter().take(k).collect();
    held.sort_unstable();
    held
}

/// The held-out slice's own random streams (selection and corruption masks), apart from training's.
const HELDOUT_SELECT: u64 = 0x6865_6c64_2d6f_7574; // "held-out"
const HELDOUT_MASKS: u64 = 0x6d61_736b_732d_686f; // "masks-ho"

/// Each text's token ids (no `</s>`) cut into chunks of `raw_len` (a last chunk under 4 tokens dropped).
fn chunk_texts(tok: &tokenizers::Tokenizer, texts: &[&String], raw_len: usize) -> Result<Vec<Vec<i64>>, ModelError> {
    let mut out = Vec::new();
    for t in texts {
        let enc = tok.encode(t.as_str(), false).map_err(|e| ModelError::Config(e.to_string()))?;
        let ids: Vec<i64> = enc.get_ids().iter().map(|&i| i as i64).collect();
        for chunk in ids.chunks(raw_len.max(4)) {
            if chunk.len() >= 4 {
                out.push(chunk.to_vec());
            }
        }
    }
    Ok(out)
}

/// The corpus split into training and held-out documents (see [`heldout_documents`]).
pub fn split_corpus(texts: &[String], share: f64, seed: u64) -> (Vec<&String>, Vec<&String>) {
    let held = heldout_documents(texts.len(), share, seed ^ HELDOUT_SELECT);
    let mut is_held = vec![false; texts.len()];
    for &i in &held {
        is_held[i] = true;
    }
    let (mut train, mut heldout) = (Vec::new(), Vec::new());
    for (t, h) in texts.iter().zip(is_held) {
        if h {
            heldout.push(t)
        } else {
            train.push(t)
        }
    }
    (train, heldout)
}

/// Builds, pretrains and saves a scratch base model as an HF directory in `out`. The documents
/// [`split_corpus`] holds out are seen neither by the tokenizer trainer nor by pretraining.
#[allow(clippy::too_many_arguments)]
pub fn build_base_model(
    texts: &[String],
    arch: &crate::config::T5Arch,
    tok_spec: &crate::config::TokenizerSpec,
    pre: &crate::config::Pretrain,
    seed: u64,
    device: Device,
    bf16: bool,
    root: &Path,
    out: &Path,
    progress: &dyn TrainProgress,
) -> Result<PretrainResult, ModelError> {
    crate::fsx::create_dirs(root, out)?;
    let (train_docs, held_docs) = split_corpus(texts, pre.heldout_share, seed);
    let train_owned: Vec<String> = train_docs.iter().map(|t| (*t).clone()).collect();
    let tok = train_tokenizer(&train_owned, tok_spec.vocab_size, tok_spec.extra_ids)?;
    let vocab_size = tok.get_vocab_size(true);
    save_tokenizer(&tok, root, out)?;
    let cfg = scratch_config(arch, vocab_size);
    write_hf_config(&cfg, root, out)?;

    // Span-corrupted examples: passes over the contexts, each with fresh masks, until steps × batch.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sentinel0 = vocab_size as i64 - 1; // <extra_id_0>
    let raw_len = ((pre.max_input_tokens as f64 - 1.0)
        / (1.0 - pre.noise_density + pre.noise_density / pre.mean_noise_span_length))
        .floor() as usize;
    let encoded = chunk_texts(&tok, &train_docs, raw_len)?;
    if encoded.is_empty() {
        return Err(ModelError::Config("no text to pretrain on".into()));
    }
    // The held-out chunks, corrupted once with their own stream: the same masks before and after.
    let train_chunks: std::collections::HashSet<&Vec<i64>> = encoded.iter().collect();
    let held_chunks: Vec<Vec<i64>> =
        chunk_texts(&tok, &held_docs, raw_len)?.into_iter().filter(|c| !train_chunks.contains(c)).collect();
    let mut mask_rng = ChaCha8Rng::seed_from_u64(seed ^ HELDOUT_MASKS);
    let held_examples: Vec<Example> = held_chunks
        .iter()
        .map(|c| {
            let (input_ids, labels) =
                span_corrupt(c, pre.noise_density, pre.mean_noise_span_length, sentinel0, 1, &mut mask_rng);
            Example { input_ids, labels }
        })
        .collect();
    let held_batches: Vec<_> = held_examples
        .chunks(pre.batch_size)
        .map(|b| super::train::collate(&b.iter().collect::<Vec<_>>(), 0, device))
        .collect();
    let want = pre.steps * pre.batch_size;
    let mut examples = Vec::with_capacity(want);
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    while examples.len() < want {
        order.shuffle(&mut rng);
        for &i in &order {
            if examples.len() == want {
                break;
            }
            let (input_ids, labels) =
                span_corrupt(&encoded[i], pre.noise_density, pre.mean_noise_span_length, sentinel0, 1, &mut rng);
            examples.push(Example { input_ids, labels });
        }
    }

    tch::manual_seed(seed as i64);
    let vs = nn::VarStore::new(device);
    let model = T5::new(&vs.root(), &cfg, None)?;
    init_like_transformers(&vs, &cfg);
    let longest_target = examples.iter().map(|e| e.labels.len()).max().unwrap_or(0);
    let recipe = Recipe {
        hyper: crate::config::Train {
            epochs: 1,
            batch_size: pre.batch_size,
            grad_accum: 1,
            lr: pre.lr,
            weight_decay: 0.01,
            warmup_steps: pre.warmup_steps,
            warmup_share: pre.warmup_share,
            max_grad_norm: 1.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            // The span-corrupted chunks' lengths: inputs are cut to fit, targets are what corruption leaves.
            max_input_tokens: pre.max_input_tokens,
            max_target_tokens: longest_target,
            log_every: (pre.steps / 20).max(1),
        },
        seed,
        bf16,
    };
    let probe: Vec<_> = examples[..pre.batch_size.min(examples.len())].iter().collect();
    let probe = super::train::collate(&probe, 0, device);
    let initial_loss = super::train::evaluate_loss(&model, std::slice::from_ref(&probe), false);
    let heldout_start = (!held_batches.is_empty()).then(|| super::train::evaluate_loss(&model, &held_batches, bf16));
    let total = super::train::parameter_count(&vs);
    let report = train(&model, &vs, total, &examples, &[], &recipe, 0, progress)?;
    // No validation set: `train` leaves the weights of the last step in place.
    let heldout = heldout_start.map(|start| HeldOut {
        share: pre.heldout_share,
        documents: held_docs.len(),
        chunks: held_examples.len(),
        target_tokens: held_examples.iter().map(|e| e.labels.len()).sum(),
        loss_start: crate::data::stats::round6(start),
        loss_end: crate::data::stats::round6(super::train::evaluate_loss(&model, &held_batches, bf16)),
    });
    write_weights(&vs, root, out)?;
    Ok(PretrainResult { report, initial_loss, vocab_size, examples: examples.len(), heldout })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_tokenizer_has_exactly_the_asked_size_and_never_emits_a_placeholder() {
        let texts: Vec<String> =
            (0..40).map(|i| format!("the river town number {i} saw an early light on the road")).collect();
        let tok = train_tokenizer_filled(&texts, 2000, 100).unwrap();
        assert_eq!(tok.get_vocab_size(true), 2000);
        assert_eq!(tok.token_to_id("<pad>"), Some(0));
        assert_eq!(tok.token_to_id("</s>"), Some(1));
        assert_eq!(tok.token_to_id("<extra_id_0>"), Some(1999));
        let placeholders = tok.get_vocab(true).keys().filter(|p| p.starts_with(PLACEHOLDER_MARK)).count();
        assert!(placeholders > 0, "the small corpus should need placeholders");
        for t in &texts {
            let ids = tok.encode(t.as_str(), true).unwrap();
            for id in ids.get_ids() {
                let piece = tok.id_to_token(*id).unwrap();
                assert!(!piece.starts_with(PLACEHOLDER_MARK), "{t:?} was tokenised with placeholder {piece:?}");
            }
        }
        // Unfilled, the same corpus gives fewer entries.
        assert!(train_tokenizer(&texts, 2000, 100).unwrap().get_vocab_size(true) < 2000);
    }

    #[test]
    fn span_corruption_hides_the_right_share_and_reconstructs() {
        let tokens: Vec<i64> = (10..110).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (inp, tgt) = span_corrupt(&tokens, 0.15, 3.0, 999, 1, &mut rng);
        let sentinels: Vec<i64> = inp.iter().copied().filter(|&t| t > 900).collect();
        assert_eq!(sentinels.len(), 5); // round(15 / 3)
        assert_eq!(tgt.iter().filter(|&&t| t < 900 && t != 1).count(), 15);
        // Rebuild the original from inputs + targets.
        let mut spans = std::collections::HashMap::new();
        let mut cur = None;
        for &t in &tgt[..tgt.len() - 1] {
            if t > 900 {
                cur = Some(t);
                spans.insert(t, Vec::new());
            } else {
                spans.get_mut(&cur.unwrap()).unwrap().push(t);
            }
        }
        let rebuilt: Vec<i64> =
            inp[..inp.len() - 1].iter().flat_map(|&t| if t > 900 { spans[&t].clone() } else { vec![t] }).collect();
        assert_eq!(rebuilt, tokens);
    }

    #[test]
    fn the_heldout_documents_are_a_seeded_share_never_in_training() {
        let texts: Vec<String> = (0..200).map(|i| format!("document {i} about the river town")).collect();
        let (train, held) = split_corpus(&texts, 0.05, 42);
        assert_eq!(held.len(), 10);
        assert_eq!(train.len() + held.len(), texts.len());
        let train_set: std::collections::HashSet<&String> = train.iter().copied().collect();
        assert!(held.iter().all(|h| !train_set.contains(h)), "a held-out document is also a training document");
        // The same seed picks the same slice; another seed another one; share 0 holds nothing out.
        assert_eq!(split_corpus(&texts, 0.05, 42).1, held);
        assert_ne!(split_corpus(&texts, 0.05, 43).1, held);
        assert!(split_corpus(&texts, 0.0, 42).1.is_empty());
        // At least one document when the share rounds to none, never every document.
        assert_eq!(heldout_documents(10, 0.01, 1).len(), 1);
        assert_eq!(heldout_documents(2, 0.5, 1).len(), 1);
        assert!(heldout_documents(1, 0.5, 1).is_empty());
    }

    #[test]
    fn pretraining_lowers_the_loss_on_the_heldout_slice_it_never_saw() {
        let words = ["river", "town", "early", "light", "road", "quiet", "market", "bridge", "morning", "stone"];
        // Distinct documents from one small vocabulary, in word pairs, so the held-out slice shares the
        // training documents' statistics but none of their chunks.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let texts: Vec<String> = (0..120)
            .map(|_| {
                (0..12)
                    .map(|_| {
                        let w = rand::Rng::gen_range(&mut rng, 0..words.len() / 2) * 2;
                        format!("{} {}", words[w], words[w + 1])
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let arch = crate::config::T5Arch {
            d_model: 32,
            d_ff: 64,
            d_kv: 8,
            num_heads: 4,
            num_layers: 1,
            num_decoder_layers: 1,
            relative_attention_num_buckets: 8,
            relative_attention_max_distance: 32,
            dropout_rate: 0.0,
        };
        let tok = crate::config::TokenizerSpec { vocab_size: 120, extra_ids: 10 };
        let pre = crate::config::Pretrain {
            steps: 40,
            batch_size: 8,
            lr: 1e-2,
            noise_density: 0.15,
            mean_noise_span_length: 3.0,
            max_input_tokens: 32,
            warmup_steps: 2,
            warmup_share: None,
            corpus: Default::default(),
            heldout_share: 0.1,
        };
        let dir = std::env::temp_dir().join(format!("hsx-heldout-{}", std::process::id()));
        let build = |pre: &crate::config::Pretrain| {
            let quiet = &super::super::train::NoProgress;
            let r = build_base_model(&texts, &arch, &tok, pre, 7, Device::Cpu, false, &dir, &dir, quiet).unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            r
        };
        let r = build(&pre);
        let h = r.heldout.expect("a held-out slice");
        assert_eq!(h.documents, 12);
        assert!(h.chunks >= h.documents && h.target_tokens > h.chunks, "{h:?}");
        assert!(h.loss_start.is_finite() && h.loss_end.is_finite());
        assert!(h.loss_end < h.loss_start, "held-out loss did not fall: {} -> {}", h.loss_start, h.loss_end);
        // Without a share there are no held-out figures.
        let none = crate::config::Pretrain { heldout_share: 0.0, steps: 2, ..pre };
        let r = build(&none);
        assert!(r.heldout.is_none());
    }
}
