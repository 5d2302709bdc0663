//! Batched generation with an incremental key/value cache: greedy, or temperature / top-p sampling with a
//! counter-based random stream per row, the token chosen on the model's device.
//!
//! The encoder runs once; the decoder feeds one token per step, its self-attention cache growing and its
//! cross-attention keys/values computed once. A row stops at `</s>` (kept in its output) and is padded
//! afterwards, as transformers' `generate` does; decoding ends when every row has stopped or after
//! `max_new_tokens`.
//!
//! # Choosing the token on the device
//!
//! Each step's logits stay on the model's device. `</s>` is masked to −∞ before `min_new_tokens`. Greedy
//! decoding takes `argmax` over the vocabulary (torch returns the first index of the maximum, the rule
//! hsx always used). A finished row's next token is `<pad>`, chosen by a device-side `done` mask; the
//! step's ids are kept on the device and copied to the host once, when decoding ends. "Every row has
//! finished" is read back (one sync) every [`DONE_CHECK_EVERY`] steps only: up to that many − 1 extra steps
//! may run after the last row ends, and their tokens (all `<pad>`) are cut off with everything after each
//! row's `</s>`, so the ids are the same as checking every step.
//!
//! # The sampler ([`SAMPLER`], `counter-chacha20-v2`)
//!
//! A row's random numbers depend on `(seed, key, step)` only, never on the batch it runs in: `key` is the
//! prompt's index in its dataset (the caller's choice, passed per row). For each row the host derives a
//! ChaCha20 key `SHA-256("hsx/sampler/counter-chacha20-v2" ‖ seed as u64 LE ‖ key as u64 LE)`, positions
//! the stream at 32-bit word `2 · step` and reads one `u64` `x`; the row's uniform is
//! `u = (x >> 11) · 2⁻⁵³ ∈ [0, 1)`. The draw then runs on the device, per row, in f64:
//!
//! 1. `p = softmax(logits / T)` (after the `</s>` mask above);
//! 2. `p` sorted descending with a stable sort (ties: lower token id first), `c` its inclusive cumsum;
//! 3. top-p: sorted position `j` is kept iff `top_p ≥ 1` or `c[j] − p[j] < top_p` (the smallest prefix
//!    whose mass reaches `top_p`);
//! 4. `k` = the cumsum of the kept probabilities, `t = u · k[last]`; the token is the sorted position
//!    `min(#{j kept : k[j] ≤ t}, kept − 1)`, mapped back to its id (the first `j` with `k[j] > t`).
//!
//! A row's sample is therefore the same at any batch size, in any batch composition and order, as long as
//! the model gives that row the same logits (on the CPU fixtures it does: the batch-independence test);
//! two identical runs on one device are bit-identical. The old sampler (`host-chacha20-v1`: one ChaCha20
//! stream per batch, seeded `seed + batch index`, drawn on the host row after row) cannot be reproduced by
//! this one; ledger entries name the sampler they used ([`SAMPLER`], [`SAMPLER_HOST_V1`] for entries that
//! predate the field).
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use super::t5::{DecoderCache, T5};
use super::tokenizer::pad_batch;

/// The sampler this build uses, as ledger entries name it.
pub const SAMPLER: &str = "counter-chacha20-v2";
/// The sampler of the entries written before samplers were named: one host-side stream per batch.
pub const SAMPLER_HOST_V1: &str = "host-chacha20-v1";
/// Steps between reads of the device-side "every row finished" flag (each read is a device sync).
pub const DONE_CHECK_EVERY: usize = 8;

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

/// One row's counter-based stream: `uniform(step)` is a pure function of `(seed, key, step)`.
#[derive(Clone)]
pub struct RowStream(ChaCha20Rng);

impl RowStream {
    pub fn new(seed: u64, key: u64) -> Self {
        let mut h = Sha256::new();
        h.update(b"hsx/sampler/");
        h.update(SAMPLER.as_bytes());
        h.update(seed.to_le_bytes());
        h.update(key.to_le_bytes());
        Self(ChaCha20Rng::from_seed(h.finalize().into()))
    }

    /// The uniform in `[0, 1)` of decoding step `step` (53 random bits).
    pub fn uniform(&mut self, step: usize) -> f64 {
        self.0.set_word_pos(2 * step as u128);
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Generates for a batch of token-id rows (each ending in `</s>`), row `i` sampling with key `i` (see
/// [`generate_keyed`]). Returns, per row, the new token ids without the decoder start token, including the
/// final `</s>` when one was produced.
pub fn generate(model: &T5, inputs: &[Vec<i64>], opts: &GenerateOptions) -> Vec<Vec<i64>> {
    let keys: Vec<u64> = (0..inputs.len() as u64).collect();
    generate_keyed(model, inputs, &keys, opts)
}

/// [`generate`] with each row's sampling key given: `keys[i]` is row `i`'s index in its dataset, so its
/// samples do not depend on the batch it runs in. Panics if `keys` and `inputs` differ in length.
pub fn generate_keyed(model: &T5, inputs: &[Vec<i64>], keys: &[u64], opts: &GenerateOptions) -> Vec<Vec<i64>> {
    generate_rows(model, inputs, keys, None, opts)
}

/// [`generate_keyed`] with an optional per-row cap on new tokens: row `i` stops after
/// `min(limits[i], opts.max_new_tokens)` tokens (marked finished on the device, so a batch of rows with
/// different caps ends with its longest row). Because a row's tokens depend on its own prefix only, a row
/// capped at `n` in a mixed batch gives exactly what it gives alone with `max_new_tokens = n`: prompts
/// of different tasks can share full batches. Panics if `keys` or `limits` differ from `inputs` in length.
pub fn generate_rows(
    model: &T5,
    inputs: &[Vec<i64>],
    keys: &[u64],
    limits: Option<&[usize]>,
    opts: &GenerateOptions,
) -> Vec<Vec<i64>> {
    assert_eq!(inputs.len(), keys.len(), "one sampling key per input row");
    if let Some(l) = limits {
        assert_eq!(inputs.len(), l.len(), "one token cap per input row");
    }
    let cap = |i: usize| limits.map_or(opts.max_new_tokens, |l| l[i].min(opts.max_new_tokens));
    if inputs.is_empty() {
        return Vec::new();
    }
    let sampled = opts.temperature > 0.0;
    let mut streams: Vec<RowStream> =
        if sampled { keys.iter().map(|&k| RowStream::new(opts.seed, k)).collect() } else { Vec::new() };
    tch::no_grad(|| {
        let device = model.device();
        let (ids, mask) = pad_batch(inputs, model.cfg.pad_token_id as i64, device);
        let enc = crate::runtime::with_bf16_autocast(opts.bf16, device, || model.encode(&ids, &mask, false));
        let b = inputs.len() as i64;
        let eos = model.cfg.eos_token_id as i64;
        let pad = model.cfg.pad_token_id as i64;
        let pad_t = Tensor::from(pad).to_device(device);
        let mut cache = DecoderCache::default();
        let mut next = Tensor::full([b, 1], model.cfg.decoder_start_token_id as i64, (Kind::Int64, device));
        let mut done = Tensor::zeros([b, 1], (Kind::Bool, device));
        let limit_t = limits.map(|_| {
            let caps: Vec<i64> = (0..inputs.len()).map(|i| cap(i) as i64).collect();
            Tensor::from_slice(&caps).view([b, 1]).to_device(device)
        });
        let mut steps: Vec<Tensor> = Vec::with_capacity(opts.max_new_tokens);
        for step_no in 0..opts.max_new_tokens {
            let logits = crate::runtime::with_bf16_autocast(opts.bf16, device, || {
                model.decode(&next, &enc, &mask, Some(&mut cache), false)
            }); // [b, 1, V]
            let logits = logits.squeeze_dim(1).to_kind(Kind::Float);
            if step_no < opts.min_new_tokens {
                let _ = logits.narrow(1, eos, 1).fill_(f64::NEG_INFINITY);
            }
            let tok = if sampled {
                let u: Vec<f64> = streams.iter_mut().map(|s| s.uniform(step_no)).collect();
                let u = Tensor::from_slice(&u).to_device(device);
                sample_on_device(&logits, &u, opts.temperature, opts.top_p)
            } else {
                logits.argmax(-1, true)
            }; // [b, 1]
            next = tok.where_self(&done.logical_not(), &pad_t);
            done = done.logical_or(&next.eq(eos));
            if let Some(l) = &limit_t {
                done = done.logical_or(&l.le(step_no as i64 + 1));
            }
            steps.push(next.shallow_clone());
            if (step_no + 1) % DONE_CHECK_EVERY == 0 && done.all().to_kind(Kind::Int64).int64_value(&[]) != 0 {
                break;
            }
        }
        let n = steps.len();
        if n == 0 {
            return vec![Vec::new(); inputs.len()];
        }
        let all = Tensor::cat(&steps, 1).to_device(Device::Cpu).contiguous(); // [b, n]
        let flat = Vec::<i64>::try_from(all.view([-1])).expect("int64 token ids");
        flat.chunks(n)
            .take(inputs.len())
            .enumerate()
            .map(|(i, row)| {
                let row = &row[..cap(i).min(row.len())];
                match row.iter().position(|&t| t == eos) {
                    Some(e) => row[..=e].to_vec(),
                    None => row.to_vec(),
                }
            })
            .collect()
    })
}

/// The categorical draw of the module doc, per row of `logits` (`[b, V]`) with the row's uniform `u`
/// (`[b]`, f64): returns the chosen ids, `[b, 1]` int64, on the logits' device.
pub fn sample_on_device(logits: &Tensor, u: &Tensor, temperature: f64, top_p: f64) -> Tensor {
    let p = (logits.to_kind(Kind::Double) / temperature).softmax(-1, Kind::Double);
    let (sorted, idx) = p.sort_stable(true, -1, true);
    let keep = if top_p >= 1.0 {
        sorted.ones_like().to_kind(Kind::Bool)
    } else {
        (sorted.cumsum(-1, Kind::Double) - &sorted).lt(top_p)
    };
    let kept = sorted.where_self(&keep, &sorted.zeros_like());
    let k = kept.cumsum(-1, Kind::Double);
    let n = k.size()[1];
    let t = u.view([-1, 1]) * k.narrow(1, n - 1, 1);
    let below = k.le_tensor(&t).logical_and(&keep).sum_dim_intlist(-1, true, Kind::Int64);
    let last = keep.sum_dim_intlist(-1, true, Kind::Int64) - 1;
    let j = below.minimum(&last);
    idx.gather(-1, &j, false)
}

/// Generates one text per prompt, in length-sorted batches (shortest first, a deterministic order); prompt
/// `i` samples with key `keys[i]` (its index in its dataset), so the texts do not depend on the batching.
/// Texts come back in prompt order, trimmed. An error if `keys` and `prompts` differ in length.
pub fn generate_texts(
    m: &super::LoadedT5,
    prompts: &[String],
    keys: &[u64],
    opts: &GenerateOptions,
    batch: usize,
    max_input: usize,
    progress: Option<&dyn super::train::TrainProgress>,
) -> Result<Vec<String>, super::ModelError> {
    generate_texts_capped(m, prompts, keys, None, opts, batch, max_input, progress)
}

/// [`generate_texts`] with an optional per-prompt cap on new tokens ([`generate_rows`]): prompts of
/// different tasks (and caps) fill the same batches, each text what it would be alone. An error if `keys`
/// or `limits` and `prompts` differ in length.
#[allow(clippy::too_many_arguments)] // generate_texts' arguments and the caps; a struct would only rename them
pub fn generate_texts_capped(
    m: &super::LoadedT5,
    prompts: &[String],
    keys: &[u64],
    limits: Option<&[usize]>,
    opts: &GenerateOptions,
    batch: usize,
    max_input: usize,
    progress: Option<&dyn super::train::TrainProgress>,
) -> Result<Vec<String>, super::ModelError> {
    if keys.len() != prompts.len() {
        return Err(super::ModelError::Config(format!(
            "generate_texts: {} prompts but {} sampling keys",
            prompts.len(),
            keys.len()
        )));
    }
    if let Some(l) = limits.filter(|l| l.len() != prompts.len()) {
        return Err(super::ModelError::Config(format!(
            "generate_texts: {} prompts but {} token caps",
            prompts.len(),
            l.len()
        )));
    }
    let ids: Vec<Vec<i64>> =
        prompts.iter().map(|p| m.tokenizer.encode(p, Some(max_input))).collect::<Result<_, _>>()?;
    let lens: Vec<usize> = ids.iter().map(Vec::len).collect();
    let batches = super::batching::length_sorted_batches(&lens, batch, super::batching::LengthOrder::ShortestFirst);
    let mut out = vec![String::new(); ids.len()];
    let mut finished = 0;
    for chunk in &batches {
        let rows: Vec<Vec<i64>> = chunk.iter().map(|&i| ids[i].clone()).collect();
        let row_keys: Vec<u64> = chunk.iter().map(|&i| keys[i]).collect();
        let row_caps: Option<Vec<usize>> = limits.map(|l| chunk.iter().map(|&i| l[i]).collect());
        let gen = generate_rows(&m.model, &rows, &row_keys, row_caps.as_deref(), opts);
        for (j, &i) in chunk.iter().enumerate() {
            out[i] = m.tokenizer.decode(&gen[j])?.trim().to_owned();
        }
        finished += chunk.len();
        if let Some(p) = progress {
            p.items(finished, ids.len(), "generated");
        }
    }
    Ok(out)
}

/// `0, 1, …, n − 1`: the sampling keys of prompts that are their dataset, in order.
pub fn dataset_keys(n: usize) -> Vec<u64> {
    (0..n as u64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_streams_are_pure_functions_of_seed_key_and_step() {
        let draws = |seed, key| {
            let mut s = RowStream::new(seed, key);
            (0..20).map(|t| s.uniform(t)).collect::<Vec<_>>()
        };
        assert_eq!(draws(1, 5), draws(1, 5));
        assert_ne!(draws(1, 5), draws(1, 6));
        assert_ne!(draws(1, 5), draws(2, 5));
        // Random access: step 7 read first, or after others, is the same number.
        let mut s = RowStream::new(9, 3);
        let seventh = s.uniform(7);
        let _ = (s.uniform(0), s.uniform(100));
        assert_eq!(s.uniform(7), seventh);
        assert!(draws(4, 4).iter().all(|u| (0.0..1.0).contains(u)));
    }

    #[test]
    fn the_device_draw_is_the_inverse_cdf_of_the_nucleus() {
        // softmax([0, 1, 2, 3]) ≈ [0.032, 0.087, 0.237, 0.644]: sorted 3, 2, 1, 0.
        let logits = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 3.0]).view([1, 4]);
        let p: Vec<f64> = {
            let e: Vec<f64> = (0..4).map(|i| (i as f64 - 3.0).exp()).collect();
            let z: f64 = e.iter().sum();
            e.iter().map(|x| x / z).collect()
        };
        let draw =
            |u: f64, top_p: f64| sample_on_device(&logits, &Tensor::from_slice(&[u]), 1.0, top_p).int64_value(&[0, 0]);
        // Whole distribution: u just below / above each cumulative boundary, in sorted order.
        let c3 = p[3];
        let c2 = c3 + p[2];
        let c1 = c2 + p[1];
        assert_eq!(draw(c3 * 0.999, 1.0), 3);
        assert_eq!(draw(c3 * 1.001, 1.0), 2);
        assert_eq!(draw(c2 * 1.001, 1.0), 1);
        assert_eq!(draw(c1 * 1.001, 1.0), 0);
        assert_eq!(draw(0.999_999, 1.0), 0);
        // A nucleus of 0.5 holds token 3 alone (p ≈ 0.64), whatever the uniform.
        assert!([0.0, 0.3, 0.999_999].iter().all(|&u| draw(u, 0.5) == 3));
        // A nucleus of 0.8 holds 3 and 2: renormalised boundary at p3 / (p3 + p2).
        let b = c3 / c2;
        assert_eq!(draw(b * 0.999, 0.8), 3);
        assert_eq!(draw(b * 1.001, 0.8), 2);
        assert_eq!(draw(0.999_999, 0.8), 2);
        // Ties: the stable sort puts the lower id first.
        let tie = Tensor::from_slice(&[1.0f32, 5.0, 5.0]).view([1, 3]);
        assert_eq!(sample_on_device(&tie, &Tensor::from_slice(&[0.0]), 1.0, 1.0).int64_value(&[0, 0]), 1);
        // Rows are independent: a batch of the same rows draws what each draws alone.
        let batch = Tensor::cat(&[&logits, &logits.flip([1]), &logits], 0);
        let u = [0.01, 0.5, 0.99];
        let both = sample_on_device(&batch, &Tensor::from_slice(&u), 0.7, 0.9);
        for (r, &ur) in u.iter().enumerate() {
            let alone = sample_on_device(&batch.narrow(0, r as i64, 1), &Tensor::from_slice(&[ur]), 0.7, 0.9);
            assert_eq!(both.int64_value(&[r as i64, 0]), alone.int64_value(&[0, 0]));
        }
    }
}
