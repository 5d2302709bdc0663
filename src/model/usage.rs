//! Token counters: how many token positions each stage pushed through the models, recorded per stage in
//! its ledger entry (`metrics.resources`, see `crate::pipeline`) and read by the base-profile projection
//! (docs/base-profile.md). Counted are computed positions, padding included, since padding costs the
//! same arithmetic: T5 encoder and decoder positions, split into those run in training mode (a forward
//! and a backward pass) and those run for inference; and BERT (MiniLM) positions for BERTScore and the
//! semantic filter.
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

static ENCODER_TRAIN: AtomicU64 = AtomicU64::new(0);
static DECODER_TRAIN: AtomicU64 = AtomicU64::new(0);
static ENCODER_INFER: AtomicU64 = AtomicU64::new(0);
static DECODER_INFER: AtomicU64 = AtomicU64::new(0);
static BERT: AtomicU64 = AtomicU64::new(0);

/// Token positions since the last [`reset`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// T5 encoder positions in training mode (forward and backward).
    pub t5_encoder_train: u64,
    /// T5 decoder positions in training mode (forward and backward).
    pub t5_decoder_train: u64,
    /// T5 encoder positions without training (generation, scoring, validation loss).
    pub t5_encoder_infer: u64,
    /// T5 decoder positions without training; incremental generation counts one per row per step.
    pub t5_decoder_infer: u64,
    /// BERT encoder positions (BERTScore, the semantic filter).
    pub bert: u64,
}

/// What one stage cost, as its ledger entry records it in `metrics.resources` (the executor measures it,
/// `crate::pipeline`; the report's §13 prints it; `reproduce` does not compare it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Seconds, rounded to the millisecond.
    pub wall_seconds: f64,
    /// The process's peak resident memory during the stage; null where `/proc/self/status` has none.
    pub peak_rss_bytes: Option<u64>,
    /// What the peak covers: "this stage", or the process so far when the high-water mark could not be reset.
    pub peak_rss_scope: String,
    pub tokens: Usage,
}

pub fn reset() {
    for c in [&ENCODER_TRAIN, &DECODER_TRAIN, &ENCODER_INFER, &DECODER_INFER, &BERT] {
        c.store(0, Ordering::Relaxed);
    }
}

pub fn now() -> Usage {
    Usage {
        t5_encoder_train: ENCODER_TRAIN.load(Ordering::Relaxed),
        t5_decoder_train: DECODER_TRAIN.load(Ordering::Relaxed),
        t5_encoder_infer: ENCODER_INFER.load(Ordering::Relaxed),
        t5_decoder_infer: DECODER_INFER.load(Ordering::Relaxed),
        bert: BERT.load(Ordering::Relaxed),
    }
}

fn positions(size: &[i64]) -> u64 {
    size.iter().take(2).map(|&d| d.max(0) as u64).product()
}

pub(crate) fn t5_encoder(size: &[i64], train: bool) {
    (if train { &ENCODER_TRAIN } else { &ENCODER_INFER }).fetch_add(positions(size), Ordering::Relaxed);
}

pub(crate) fn t5_decoder(size: &[i64], train: bool) {
    (if train { &DECODER_TRAIN } else { &DECODER_INFER }).fetch_add(positions(size), Ordering::Relaxed);
}

pub(crate) fn bert(tokens: usize) {
    BERT.fetch_add(tokens as u64, Ordering::Relaxed);
}
