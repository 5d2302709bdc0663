//! Fine-tuning with the seed's recipe: AdamW (decoupled weight decay), linear warmup then linear decay
//! to zero (transformers' default scheduler), micro-batches with gradient accumulation, clipping at a
//! global norm, validation loss after each epoch, and the best epoch's weights kept.
//!
//! Loss: mean token cross-entropy over non-padding target tokens of each micro-batch; an optimiser
//! step's loss is the mean of its micro-batches' losses (each backpropagated ÷ accumulation, as the
//! transformers Trainer did before token-count normalisation). Batches are bucketed by length: each
//! epoch shuffles the examples with a seeded ChaCha8 RNG, sorts windows of 50 micro-batches by input
//! length, cuts them into micro-batches, and shuffles the micro-batch order. bf16 autocast on CUDA
//! replaces the seed's fp16, which overflows in T5's feed-forward layers.
//!
//! On CUDA an accumulation group runs as one batch whose tokens are weighted 1 / (n·T_k) so that its
//! loss, and gradient, are the mean of the micro-batch means above ([`GroupBatch`]; equal up to float32
//! rounding, tested against 8 × 4 in tests/lora.rs); on the CPU the micro-batches run one by one, the
//! recorded bits. Nothing is read back to the host per micro-batch or step: losses are summed on the
//! device and read once per log interval, and clipping's coefficient stays on the device (model::adamw).
//!
//! ```text
//! hsx train --model DIR --train train.jsonl --val val.jsonl --out adapters/A
//! ```
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::HashMap;
use tch::{nn, Device, Kind, Tensor};

use super::adamw::{AdamW, AdamWConfig};

use super::t5::T5;
use super::tokenizer::pad_batch;
use super::ModelError;

/// The optimisation recipe: the config's `[train]` hyper-parameters as they are (one type, not a copy),
/// with the stage's seed and whether the forward passes run under bf16 autocast. The token limits in
/// `hyper` are applied when the caller tokenizes the examples; the loop reads the optimisation settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recipe {
    #[serde(flatten)]
    pub hyper: crate::config::Train,
    /// Written as a decimal string: a stage seed is a full u64, beyond the 2^53 that JSON numbers carry
    /// exactly (ledger entries hold only I-JSON numbers; `crate::ledger::u64_text`).
    #[serde(serialize_with = "crate::ledger::u64_text::serialize")]
    pub seed: u64,
    pub bf16: bool,
}

impl Recipe {
    pub fn from_config(t: &crate::config::Train, seed: u64, bf16: bool) -> Self {
        Self { hyper: t.clone(), seed, bf16 }
    }
}

/// One tokenized training pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub input_ids: Vec<i64>,
    pub labels: Vec<i64>,
}

/// A padded micro-batch on its device.
#[derive(Debug)]
pub struct MicroBatch {
    pub ids: Tensor,
    pub mask: Tensor,
    /// [b, t], padding as -100.
    pub labels: Tensor,
    pub target_tokens: usize,
    pub real_tokens: usize,
    pub padded_tokens: usize,
}

pub fn collate(examples: &[&Example], pad: i64, device: Device) -> MicroBatch {
    let inputs: Vec<Vec<i64>> = examples.iter().map(|e| e.input_ids.clone()).collect();
    let labels: Vec<Vec<i64>> = examples.iter().map(|e| e.labels.clone()).collect();
    let (ids, mask) = pad_batch(&inputs, pad, device);
    let (lab, lmask) = pad_batch(&labels, pad, device);
    let lab = lab.masked_fill(&lmask.eq(0), -100);
    let real: usize = examples.iter().map(|e| e.input_ids.len() + e.labels.len()).sum();
    let padded = examples.len() * (ids.size()[1] as usize + lab.size()[1] as usize);
    MicroBatch {
        ids,
        mask,
        labels: lab,
        target_tokens: examples.iter().map(|e| e.labels.len()).sum(),
        real_tokens: real,
        padded_tokens: padded,
    }
}

/// An accumulation group as one batch: the group's micro-batches padded together, with a weight per
/// target token so that one backward pass gives the gradient of the seed recipe's step loss.
///
/// What 8 × 4 computes: each micro-batch k's loss is the mean token cross-entropy over its T_k target
/// tokens, and the step's loss is the mean of the n micro-batch losses, (1/n) Σ_k (1/T_k) Σ_{i∈k} ce_i:
/// the mean over micro-batches of each one's token mean, not a token-weighted mean over the group. The
/// weight of a target token of micro-batch k is therefore 1 / (n·T_k) (0 on padding), and the weighted
/// sum Σ w_i·ce_i is that loss; its gradient equals the accumulated one up to float32 rounding (other
/// summation orders, other padded lengths), with dropout off.
#[derive(Debug)]
pub struct GroupBatch {
    pub batch: MicroBatch,
    /// [b, t] float32, the token weights.
    pub weights: Tensor,
    pub micro_batches: usize,
}

/// Pads the micro-batches of `group` into one batch with the token weights of [`GroupBatch`].
pub fn collate_group(group: &[Vec<&Example>], pad: i64, device: Device) -> GroupBatch {
    let n = group.len().max(1);
    let all: Vec<&Example> = group.iter().flatten().copied().collect();
    let batch = collate(&all, pad, device);
    let t = batch.labels.size()[1] as usize;
    let mut w = vec![0f32; all.len() * t];
    let mut row = 0;
    for mb in group {
        let tokens: usize = mb.iter().map(|e| e.labels.len()).sum();
        // A micro-batch without target tokens has no mean (its 8 × 4 loss is NaN); it weighs nothing here.
        let wk = if tokens == 0 { 0.0 } else { (1.0 / (n as f64 * tokens as f64)) as f32 };
        for e in mb {
            w[row * t..row * t + e.labels.len()].fill(wk);
            row += 1;
        }
    }
    let weights = Tensor::from_slice(&w).view([all.len() as i64, t as i64]).to_device(device);
    GroupBatch { batch, weights, micro_batches: group.len() }
}

/// The token-weighted cross-entropy of a [`GroupBatch`] (the step loss of its micro-batches).
pub fn group_loss(model: &T5, g: &GroupBatch, train: bool) -> Tensor {
    let b = &g.batch;
    let enc = model.encode(&b.ids, &b.mask, train);
    let logits = model.decode(&model.shift_right(&b.labels), &enc, &b.mask, None, train);
    let v = logits.size()[2];
    let ce = logits.to_kind(Kind::Float).view([-1, v]).cross_entropy_loss::<Tensor>(
        &b.labels.view([-1]),
        None,
        tch::Reduction::None,
        -100,
        0.0,
    );
    (ce * g.weights.view([-1])).sum(Kind::Float)
}

/// Length-bucketed micro-batch order for one epoch (indices into `examples`).
pub fn bucketed_batches(examples: &[Example], batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.shuffle(&mut rng);
    let window = batch_size * 50;
    let mut batches = Vec::new();
    for chunk in order.chunks(window) {
        let mut c = chunk.to_vec();
        // Stable sort: equal lengths keep their shuffled order.
        c.sort_by_key(|&i| examples[i].input_ids.len() + examples[i].labels.len());
        batches.extend(c.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// transformers' `get_linear_schedule_with_warmup` multiplier at optimiser step `step` (0-based).
pub fn linear_schedule(step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return step as f64 / warmup.max(1) as f64;
    }
    let rest = total.saturating_sub(warmup).max(1) as f64;
    (total.saturating_sub(step) as f64 / rest).max(0.0)
}

/// Called by the training loop; the CLI draws a progress bar from it. The loop itself never prints.
pub trait TrainProgress {
    fn start(&self, _total_steps: usize) {}
    /// After each optimiser step; `loss` is the mean loss since the previous log point, given only at
    /// log points (the losses are read from the device once per log interval).
    fn step(&self, _step: usize, _loss: Option<f64>, _tokens_per_s: f64) {}
    fn epoch(&self, _epoch: usize, _val_loss: Option<f64>) {}
    /// Progress of a non-training loop (e.g. synthesis attempts).
    fn items(&self, _done: usize, _total: usize, _what: &str) {}
}

pub struct NoProgress;
impl TrainProgress for NoProgress {}

/// The optimiser and schedule over the trainable variables of one store (LoRA adapters, or the whole
/// model when pretraining).
pub struct Trainer<'a> {
    pub model: &'a T5,
    opt: AdamW,
    pub recipe: Recipe,
    pub total_steps: usize,
    pub step_no: usize,
    trainable: Vec<Tensor>,
    /// Whether the forward passes ran under bf16 autocast, as libtorch reported inside them (not as
    /// the recipe asked): the evidence that a bf16 profile did not silently train in fp32.
    pub bf16_autocast_seen: bool,
}

impl<'a> Trainer<'a> {
    pub fn new(
        model: &'a T5,
        trainable: &nn::VarStore,
        mut recipe: Recipe,
        total_steps: usize,
    ) -> Result<Self, ModelError> {
        if let Some(share) = recipe.hyper.warmup_share {
            recipe.hyper.warmup_steps = (share * total_steps as f64).round() as usize;
        }
        // hsx's AdamW: torch's update with a correctly rounded square root, the same on every CPU
        // (see model::adamw).
        let mut opt = AdamW::new(
            trainable.trainable_variables(),
            AdamWConfig {
                lr: recipe.hyper.lr,
                beta1: recipe.hyper.adam_beta1,
                beta2: recipe.hyper.adam_beta2,
                eps: recipe.hyper.adam_eps,
                weight_decay: recipe.hyper.weight_decay,
            },
        );
        opt.set_lr(recipe.hyper.lr * linear_schedule(0, recipe.hyper.warmup_steps, total_steps));
        Ok(Self {
            model,
            opt,
            recipe,
            total_steps,
            step_no: 0,
            trainable: trainable.trainable_variables(),
            bf16_autocast_seen: false,
        })
    }

    /// One optimiser step over `micro` (the accumulation group). Returns the mean micro-batch loss, read
    /// back to the host (a device sync; the training loop uses [`Trainer::step_on_device`]).
    pub fn step(&mut self, micro: &[MicroBatch], train: bool) -> f64 {
        self.step_on_device(micro, train).double_value(&[])
    }

    /// One optimiser step over `micro`, with nothing read back to the host: the mean micro-batch loss is
    /// returned as a float64 scalar tensor on the device, summed in float64 in micro-batch order and
    /// divided by their number (the arithmetic the host did when it read each loss).
    pub fn step_on_device(&mut self, micro: &[MicroBatch], train: bool) -> Tensor {
        self.opt.set_lr(
            self.recipe.hyper.lr * linear_schedule(self.step_no, self.recipe.hyper.warmup_steps, self.total_steps),
        );
        self.opt.zero_grad();
        let n = micro.len().max(1) as f64;
        let mut total = Tensor::zeros([], (Kind::Double, self.model.device()));
        for mb in micro {
            let device = mb.ids.device();
            let mut active = false;
            let loss = crate::runtime::with_bf16_autocast(self.recipe.bf16, device, || {
                active = crate::runtime::bf16_autocast_active(device);
                self.model.loss(&mb.ids, &mb.mask, &mb.labels, train)
            });
            self.bf16_autocast_seen |= active;
            (&loss / n).backward();
            total += loss.detach().to_kind(Kind::Double);
        }
        if self.recipe.hyper.max_grad_norm > 0.0 {
            self.opt.clip_grad_norm(self.recipe.hyper.max_grad_norm);
        }
        self.opt.step();
        self.step_no += 1;
        total / n
    }

    /// One optimiser step over an accumulation group padded into one batch: one forward and backward
    /// pass instead of n, the same loss up to rounding ([`GroupBatch`]). Returns the loss on the device.
    pub fn step_group(&mut self, g: &GroupBatch, train: bool) -> Tensor {
        self.opt.set_lr(
            self.recipe.hyper.lr * linear_schedule(self.step_no, self.recipe.hyper.warmup_steps, self.total_steps),
        );
        self.opt.zero_grad();
        let device = g.batch.ids.device();
        let mut active = false;
        let loss = crate::runtime::with_bf16_autocast(self.recipe.bf16, device, || {
            active = crate::runtime::bf16_autocast_active(device);
            group_loss(self.model, g, train)
        });
        self.bf16_autocast_seen |= active;
        loss.backward();
        if self.recipe.hyper.max_grad_norm > 0.0 {
            self.opt.clip_grad_norm(self.recipe.hyper.max_grad_norm);
        }
        self.opt.step();
        self.step_no += 1;
        loss.detach().to_kind(Kind::Double)
    }

    pub fn trainable_count(&self) -> i64 {
        self.trainable.iter().map(Tensor::numel).sum::<usize>() as i64
    }
}

/// Token-weighted mean cross-entropy over `batches` (no dropout, no gradients), summed in float64 on the
/// device and read back once.
pub fn evaluate_loss(model: &T5, batches: &[MicroBatch], bf16: bool) -> f64 {
    tch::no_grad(|| {
        let mut sum = Tensor::zeros([], (Kind::Double, model.device()));
        let mut tokens = 0usize;
        for mb in batches {
            let l = crate::runtime::with_bf16_autocast(bf16, mb.ids.device(), || {
                model.loss(&mb.ids, &mb.mask, &mb.labels, false)
            });
            sum += l.to_kind(Kind::Double) * mb.target_tokens as f64;
            tokens += mb.target_tokens;
        }
        if tokens == 0 {
            f64::NAN
        } else {
            sum.double_value(&[]) / tokens as f64
        }
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub optimizer_steps: usize,
    pub epochs: usize,
    /// (step, mean loss since the previous point), every `log_every` steps.
    pub loss_curve: Vec<(usize, f64)>,
    pub val_loss_per_epoch: Vec<f64>,
    pub best_epoch: usize,
    pub final_train_loss: f64,
    pub wall_seconds: f64,
    /// "bf16 autocast" when libtorch reported autocast on inside the training forward passes, else "fp32".
    pub compute_precision: &'static str,
    pub tokens_seen: usize,
    pub padding_share: f64,
    pub trainable_parameters: i64,
    pub total_parameters: i64,
    pub trainable_share: f64,
    pub recipe: Recipe,
}

fn snapshot(vs: &nn::VarStore) -> HashMap<String, Tensor> {
    tch::no_grad(|| vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect())
}

fn restore(vs: &nn::VarStore, snap: &HashMap<String, Tensor>) {
    tch::no_grad(|| {
        for (k, v) in vs.variables() {
            if let Some(s) = snap.get(&k) {
                v.shallow_clone().copy_(s);
            }
        }
    })
}

/// Trains the trainable variables of `trainable` on `train`, validating on `val` after each epoch and
/// leaving the best epoch's weights in place (the last epoch's when there is no validation set).
// Eight inputs, each a different thing the loop needs (model, trainable weights, data, recipe, padding,
// progress); bundling them in a struct would only rename them at every call site.
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: &T5,
    trainable: &nn::VarStore,
    total_parameters: i64,
    train_set: &[Example],
    val_set: &[Example],
    recipe: &Recipe,
    pad: i64,
    progress: &dyn TrainProgress,
) -> Result<TrainReport, ModelError> {
    if train_set.is_empty() {
        return Err(ModelError::Config("the training set is empty".into()));
    }
    let start = std::time::Instant::now();
    let device = model.device();
    tch::manual_seed(recipe.seed as i64);
    let micro_per_epoch = train_set.len().div_ceil(recipe.hyper.batch_size);
    let steps_per_epoch = micro_per_epoch.div_ceil(recipe.hyper.grad_accum);
    let total_steps = steps_per_epoch * recipe.hyper.epochs;
    let mut trainer = Trainer::new(model, trainable, recipe.clone(), total_steps)?;
    progress.start(total_steps);
    let val_batches: Vec<MicroBatch> = {
        let mut idx: Vec<usize> = (0..val_set.len()).collect();
        idx.sort_by_key(|&i| val_set[i].input_ids.len());
        idx.chunks(recipe.hyper.batch_size * 2)
            .map(|c| collate(&c.iter().map(|&i| &val_set[i]).collect::<Vec<_>>(), pad, device))
            .collect()
    };
    // On CUDA an accumulation group is one batch (one launch sequence instead of n; the same loss up to
    // rounding, see GroupBatch); on the CPU the micro-batches run one by one, which pads less and keeps
    // the recorded CPU trainings' bits.
    let one_batch_steps = device.is_cuda() && recipe.hyper.grad_accum > 1;
    let mut curve = Vec::new();
    let mut window = (Tensor::zeros([], (Kind::Double, device)), 0usize);
    let mut val_losses = Vec::new();
    let mut best: Option<(usize, f64, HashMap<String, Tensor>)> = None;
    let (mut tokens, mut real, mut padded) = (0usize, 0usize, 0usize);
    let mut last_loss: Option<Tensor> = None;
    for epoch in 0..recipe.hyper.epochs {
        let batches = bucketed_batches(train_set, recipe.hyper.batch_size, recipe.seed, epoch);
        for group in batches.chunks(recipe.hyper.grad_accum) {
            let t0 = std::time::Instant::now();
            let examples: Vec<Vec<&Example>> =
                group.iter().map(|b| b.iter().map(|&i| &train_set[i]).collect()).collect();
            let (loss, step_tokens, step_real) = if one_batch_steps {
                let g = collate_group(&examples, pad, device);
                let counts = (g.batch.padded_tokens, g.batch.real_tokens);
                (trainer.step_group(&g, true), counts.0, counts.1)
            } else {
                let micro: Vec<MicroBatch> = examples.iter().map(|b| collate(b, pad, device)).collect();
                let counts = (micro.iter().map(|m| m.padded_tokens).sum(), micro.iter().map(|m| m.real_tokens).sum());
                (trainer.step_on_device(&micro, true), counts.0, counts.1)
            };
            real += step_real;
            padded += step_tokens;
            tokens += step_tokens;
            window.0 = &window.0 + &loss;
            window.1 += 1;
            last_loss = Some(loss);
            // The losses stay on the device; the window's sum is read once per log interval (the only
            // host sync of the loop besides validation), and a diverged step is caught there.
            let logged = if trainer.step_no % recipe.hyper.log_every == 0 || trainer.step_no == total_steps {
                let sum = window.0.double_value(&[]);
                if !sum.is_finite() {
                    return Err(ModelError::Config(format!(
                        "training diverged: loss sum {sum} over steps {}..={}",
                        trainer.step_no + 1 - window.1,
                        trainer.step_no
                    )));
                }
                let mean = sum / window.1 as f64;
                curve.push((trainer.step_no, crate::data::stats::round6(mean)));
                window = (Tensor::zeros([], (Kind::Double, device)), 0);
                Some(mean)
            } else {
                None
            };
            progress.step(trainer.step_no, logged, step_tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9));
        }
        let vl = (!val_batches.is_empty()).then(|| evaluate_loss(model, &val_batches, recipe.bf16));
        progress.epoch(epoch + 1, vl);
        if let Some(v) = vl {
            val_losses.push(v);
            if best.as_ref().is_none_or(|(_, b, _)| v < *b) {
                best = Some((epoch + 1, v, snapshot(trainable)));
            }
        }
    }
    let best_epoch = match best {
        Some((e, _, snap)) => {
            restore(trainable, &snap);
            e
        }
        None => recipe.hyper.epochs,
    };
    let trainable_parameters = trainer.trainable_count();
    Ok(TrainReport {
        optimizer_steps: trainer.step_no,
        epochs: recipe.hyper.epochs,
        loss_curve: curve,
        val_loss_per_epoch: val_losses,
        best_epoch,
        final_train_loss: last_loss.map_or(f64::NAN, |l| l.double_value(&[])),
        wall_seconds: start.elapsed().as_secs_f64(),
        compute_precision: if trainer.bf16_autocast_seen { "bf16 autocast" } else { "fp32" },
        tokens_seen: tokens,
        padding_share: if padded == 0 { 0.0 } else { 1.0 - real as f64 / padded as f64 },
        trainable_parameters,
        total_parameters,
        trainable_share: trainable_parameters as f64 / total_parameters.max(1) as f64,
        recipe: trainer.recipe.clone(),
    })
}

/// Token counts of every variable in a store.
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.variables().values().map(|t| t.numel() as i64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_matches_transformers_linear_warmup() {
        assert_eq!(linear_schedule(0, 100, 1000), 0.0);
        assert_eq!(linear_schedule(50, 100, 1000), 0.5);
        assert_eq!(linear_schedule(100, 100, 1000), 1.0);
        assert_eq!(linear_schedule(550, 100, 1000), 0.5);
        assert_eq!(linear_schedule(1000, 100, 1000), 0.0);
    }

    #[test]
    fn bucketing_covers_every_example_once_and_is_seeded() {
        let ex: Vec<Example> =
            (0..103).map(|i| Example { input_ids: vec![0; 1 + i % 17], labels: vec![1; 2] }).collect();
        let b = bucketed_batches(&ex, 8, 5, 0);
        let mut all: Vec<usize> = b.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        assert_eq!(b, bucketed_batches(&ex, 8, 5, 0));
        assert_ne!(b, bucketed_batches(&ex, 8, 5, 1));
    }
}
