//! T5's `config.json`: the fields hsx reads, and their checks.
use serde::Deserialize;

use crate::model::ModelError;

/// The `config.json` fields that matter; unknown keys are tolerated (HF configs carry many).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    #[serde(default)]
    pub num_decoder_layers: Option<usize>,
    pub num_heads: usize,
    #[serde(default = "d_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "d_maxdist")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "d_dropout")]
    pub dropout_rate: f64,
    #[serde(default = "d_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "d_ffproj")]
    pub feed_forward_proj: String,
    /// transformers' T5Config default is true; flan-t5 sets false.
    #[serde(default = "d_true")]
    pub tie_word_embeddings: bool,
    /// transformers 5 writes this: whether the decoder output is scaled by d_model^-0.5 before the head.
    /// Absent (transformers 4 configs) it follows `tie_word_embeddings`.
    #[serde(default)]
    pub scale_decoder_outputs: Option<bool>,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default = "d_eos")]
    pub eos_token_id: usize,
    #[serde(default)]
    pub decoder_start_token_id: usize,
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub is_encoder_decoder: Option<bool>,
}

fn d_buckets() -> usize {
    32
}
fn d_maxdist() -> usize {
    128
}
fn d_dropout() -> f64 {
    0.1
}
fn d_eps() -> f64 {
    1e-6
}
fn d_ffproj() -> String {
    "relu".into()
}
fn d_true() -> bool {
    true
}
fn d_eos() -> usize {
    1
}

/// Feed-forward activation, parsed from `feed_forward_proj` at the boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// transformers' `gelu_new`: the tanh approximation.
    GeluNew,
    Relu,
    Silu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ffn {
    /// `act(wi_0 x) * wi_1 x` then `wo` (T5 v1.1, flan-t5).
    Gated(Act),
    /// `act(wi x)` then `wo` (original T5).
    Plain(Act),
}

impl T5Config {
    pub fn scales_decoder_output(&self) -> bool {
        self.scale_decoder_outputs.unwrap_or(self.tie_word_embeddings)
    }

    pub fn decoder_layers(&self) -> usize {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }

    pub fn ffn(&self) -> Result<Ffn, ModelError> {
        let s = self.feed_forward_proj.as_str();
        let (gated, act) = match s.split_once('-') {
            Some(("gated", a)) => (true, a),
            None => (false, s),
            _ => return Err(ModelError::Config(format!("feed_forward_proj {s:?} is not `act` or `gated-act`"))),
        };
        let act = match act {
            // transformers maps "gated-gelu" to gelu_new; plain "gelu" too in T5.
            "gelu" | "gelu_new" => Act::GeluNew,
            "relu" => Act::Relu,
            "silu" | "swish" => Act::Silu,
            other => {
                return Err(ModelError::Config(format!(
                    "feed_forward_proj activation {other:?} is not supported (gelu, relu, silu)"
                )))
            }
        };
        Ok(if gated { Ffn::Gated(act) } else { Ffn::Plain(act) })
    }

    /// Checks the fields that matter.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |k: &str, m: &str| Err(ModelError::Config(format!("config.json: `{k}` {m}")));
        if let Some(t) = &self.model_type {
            if t != "t5" {
                return bad("model_type", &format!("is {t:?}; hsx loads T5 (t5) checkpoints"));
            }
        }
        for (k, v) in [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("d_ff", self.d_ff),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("relative_attention_num_buckets", self.relative_attention_num_buckets),
        ] {
            if v == 0 {
                return bad(k, "must be positive");
            }
        }
        if self.decoder_layers() == 0 {
            return bad("num_decoder_layers", "must be positive");
        }
        if !(0.0..1.0).contains(&self.dropout_rate) {
            return bad("dropout_rate", "must be in [0, 1)");
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon <= 0.0 {
            return bad("layer_norm_epsilon", "must be positive");
        }
        if self.pad_token_id >= self.vocab_size
            || self.eos_token_id >= self.vocab_size
            || self.decoder_start_token_id >= self.vocab_size
        {
            return bad("pad_token_id/eos_token_id/decoder_start_token_id", "must be below vocab_size");
        }
        self.ffn()?;
        Ok(())
    }
}
