//! T5 (v1.1 / flan-t5) on libtorch, computed exactly as Hugging Face `transformers` computes it.
//!
//! Follows `transformers`' `modeling_t5.py` for `google/flan-t5-base`: shared input embedding; RMS layer
//! norm (no mean subtraction, no bias, variance in fp32); relative position bias computed by the first
//! layer of each stack and shared by the rest (bidirectional buckets in the encoder, unidirectional in
//! the decoder); no 1/sqrt(d) attention scaling; gated-GELU feed-forward with `gelu_new` (tanh
//! approximation); dropout where transformers applies it; an untied LM head, or — when
//! `tie_word_embeddings` is true, as original T5 checkpoints need — the shared embedding with the decoder
//! output scaled by d_model^-0.5. `decoder_start_token_id` is 0.
//!
//! Variable paths are the safetensors keys (`encoder.block.0.layer.0.SelfAttention.q.weight`, ...), so
//! there is no rename table. Parity with transformers is tested against the fixture made by
//! `tests/fixtures/t5/make_t5_fixture.py` (see that script for how to regenerate it).
//!
//! ```text
//! hsx generate --model tests/fixtures/t5/model --json "some text"
//! ```
use tch::{nn, Device, Kind, Tensor};

use super::lora::{LoraConfig, LoraLinear, LoraSpec};
use super::ModelError;

mod config;
pub use config::{Act, Ffn, T5Config, REQUIRED_KEYS};

/// T5's layer norm: `w * x / sqrt(mean(x²) + eps)`, the variance in fp32.
#[derive(Debug)]
pub struct T5LayerNorm {
    weight: Tensor,
    eps: f64,
}

impl T5LayerNorm {
    fn new(p: nn::Path, d: usize, eps: f64) -> Self {
        Self { weight: p.var("weight", &[d as i64], nn::Init::Const(1.0)), eps }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let variance = x.to_kind(Kind::Float).pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let h = x * (variance + self.eps).rsqrt();
        let h = if self.weight.kind() != Kind::Float { h.to_kind(self.weight.kind()) } else { h };
        &self.weight * h
    }
}

fn activation(x: &Tensor, act: Act) -> Tensor {
    match act {
        Act::GeluNew => {
            // 0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³))), written as transformers writes it.
            let inner = (x + x.pow_tensor_scalar(3.0) * 0.044715) * (2.0f64 / std::f64::consts::PI).sqrt();
            x * 0.5 * (inner.tanh() + 1.0)
        }
        Act::Gelu => x.gelu("none"),
        Act::Relu => x.relu(),
        Act::Silu => x.silu(),
    }
}

#[derive(Debug)]
pub struct T5DenseAct {
    ffn: Ffn,
    wi_0: LoraLinear,
    wi_1: Option<LoraLinear>,
    wo: LoraLinear,
    dropout: f64,
}

impl T5DenseAct {
    fn new(p: nn::Path, cfg: &T5Config, lora: Option<&LoraCtx>) -> Result<Self, ModelError> {
        let ffn = cfg.ffn()?;
        let (d, f) = (cfg.d_model, cfg.d_ff);
        Ok(match ffn {
            Ffn::Gated(_) => Self {
                ffn,
                wi_0: LoraLinear::new(&p / "wi_0", d, f, lora.and_then(|l| l.for_module("wi_0", &p / "wi_0"))),
                wi_1: Some(LoraLinear::new(&p / "wi_1", d, f, lora.and_then(|l| l.for_module("wi_1", &p / "wi_1")))),
                wo: LoraLinear::new(&p / "wo", f, d, lora.and_then(|l| l.for_module("wo", &p / "wo"))),
                dropout: cfg.dropout_rate,
            },
            Ffn::Plain(_) => Self {
                ffn,
                wi_0: LoraLinear::new(&p / "wi", d, f, lora.and_then(|l| l.for_module("wi", &p / "wi"))),
                wi_1: None,
                wo: LoraLinear::new(&p / "wo", f, d, lora.and_then(|l| l.for_module("wo", &p / "wo"))),
                dropout: cfg.dropout_rate,
            },
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let h = match (self.ffn, &self.wi_1) {
            (Ffn::Gated(act), Some(wi_1)) => activation(&self.wi_0.forward(x, train), act) * wi_1.forward(x, train),
            (Ffn::Plain(act), _) | (Ffn::Gated(act), None) => activation(&self.wi_0.forward(x, train), act),
        };
        self.wo.forward(&h.dropout(self.dropout, train), train)
    }
}

/// Keys and values of one attention layer, kept across decoding steps.
#[derive(Debug, Default)]
pub struct KvCache {
    pub k: Option<Tensor>,
    pub v: Option<Tensor>,
}

#[derive(Debug)]
pub struct T5Attention {
    q: LoraLinear,
    k: LoraLinear,
    v: LoraLinear,
    o: LoraLinear,
    relative_attention_bias: Option<Tensor>,
    n_heads: i64,
    d_kv: i64,
    bidirectional: bool,
    num_buckets: i64,
    max_distance: i64,
    dropout: f64,
}

impl T5Attention {
    fn new(p: nn::Path, cfg: &T5Config, has_bias: bool, bidirectional: bool, lora: Option<&LoraCtx>) -> Self {
        let inner = cfg.num_heads * cfg.d_kv;
        let d = cfg.d_model;
        let lin = |name: &str, i: usize, o: usize| {
            LoraLinear::new(&p / name, i, o, lora.and_then(|l| l.for_module(name, &p / name)))
        };
        Self {
            q: lin("q", d, inner),
            k: lin("k", d, inner),
            v: lin("v", d, inner),
            o: lin("o", inner, d),
            relative_attention_bias: has_bias.then(|| {
                p.sub("relative_attention_bias").var(
                    "weight",
                    &[cfg.relative_attention_num_buckets as i64, cfg.num_heads as i64],
                    nn::Init::Randn { mean: 0.0, stdev: 1.0 },
                )
            }),
            n_heads: cfg.num_heads as i64,
            d_kv: cfg.d_kv as i64,
            bidirectional,
            num_buckets: cfg.relative_attention_num_buckets as i64,
            max_distance: cfg.relative_attention_max_distance as i64,
            dropout: cfg.dropout_rate,
        }
    }

    /// transformers' `_relative_position_bucket`, op for op, so the float rounding is the same.
    fn relative_position_bucket(&self, relative_position: &Tensor) -> Tensor {
        let mut num_buckets = self.num_buckets;
        let mut buckets = relative_position.zeros_like();
        let rel = if self.bidirectional {
            num_buckets /= 2;
            buckets += relative_position.gt(0).to_kind(Kind::Int64) * num_buckets;
            relative_position.abs()
        } else {
            -relative_position.clamp_max(0)
        };
        let max_exact = num_buckets / 2;
        let is_small = rel.lt(max_exact);
        let large = (rel.to_kind(Kind::Float) / max_exact as f64).log()
            / (self.max_distance as f64 / max_exact as f64).ln()
            * (num_buckets - max_exact) as f64;
        let large = (large.to_kind(Kind::Int64) + max_exact).clamp_max(num_buckets - 1);
        buckets + rel.where_self(&is_small, &large)
    }

    /// Position bias for queries at positions `k_len - q_len .. k_len` against keys `0 .. k_len`.
    // -> [1, heads, q_len, k_len]
    fn compute_bias(&self, q_len: i64, k_len: i64, device: Device) -> Tensor {
        let weight = self.relative_attention_bias.as_ref().expect("only the first layer computes the bias");
        let context = Tensor::arange_start(k_len - q_len, k_len, (Kind::Int64, device)).unsqueeze(1);
        let memory = Tensor::arange(k_len, (Kind::Int64, device)).unsqueeze(0);
        let buckets = self.relative_position_bucket(&(memory - context)); // [q, k]
        let values = Tensor::embedding(weight, &buckets, -1, false, false); // [q, k, heads]
        values.permute([2, 0, 1]).unsqueeze(0)
    }

    fn shape(&self, x: &Tensor) -> Tensor {
        let (b, s, _) = x.size3().expect("[batch, seq, dim]");
        x.view([b, s, self.n_heads, self.d_kv]).transpose(1, 2) // [b, heads, s, d_kv]
    }

    /// `x`: [b, q, d]; `kv_src`: the encoder output for cross-attention (None for self-attention);
    /// `bias`: [1 or b, heads, q, k] with masks folded in. Returns [b, q, d].
    fn forward(
        &self,
        x: &Tensor,
        kv_src: Option<&Tensor>,
        bias: &Tensor,
        cache: Option<&mut KvCache>,
        train: bool,
    ) -> Tensor {
        let (b, q_len, _) = x.size3().expect("[batch, seq, dim]");
        let q = self.shape(&self.q.forward(x, train));
        let (k, v) = match (kv_src, cache) {
            // Cross-attention: keys/values of the encoder output, computed once and kept.
            (Some(src), Some(c)) => {
                if c.k.is_none() {
                    c.k = Some(self.shape(&self.k.forward(src, train)));
                    c.v = Some(self.shape(&self.v.forward(src, train)));
                }
                (c.k.as_ref().unwrap().shallow_clone(), c.v.as_ref().unwrap().shallow_clone())
            }
            (Some(src), None) => (self.shape(&self.k.forward(src, train)), self.shape(&self.v.forward(src, train))),
            // Self-attention with a cache: append this step's keys/values.
            (None, Some(c)) => {
                let k_new = self.shape(&self.k.forward(x, train));
                let v_new = self.shape(&self.v.forward(x, train));
                let k = match &c.k {
                    Some(old) => Tensor::cat(&[old, &k_new], 2),
                    None => k_new,
                };
                let v = match &c.v {
                    Some(old) => Tensor::cat(&[old, &v_new], 2),
                    None => v_new,
                };
                c.k = Some(k.shallow_clone());
                c.v = Some(v.shallow_clone());
                (k, v)
            }
            (None, None) => (self.shape(&self.k.forward(x, train)), self.shape(&self.v.forward(x, train))),
        };
        let scores = q.matmul(&k.transpose(-1, -2)) + bias; // [b, heads, q, k]
        let weights = scores.softmax(-1, Kind::Float).to_kind(scores.kind()).dropout(self.dropout, train);
        let out = weights.matmul(&v).transpose(1, 2).contiguous().view([b, q_len, self.n_heads * self.d_kv]);
        self.o.forward(&out, train)
    }
}

#[derive(Debug)]
pub struct T5Block {
    self_attn: T5Attention,
    self_norm: T5LayerNorm,
    cross: Option<(T5Attention, T5LayerNorm)>,
    ff: T5DenseAct,
    ff_norm: T5LayerNorm,
    dropout: f64,
}

/// Per-layer decoder cache.
#[derive(Debug, Default)]
pub struct LayerCache {
    pub self_attn: KvCache,
    pub cross_attn: KvCache,
}

impl T5Block {
    fn new(
        p: nn::Path,
        cfg: &T5Config,
        is_decoder: bool,
        first: bool,
        lora: Option<&LoraCtx>,
    ) -> Result<Self, ModelError> {
        let eps = cfg.layer_norm_epsilon;
        let l0 = &p / "layer" / 0;
        let self_attn = T5Attention::new(&l0 / "SelfAttention", cfg, first, !is_decoder, lora);
        let self_norm = T5LayerNorm::new(&l0 / "layer_norm", cfg.d_model, eps);
        let (cross, ff_idx) = if is_decoder {
            let l1 = &p / "layer" / 1;
            let attn = T5Attention::new(&l1 / "EncDecAttention", cfg, false, true, lora);
            (Some((attn, T5LayerNorm::new(&l1 / "layer_norm", cfg.d_model, eps))), 2)
        } else {
            (None, 1)
        };
        let lf = &p / "layer" / ff_idx;
        Ok(Self {
            self_attn,
            self_norm,
            cross,
            ff: T5DenseAct::new(&lf / "DenseReluDense", cfg, lora)?,
            ff_norm: T5LayerNorm::new(&lf / "layer_norm", cfg.d_model, eps),
            dropout: cfg.dropout_rate,
        })
    }

    // `h = h + …` on purpose: tch's `+=` is libtorch's in-place `add_`, which would overwrite a tensor the
    // layer norm saved for the backward pass.
    #[allow(clippy::assign_op_pattern)]
    fn forward(
        &self,
        h: &Tensor,
        self_bias: &Tensor,
        enc: Option<(&Tensor, &Tensor)>,
        cache: Option<&mut LayerCache>,
        train: bool,
    ) -> Tensor {
        let (self_cache, cross_cache) = match cache {
            Some(c) => (Some(&mut c.self_attn), Some(&mut c.cross_attn)),
            None => (None, None),
        };
        let a = self.self_attn.forward(&self.self_norm.forward(h), None, self_bias, self_cache, train);
        let mut h = h + a.dropout(self.dropout, train);
        if let (Some((attn, norm)), Some((enc_out, cross_bias))) = (&self.cross, enc) {
            let a = attn.forward(&norm.forward(&h), Some(enc_out), cross_bias, cross_cache, train);
            h = h + a.dropout(self.dropout, train);
        }
        let f = self.ff.forward(&self.ff_norm.forward(&h), train);
        h + f.dropout(self.dropout, train)
    }
}

#[derive(Debug)]
pub struct T5Stack {
    blocks: Vec<T5Block>,
    final_layer_norm: T5LayerNorm,
    dropout: f64,
}

impl T5Stack {
    fn new(p: nn::Path, cfg: &T5Config, is_decoder: bool, lora: Option<&LoraCtx>) -> Result<Self, ModelError> {
        let n = if is_decoder { cfg.decoder_layers() } else { cfg.num_layers };
        let blocks = (0..n)
            .map(|i| T5Block::new(&p / "block" / i, cfg, is_decoder, i == 0, lora))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            blocks,
            final_layer_norm: T5LayerNorm::new(&p / "final_layer_norm", cfg.d_model, cfg.layer_norm_epsilon),
            dropout: cfg.dropout_rate,
        })
    }
}

/// Folds a [b, k] 0/1 attention mask into an additive [b, 1, 1, k] mask (transformers' convention:
/// (1 - mask) × the dtype's most negative value).
pub fn extended_mask(mask: &Tensor, kind: Kind) -> Tensor {
    (mask.to_kind(kind).ones_like() - mask.to_kind(kind)).unsqueeze(1).unsqueeze(1) * mask_min(kind)
}

/// The most negative finite value of `kind` (torch.finfo(kind).min).
fn mask_min(kind: Kind) -> f64 {
    match kind {
        Kind::BFloat16 => -3.3895313892515355e38,
        Kind::Half => -65504.0,
        _ => f32::MIN as f64,
    }
}

/// Per-layer caches for incremental decoding.
#[derive(Debug, Default)]
pub struct DecoderCache {
    pub layers: Vec<LayerCache>,
    /// Tokens decoded so far (the length of the self-attention cache).
    pub len: i64,
}

/// Context for attaching LoRA adapters while building the model.
pub struct LoraCtx<'a> {
    pub cfg: &'a LoraConfig,
    pub root: nn::Path<'a>,
}

impl LoraCtx<'_> {
    /// The adapter for `module` at base path `base`, when `module` is a target. The adapter store
    /// mirrors the base path (`<base path>.lora_A.weight`), which is also peft's key minus its prefix.
    fn for_module(&self, module: &str, base: nn::Path) -> Option<LoraSpec<'_>> {
        if !self.cfg.targets.iter().any(|t| t == module) {
            return None;
        }
        let mut p = self.root.sub("base_model");
        p = p.sub("model");
        for part in base.components() {
            p = p.sub(part);
        }
        Some(LoraSpec {
            path: p,
            r: self.cfg.r,
            scaling: self.cfg.alpha / self.cfg.r as f64,
            dropout: self.cfg.dropout,
        })
    }
}

#[derive(Debug)]
pub struct T5 {
    pub cfg: T5Config,
    shared: Tensor,
    encoder: T5Stack,
    decoder: T5Stack,
    lm_head: Option<Tensor>,
}

impl T5 {
    /// Builds the model's variables under `p` (initialised randomly; load weights afterwards). With
    /// `lora`, adapters are created in their own store for the targeted modules.
    pub fn new(p: &nn::Path, cfg: &T5Config, lora: Option<&LoraCtx>) -> Result<Self, ModelError> {
        cfg.validate()?;
        let (v, d) = (cfg.vocab_size as i64, cfg.d_model as i64);
        let shared = p.sub("shared").var("weight", &[v, d], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        let encoder = T5Stack::new(p / "encoder", cfg, false, lora)?;
        let decoder = T5Stack::new(p / "decoder", cfg, true, lora)?;
        let lm_head = (!cfg.tie_word_embeddings).then(|| {
            p.sub("lm_head").var("weight", &[v, d], nn::Init::Randn { mean: 0.0, stdev: (d as f64).powf(-0.5) })
        });
        Ok(Self { cfg: cfg.clone(), shared, encoder, decoder, lm_head })
    }

    pub fn device(&self) -> Device {
        self.shared.device()
    }

    /// Every linear layer (attention q/k/v/o, feed-forward wi/wo), encoder first.
    pub fn linears(&self) -> Vec<&LoraLinear> {
        let mut out = Vec::new();
        for stack in [&self.encoder, &self.decoder] {
            for b in &stack.blocks {
                let mut attn = vec![&b.self_attn];
                if let Some((c, _)) = &b.cross {
                    attn.push(c);
                }
                for a in attn {
                    out.extend([&a.q, &a.k, &a.v, &a.o]);
                }
                out.push(&b.ff.wi_0);
                if let Some(w) = &b.ff.wi_1 {
                    out.push(w);
                }
                out.push(&b.ff.wo);
            }
        }
        out
    }

    pub fn kind(&self) -> Kind {
        self.shared.kind()
    }

    /// `ids`, `mask`: [b, s] → encoder output [b, s, d_model].
    pub fn encode(&self, ids: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        super::usage::t5_encoder(&ids.size(), train);
        let s = self.encoder.blocks[0].self_attn.compute_bias(ids.size()[1], ids.size()[1], ids.device());
        let bias = s.to_kind(self.kind()) + extended_mask(mask, self.kind()); // [b, heads, s, s]
        let mut h = Tensor::embedding(&self.shared, ids, -1, false, false).dropout(self.encoder.dropout, train);
        for block in &self.encoder.blocks {
            h = block.forward(&h, &bias, None, None, train);
        }
        self.encoder.final_layer_norm.forward(&h).dropout(self.encoder.dropout, train)
    }

    /// Decoder over `dec_ids` [b, t] (all positions at once, causal), or one step at a time with `cache`.
    /// Returns logits [b, t, vocab].
    pub fn decode(
        &self,
        dec_ids: &Tensor,
        enc_out: &Tensor,
        enc_mask: &Tensor,
        cache: Option<&mut DecoderCache>,
        train: bool,
    ) -> Tensor {
        super::usage::t5_decoder(&dec_ids.size(), train);
        let t = dec_ids.size()[1];
        let kind = self.kind();
        let device = dec_ids.device();
        let past = cache.as_ref().map(|c| c.len).unwrap_or(0);
        let k_len = past + t;
        let pos = self.decoder.blocks[0].self_attn.compute_bias(t, k_len, device).to_kind(kind);
        // Causal mask: query i (absolute position past + i) may see keys 0 ..= past + i.
        let q_pos = Tensor::arange_start(past, k_len, (Kind::Int64, device)).unsqueeze(1);
        let k_pos = Tensor::arange(k_len, (Kind::Int64, device)).unsqueeze(0);
        let causal = k_pos.gt_tensor(&q_pos).to_kind(kind) * mask_min(kind); // [t, k]
        let self_bias = pos + causal.unsqueeze(0).unsqueeze(0);
        let cross_bias = extended_mask(enc_mask, kind); // [b, 1, 1, s]
        let mut h = Tensor::embedding(&self.shared, dec_ids, -1, false, false).dropout(self.decoder.dropout, train);
        match cache {
            Some(c) => {
                if c.layers.is_empty() {
                    c.layers = (0..self.decoder.blocks.len()).map(|_| LayerCache::default()).collect();
                }
                for (block, lc) in self.decoder.blocks.iter().zip(c.layers.iter_mut()) {
                    h = block.forward(&h, &self_bias, Some((enc_out, &cross_bias)), Some(lc), train);
                }
                c.len += t;
            }
            None => {
                for block in &self.decoder.blocks {
                    h = block.forward(&h, &self_bias, Some((enc_out, &cross_bias)), None, train);
                }
            }
        }
        let h = self.decoder.final_layer_norm.forward(&h).dropout(self.decoder.dropout, train);
        let h = if self.cfg.scales_decoder_output() { h * (self.cfg.d_model as f64).powf(-0.5) } else { h };
        super::gemm::matmul_t(&h, self.lm_head.as_ref().unwrap_or(&self.shared))
    }

    /// transformers' `_shift_right`: decoder inputs from labels (start token first, -100 → pad).
    pub fn shift_right(&self, labels: &Tensor) -> Tensor {
        let (b, _) = labels.size2().expect("[batch, len]");
        let start = Tensor::full([b, 1], self.cfg.decoder_start_token_id as i64, (Kind::Int64, labels.device()));
        let shifted = Tensor::cat(&[&start, &labels.narrow(1, 0, labels.size()[1] - 1)], 1);
        shifted.masked_fill(&shifted.eq(-100), self.cfg.pad_token_id as i64)
    }

    /// Mean token cross-entropy over labels != -100, as transformers computes `loss` for T5.
    pub fn loss(&self, ids: &Tensor, mask: &Tensor, labels: &Tensor, train: bool) -> Tensor {
        let enc = self.encode(ids, mask, train);
        let dec_in = self.shift_right(labels);
        let logits = self.decode(&dec_in, &enc, mask, None, train);
        let v = logits.size()[2];
        logits.to_kind(Kind::Float).view([-1, v]).cross_entropy_loss::<Tensor>(
            &labels.view([-1]),
            None,
            tch::Reduction::Mean,
            -100,
            0.0,
        )
    }
}
