//! T5's `config.json`: the fields hsx reads, and their checks.
use serde::Deserialize;

use crate::model::ModelError;

/// The `config.json` fields that matter; unknown keys are tolerated (HF configs carry many). Every field
/// hsx relies on must be present: none has a default here (an older or hand-written config that lacks
/// one is refused, naming it, instead of being read as something it may not say). The `Option` fields
/// are ones whose absence transformers itself defines: `num_decoder_layers` (= `num_layers`),
/// `scale_decoder_outputs` (= `tie_word_embeddings`), `dense_act_fn` / `is_gated_act` (derived from
/// `feed_forward_proj`; when present they must agree with it).
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
    pub relative_attention_num_buckets: usize,
    pub relative_attention_max_distance: usize,
    pub dropout_rate: f64,
    pub layer_norm_epsilon: f64,
    pub feed_forward_proj: String,
    /// transformers' T5Config default is true; flan-t5 sets false. Required: the two read differently.
    pub tie_word_embeddings: bool,
    /// transformers 5 writes this: whether the decoder output is scaled by d_model^-0.5 before the head.
    /// Absent (transformers 4 configs) it follows `tie_word_embeddings`.
    #[serde(default)]
    pub scale_decoder_outputs: Option<bool>,
    pub pad_token_id: usize,
    pub eos_token_id: usize,
    pub decoder_start_token_id: usize,
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub is_encoder_decoder: Option<bool>,
    /// What transformers 4 writes beside `feed_forward_proj` (and reads in preference to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense_act_fn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_gated_act: Option<bool>,
}

/// The `config.json` keys hsx reads and gives no default: each must be present. Deserialising
/// [`T5Config`] names the first absent one; [`crate::model::checkpoint`] names them all at once, and
/// requires `model_type` too.
pub const REQUIRED_KEYS: [&str; 16] = [
    "model_type",
    "vocab_size",
    "d_model",
    "d_kv",
    "d_ff",
    "num_layers",
    "num_heads",
    "relative_attention_num_buckets",
    "relative_attention_max_distance",
    "dropout_rate",
    "layer_norm_epsilon",
    "feed_forward_proj",
    "tie_word_embeddings",
    "pad_token_id",
    "eos_token_id",
    "decoder_start_token_id",
];

/// Feed-forward activation, parsed from `feed_forward_proj` at the boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// transformers' `gelu_new`: the tanh approximation.
    GeluNew,
    /// transformers' `gelu`: the exact (erf) GELU.
    Gelu,
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

    /// The feed-forward layer `feed_forward_proj` names, read as transformers' T5Config reads it: `act` or
    /// `gated-act`, with "gated-gelu" meaning gelu_new (transformers' backward-compatibility rule) and
    /// plain "gelu" the exact GELU. A `dense_act_fn` or `is_gated_act` that disagrees with it is refused:
    /// transformers would silently prefer those fields, and a config that says two things is not one to
    /// guess about.
    pub fn ffn(&self) -> Result<Ffn, ModelError> {
        let s = self.feed_forward_proj.as_str();
        let bad = |m: String| Err(ModelError::Config(format!("config.json: {m}")));
        let (gated, act_name) = match s.split_once('-') {
            Some(("gated", a)) if !a.contains('-') => (true, a),
            None => (false, s),
            _ => return bad(format!("`feed_forward_proj` {s:?} is not `act` or `gated-act`")),
        };
        let act_name = if s == "gated-gelu" { "gelu_new" } else { act_name };
        if let Some(d) = &self.dense_act_fn {
            if d != act_name {
                return bad(format!(
                    "`dense_act_fn` {d:?} disagrees with `feed_forward_proj` {s:?} (which means {act_name:?})"
                ));
            }
        }
        if let Some(g) = self.is_gated_act {
            if g != gated {
                return bad(format!("`is_gated_act` {g} disagrees with `feed_forward_proj` {s:?}"));
            }
        }
        let act = match act_name {
            "gelu_new" => Act::GeluNew,
            "gelu" => Act::Gelu,
            "relu" => Act::Relu,
            "silu" | "swish" => Act::Silu,
            other => {
                return bad(format!(
                    "`feed_forward_proj` activation {other:?} is not supported (gelu, gelu_new, relu, silu, swish)"
                ))
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
        if self.is_encoder_decoder == Some(false) {
            return bad("is_encoder_decoder", "is false; a T5 is an encoder-decoder");
        }
        if self.relative_attention_max_distance == 0 {
            return bad("relative_attention_max_distance", "must be positive");
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
