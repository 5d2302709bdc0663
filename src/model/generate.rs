//! Batched generation with an incremental key/value cache: greedy, or temperature / top-p sampling
//! that draws from a seeded ChaCha20 RNG on the Rust side (so outputs are reproducible on any device).
//!
//! The encoder runs once; the decoder feeds one token per step, its self-attention cache growing and its
//! cross-attention keys/values computed once. A row stops at `</s>` (kept in its output) and is padded
//! afterwards, as transformers' `generate` does; decoding ends when every row has stopped or after
//! `max_new_tokens`.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tch::{Kind, Tensor};

use super::t5::{DecoderCache, T5};
use super::tokenizer::pad_batch;

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// `</s>` is suppressed before this many new tokens (transformers' `min_new_tokens`).
    pub min_new_tokens: usize,
    /// 0 = greedy.
    pub temperature: f64,
    /// Nucleus sampling: keep the most probable tokens whose probabilities sum to at least `top_p`.
    pub top_p: f64,
    pub seed: u64,
    /// Run the encoder and every decoder step under bf16 autocast ([`crate::runtime::with_bf16_autocast`]).
    pub bf16: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { max_new_tokens: 64, min_new_tokens: 0, temperature: 0.0, top_p: 1.0, seed: 42, bf16: false }
    }
}

/// Generates for a batch of token-id rows (each ending in `</s>`). Returns, per row, the new token ids
/// without the decoder start token, including the final `</s>` when one was produced.
pub fn generate(model: &T5, inputs: &[Vec<i64>], opts: &GenerateOptions) -> Vec<Vec<i64>> {
    if inputs.is_empty() {
        return Vec::new();
    }
    let mut rng = ChaCha20Rng::seed_from_u64(opts.seed);
    tch::no_grad(|| {
        let device = model.device();
        let (ids, mask) = pad_batch(inputs, model.cfg.pad_token_id as i64, device);
        let enc = crate::runtime::with_bf16_autocast(opts.bf16, device, || model.encode(&ids, &mask, false));
        let b = inputs.len();
        let eos = model.cfg.eos_token_id as i64;
        let pad = model.cfg.pad_token_id as i64;
        let mut out: Vec<Vec<i64>> = vec![Vec::new(); b];
        let mut done = vec![false; b];
        let mut cache = DecoderCache::default();
        let mut next: Vec<i64> = vec![model.cfg.decoder_start_token_id as i64; b];
        for step_no in 0..opts.max_new_tokens {
            let step = Tensor::from_slice(&next).view([b as i64, 1]).to_device(device);
            let logits = crate::runtime::with_bf16_autocast(opts.bf16, device, || {
                model.decode(&step, &enc, &mask, Some(&mut cache), false)
            }); // [b, 1, V]
            let logits = logits.squeeze_dim(1).to_kind(Kind::Float).to_device(tch::Device::Cpu).contiguous();
            let v = logits.size()[1] as usize;
            let mut flat: Vec<f32> = Vec::<f32>::try_from(logits.view([-1])).expect("float logits");
            if step_no < opts.min_new_tokens {
                for row in 0..b {
                    flat[row * v + eos as usize] = f32::NEG_INFINITY;
                }
            }
            for row in 0..b {
                if done[row] {
                    next[row] = pad;
                    continue;
                }
                let l = &flat[row * v..(row + 1) * v];
                let tok =
                    if opts.temperature <= 0.0 { argmax(l) } else { sample(l, opts.temperature, opts.top_p, &mut rng) };
                out[row].push(tok as i64);
                next[row] = tok as i64;
                if tok as i64 == eos {
                    done[row] = true;
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        out
    })
}

/// The first index of the maximum (torch's argmax convention).
fn argmax(l: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in l.iter().enumerate() {
        if x > l[best] {
            best = i;
        }
    }
    best
}

/// Samples from softmax(l / temperature), restricted to the top-p nucleus, in f64 on the CPU.
fn sample(l: &[f32], temperature: f64, top_p: f64, rng: &mut ChaCha20Rng) -> usize {
    let max = l.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let mut probs: Vec<(usize, f64)> =
        l.iter().enumerate().map(|(i, &x)| (i, ((x as f64 - max) / temperature).exp())).collect();
    let z: f64 = probs.iter().map(|p| p.1).sum();
    for p in probs.iter_mut() {
        p.1 /= z;
    }
    if top_p < 1.0 {
        // Most probable first; ties by token id, so the order is total and deterministic.
        probs.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal).then(a.0.cmp(&b.0)));
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (k, p) in probs.iter().enumerate() {
            cum += p.1;
            if cum >= top_p {
                keep = k + 1;
                break;
            }
        }
        probs.truncate(keep);
    }
    let total: f64 = probs.iter().map(|p| p.1).sum();
    let u: f64 = rng.gen::<f64>() * total;
    let mut cum = 0.0;
    for &(i, p) in &probs {
        cum += p;
        if u < cum {
            return i;
        }
    }
    probs.last().map(|p| p.0).unwrap_or(0)
}

/// Generates one text per prompt, in length-sorted batches (shortest first, a deterministic order),
/// batch `k` sampling from its own stream (`opts.seed + k`); texts come back in prompt order, trimmed.
pub fn generate_texts(
    m: &super::LoadedT5,
    prompts: &[String],
    opts: &GenerateOptions,
    batch: usize,
    max_input: usize,
    progress: Option<&dyn super::train::TrainProgress>,
) -> Result<Vec<String>, super::ModelError> {
    let ids: Vec<Vec<i64>> =
        prompts.iter().map(|p| m.tokenizer.encode(p, Some(max_input))).collect::<Result<_, _>>()?;
    let lens: Vec<usize> = ids.iter().map(Vec::len).collect();
    let batches = super::batching::length_sorted_batches(&lens, batch, super::batching::LengthOrder::ShortestFirst);
    let mut out = vec![String::new(); ids.len()];
    for (k, chunk) in batches.iter().enumerate() {
        let rows: Vec<Vec<i64>> = chunk.iter().map(|&i| ids[i].clone()).collect();
        let o = GenerateOptions { seed: opts.seed.wrapping_add(k as u64), ..opts.clone() };
        let gen = generate(&m.model, &rows, &o);
        for (j, &i) in chunk.iter().enumerate() {
            out[i] = m.tokenizer.decode(&gen[j])?.trim().to_owned();
        }
        if let Some(p) = progress {
            p.items(((k + 1) * batch.max(1)).min(ids.len()), ids.len(), "generated");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_seeded_and_respects_top_p() {
        let l = [0.0f32, 1.0, 2.0, 3.0];
        let draw = |seed| {
            let mut r = ChaCha20Rng::seed_from_u64(seed);
            (0..50).map(|_| sample(&l, 1.0, 1.0, &mut r)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        let mut r = ChaCha20Rng::seed_from_u64(3);
        // p(3) ≈ 0.64: a nucleus of 0.5 holds token 3 alone.
        assert!((0..100).all(|_| sample(&l, 1.0, 0.5, &mut r) == 3));
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    }
}
