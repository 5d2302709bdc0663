//! The checks a base-model directory passes before anything runs: the `base-model` stage runs
//! [`check_dir`] on `models/flan-t5-base` (and on the rehearsal's random model), so a download in the
//! wrong shape fails there, naming the file and the key or tensor, instead of deep inside a later stage.
//!
//! What is checked, in order (the first failing part is the error; within a part, everything wrong is
//! named):
//! 1. `config.json`: every key hsx reads without a default of its own is present
//!    ([`super::t5::REQUIRED_KEYS`]), and each value is supported (`T5Config::validate`:
//!    `model_type` "t5", positive sizes, the feed-forward activation, special ids below `vocab_size`).
//! 2. `model.safetensors`: the header is read (not the tensors), every tensor's byte range is where the
//!    header says and the file ends where its data ends (a truncated download fails here); every tensor
//!    the config implies is present with its shape, none is unexpected, and each dtype is one hsx loads
//!    (F32, BF16, F16). `encoder.embed_tokens.weight` and `decoder.embed_tokens.weight` (and, for a tied
//!    head, `lm_head.weight`), when present, must equal `shared.weight` byte for byte: hsx, like
//!    transformers, uses `shared.weight` for them.
//! 3. `tokenizer.json`: its entries fit the embedding (`vocab_size` rows); `<pad>` and `</s>` are the
//!    config's `pad_token_id` and `eos_token_id`, `<unk>` exists, and encoding appends `</s>`.
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::{file_err, read_t5_config, ModelError, T5Config, TextTokenizer};
use safetensors::tensor::{Dtype, Metadata};

/// The tensors a header lists: name → (dtype, shape, byte range in the data).
type Found = BTreeMap<String, (Dtype, Vec<usize>, (usize, usize))>;
/// Tensor name → shape.
type Shapes = BTreeMap<String, Vec<usize>>;

/// The largest safetensors header hsx reads (the format's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// What the check found; `base-model` records it in its metrics.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CheckpointSummary {
    pub tensors: usize,
    pub parameters: u64,
    /// dtype → number of tensors.
    pub dtypes: BTreeMap<String, usize>,
    /// Redundant copies of `shared.weight` the file carries (checked equal).
    pub shared_copies: Vec<String>,
    pub tokenizer_entries: usize,
    pub embedding_rows: usize,
    pub pad_token_id: usize,
    pub eos_token_id: usize,
    pub decoder_start_token_id: usize,
    pub unk_id: u32,
}

/// Checks `dir` (see the module docs).
pub fn check_dir(dir: &Path) -> Result<CheckpointSummary, ModelError> {
    if !dir.is_dir() {
        return Err(file_err(dir, "is not a directory (expected config.json, model.safetensors, tokenizer.json)"));
    }
    let cfg = check_config(dir)?;
    let weights = dir.join("model.safetensors");
    if !weights.is_file() {
        return Err(file_err(
            &weights,
            "is missing: the base model's weights are the single file model.safetensors, as the hub ships \
             flan-t5-base (other weight formats and shards are not read)",
        ));
    }
    let (header, header_len) = read_header(&weights)?;
    let found: Found = header
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, (info.dtype, info.shape.clone(), info.data_offsets)))
        .collect();
    check_layout(&weights, &found, header_len)?;
    let (expected, copies) = expected_tensors(&cfg)?;
    check_names_and_shapes(&weights, &found, &expected, &copies)?;
    let mut dtypes = BTreeMap::new();
    for (name, (dtype, _, _)) in &found {
        if !matches!(dtype, Dtype::F32 | Dtype::BF16 | Dtype::F16) {
            return Err(file_err(&weights, format!("tensor `{name}` has dtype {dtype:?}; hsx loads F32, BF16 or F16")));
        }
        *dtypes.entry(format!("{dtype:?}")).or_insert(0) += 1;
    }
    let mut shared_copies = Vec::new();
    for copy in copies.iter().filter(|c| found.contains_key(*c)) {
        check_equal_to_shared(&weights, header_len, &found, copy)?;
        shared_copies.push(copy.clone());
    }
    let parameters = expected.values().map(|s| s.iter().product::<usize>() as u64).sum();
    let (tokenizer_entries, unk_id) = check_tokenizer(dir, &cfg)?;
    Ok(CheckpointSummary {
        tensors: found.len(),
        parameters,
        dtypes,
        shared_copies,
        tokenizer_entries,
        embedding_rows: cfg.vocab_size,
        pad_token_id: cfg.pad_token_id,
        eos_token_id: cfg.eos_token_id,
        decoder_start_token_id: cfg.decoder_start_token_id,
        unk_id,
    })
}

fn check_config(dir: &Path) -> Result<T5Config, ModelError> {
    let p = dir.join("config.json");
    let text = crate::fsx::read_file_string(&p, crate::fsx::Limit::CONFIG)
        .map_err(|e| file_err(&p, format!("cannot read: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_err(&p, format!("not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| file_err(&p, "is not a JSON object"))?;
    let missing: Vec<&str> =
        super::t5::REQUIRED_KEYS.into_iter().filter(|k| obj.get(*k).is_none_or(serde_json::Value::is_null)).collect();
    if !missing.is_empty() {
        return Err(file_err(
            &p,
            format!(
                "lacks {} (hsx assumes no default for these): add them as the model was trained",
                missing.join(", ")
            ),
        ));
    }
    read_t5_config(dir)
}

/// Reads the safetensors header of `path` (not its tensors). Returns it and its length in bytes.
fn read_header(path: &Path) -> Result<(Metadata, u64), ModelError> {
    let mut f = crate::ledger::files::open_regular(path, crate::fsx::Limit::WEIGHTS)
        .map_err(|e| file_err(path, format!("cannot open: {e}")))?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|_| file_err(path, "is shorter than a safetensors header (truncated?)"))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER {
        return Err(file_err(path, format!("declares a {n}-byte header: not a safetensors file")));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|_| file_err(path, "ends inside its header (truncated?)"))?;
    let text = std::str::from_utf8(&header).map_err(|_| file_err(path, "its header is not UTF-8"))?;
    let meta: Metadata = serde_json::from_str(text)
        .map_err(|e| file_err(path, format!("its header is not a safetensors header: {e}")))?;
    Ok((meta, 8 + n))
}

/// Every tensor's bytes lie back to back from the end of the header, match its dtype and shape, and the
/// file ends where the last one does.
fn check_layout(path: &Path, found: &Found, header_len: u64) -> Result<(), ModelError> {
    let mut ranges: Vec<(usize, usize, &str)> = found.iter().map(|(n, (_, _, (s, e)))| (*s, *e, n.as_str())).collect();
    ranges.sort();
    let mut at = 0usize;
    for (s, e, name) in &ranges {
        if *s != at || e < s {
            return Err(file_err(
                path,
                format!("tensor `{name}`'s bytes [{s}, {e}) do not follow the previous tensor's (at {at})"),
            ));
        }
        at = *e;
    }
    for (name, (dtype, shape, (s, e))) in found {
        let want = shape.iter().try_fold(dtype.size(), |a, &d| a.checked_mul(d));
        if want != Some(e - s) {
            return Err(file_err(
                path,
                format!("tensor `{name}` holds {} bytes, its dtype {dtype:?} and shape {shape:?} need {want:?}", e - s),
            ));
        }
    }
    let len = std::fs::metadata(path).map_err(|e| file_err(path, e.to_string()))?.len();
    let end = header_len + at as u64;
    if len != end {
        return Err(file_err(
            path,
            format!(
                "is {len} bytes, its header describes {end}: {} (re-download it)",
                if len < end { "truncated" } else { "trailing bytes" }
            ),
        ));
    }
    Ok(())
}

/// The tensors a T5 of `cfg` has under transformers' names, with their shapes, and the names that may
/// carry a copy of `shared.weight`.
pub fn expected_tensors(cfg: &T5Config) -> Result<(Shapes, Vec<String>), ModelError> {
    let (d, v, f, inner) = (cfg.d_model, cfg.vocab_size, cfg.d_ff, cfg.num_heads * cfg.d_kv);
    let gated = matches!(cfg.ffn()?, super::t5::Ffn::Gated(_));
    let mut t = BTreeMap::new();
    t.insert("shared.weight".to_owned(), vec![v, d]);
    let mut copies = vec!["encoder.embed_tokens.weight".to_owned(), "decoder.embed_tokens.weight".to_owned()];
    if cfg.tie_word_embeddings {
        copies.push("lm_head.weight".into());
    } else {
        t.insert("lm_head.weight".into(), vec![v, d]);
    }
    for (stack, layers, decoder) in [("encoder", cfg.num_layers, false), ("decoder", cfg.decoder_layers(), true)] {
        t.insert(format!("{stack}.final_layer_norm.weight"), vec![d]);
        for i in 0..layers {
            let b = format!("{stack}.block.{i}.layer");
            let attn: &[(&str, usize)] =
                if decoder { &[("SelfAttention", 0), ("EncDecAttention", 1)] } else { &[("SelfAttention", 0)] };
            for (name, l) in attn {
                for w in ["q", "k", "v"] {
                    t.insert(format!("{b}.{l}.{name}.{w}.weight"), vec![inner, d]);
                }
                t.insert(format!("{b}.{l}.{name}.o.weight"), vec![d, inner]);
                t.insert(format!("{b}.{l}.layer_norm.weight"), vec![d]);
            }
            if i == 0 {
                t.insert(
                    format!("{b}.0.SelfAttention.relative_attention_bias.weight"),
                    vec![cfg.relative_attention_num_buckets, cfg.num_heads],
                );
            }
            let ff = format!("{b}.{}", attn.len());
            let wi: &[&str] = if gated { &["wi_0", "wi_1"] } else { &["wi"] };
            for w in wi {
                t.insert(format!("{ff}.DenseReluDense.{w}.weight"), vec![f, d]);
            }
            t.insert(format!("{ff}.DenseReluDense.wo.weight"), vec![d, f]);
            t.insert(format!("{ff}.layer_norm.weight"), vec![d]);
        }
    }
    Ok((t, copies))
}

/// Names every missing, unexpected and mis-shaped tensor (up to ten of each, with the count).
fn check_names_and_shapes(
    path: &Path,
    found: &Found,
    expected: &BTreeMap<String, Vec<usize>>,
    copies: &[String],
) -> Result<(), ModelError> {
    let shared_shape = &expected["shared.weight"];
    let missing: Vec<String> = expected.keys().filter(|k| !found.contains_key(*k)).cloned().collect();
    let unexpected: Vec<String> =
        found.keys().filter(|k| !expected.contains_key(*k) && !copies.contains(k)).cloned().collect();
    let misshaped: Vec<String> = found
        .iter()
        .filter_map(|(k, (_, shape, _))| {
            let want = expected.get(k).or(copies.contains(k).then_some(shared_shape))?;
            (shape != want).then(|| format!("{k} is {shape:?}, the config implies {want:?}"))
        })
        .collect();
    let mut parts = Vec::new();
    for (what, names) in [("missing", &missing), ("unexpected", &unexpected), ("mis-shaped", &misshaped)] {
        if !names.is_empty() {
            let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
            let more = if names.len() > 10 { format!(" and {} more", names.len() - 10) } else { String::new() };
            parts.push(format!("{} {what} tensor(s): {}{more}", names.len(), shown.join("; ")));
        }
    }
    if parts.is_empty() {
        return Ok(());
    }
    Err(file_err(path, format!("does not match config.json: {}", parts.join(" | "))))
}

/// `copy` must hold exactly `shared.weight`'s bytes (same dtype and shape, checked before).
fn check_equal_to_shared(path: &Path, header_len: u64, found: &Found, copy: &str) -> Result<(), ModelError> {
    let (a, b) = (&found["shared.weight"], &found[copy]);
    let differs = || {
        file_err(path, format!("tensor `{copy}` differs from `shared.weight`; hsx (as transformers) uses shared.weight for it, so the file is not one model"))
    };
    if a.0 != b.0 {
        return Err(differs());
    }
    let io = |e: std::io::Error| file_err(path, e.to_string());
    let mut fa = crate::ledger::files::open_regular(path, crate::fsx::Limit::WEIGHTS).map_err(io)?.into_file();
    let mut fb = crate::ledger::files::open_regular(path, crate::fsx::Limit::WEIGHTS).map_err(io)?.into_file();
    fa.seek(SeekFrom::Start(header_len + a.2 .0 as u64)).map_err(io)?;
    fb.seek(SeekFrom::Start(header_len + b.2 .0 as u64)).map_err(io)?;
    let (mut left, mut ba, mut bb) = (a.2 .1 - a.2 .0, vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    while left > 0 {
        let n = left.min(ba.len());
        fa.read_exact(&mut ba[..n]).map_err(io)?;
        fb.read_exact(&mut bb[..n]).map_err(io)?;
        if ba[..n] != bb[..n] {
            return Err(differs());
        }
        left -= n;
    }
    Ok(())
}

/// Returns (entries, unk id).
fn check_tokenizer(dir: &Path, cfg: &T5Config) -> Result<(usize, u32), ModelError> {
    let p = dir.join("tokenizer.json");
    let tok = TextTokenizer::load(&p)?;
    let inner = tok.inner();
    let entries = inner.get_vocab_size(true);
    if entries > cfg.vocab_size {
        return Err(file_err(&p, format!("has {entries} entries but config.json's vocab_size (the embedding's rows) is {}: ids past it have no embedding", cfg.vocab_size)));
    }
    for (token, key, want) in [("<pad>", "pad_token_id", cfg.pad_token_id), ("</s>", "eos_token_id", cfg.eos_token_id)]
    {
        match inner.token_to_id(token) {
            Some(id) if id as usize == want => {}
            Some(id) => return Err(file_err(&p, format!("{token} is id {id}, config.json's {key} is {want}"))),
            None => return Err(file_err(&p, format!("has no {token} token (config.json's {key} is {want})"))),
        }
    }
    let unk = inner.token_to_id("<unk>").ok_or_else(|| file_err(&p, "has no <unk> token"))?;
    let ids = tok.encode("a", None)?;
    if ids.last() != Some(&(cfg.eos_token_id as i64)) {
        return Err(file_err(
            &p,
            format!("does not append </s> (id {}) when encoding: its post_processor is not T5's", cfg.eos_token_id),
        ));
    }
    Ok((entries, unk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_tensors_are_the_variables_hsx_builds() {
        // For gated and plain feed-forward layers, tied and untied heads: the names and shapes the check
        // expects are exactly the variables of hsx's own T5, so the check and the loader agree.
        let base = read_t5_config(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/t5/model"))).unwrap();
        for (ffp, tied) in [("gated-gelu", false), ("relu", true), ("gated-silu", true)] {
            let cfg = T5Config {
                feed_forward_proj: ffp.into(),
                tie_word_embeddings: tied,
                dense_act_fn: None,
                is_gated_act: None,
                num_decoder_layers: Some(3),
                ..base.clone()
            };
            let vs = tch::nn::VarStore::new(tch::Device::Cpu);
            let _m = super::super::T5::new(&vs.root(), &cfg, None).unwrap();
            let built: BTreeMap<String, Vec<usize>> =
                vs.variables().into_iter().map(|(k, t)| (k, t.size().iter().map(|&s| s as usize).collect())).collect();
            let (expected, copies) = expected_tensors(&cfg).unwrap();
            assert_eq!(built, expected, "{ffp}, tied {tied}");
            assert_eq!(copies.contains(&"lm_head.weight".to_owned()), tied);
        }
    }

    #[test]
    fn the_rehearsals_random_model_passes_the_checks() {
        // base-model checks the random model of configs/base-rehearsal.toml too: what hsx writes must be a
        // checkpoint in the shape it demands of flan-t5-base (here at a small size).
        let d = tempfile::tempdir().unwrap();
        let arch = crate::config::T5Arch {
            d_model: 16,
            d_ff: 32,
            d_kv: 4,
            num_heads: 4,
            num_layers: 1,
            num_decoder_layers: 2,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            dropout_rate: 0.1,
        };
        let texts: Vec<String> =
            (0..40).map(|i| format!("the narrator went to the store on day {i} because she needed milk")).collect();
        let tok = crate::config::TokenizerSpec { vocab_size: 200, extra_ids: 10 };
        super::super::pretrain::build_random_model(&texts, &arch, 208, &tok, 7, d.path(), d.path()).unwrap();
        let s = check_dir(d.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.tokenizer_entries, s.embedding_rows), (200, 208));
        assert_eq!(s.dtypes.keys().collect::<Vec<_>>(), ["F32"]);
    }
}
