//! BERTScore (Zhang et al., ICLR 2020) as the `bert-score` package (0.3.13) computes it: token
//! embeddings from one encoder layer, L2-normalised; each candidate token's precision is its maximum
//! cosine over the reference tokens and each reference token's recall its maximum over the candidate
//! tokens, [CLS]/[SEP] included on the side being matched *against* (the package lets a match land on
//! them) but weighted 0 on the side being averaged; weights 1 (or idf from the references, with
//! idf(w) = ln((M+1)/(df(w)+1))); F = 2PR/(P+R). An empty candidate or reference scores 0. Optional
//! baseline rescaling: (s − b)/(1 − b).
//!
//! The seed names DeBERTa; its weights cannot be fetched here, so hsx uses all-MiniLM-L6-v2 (any BERT
//! directory works) and every result names the model and layer. Each pair is scored on its own, without
//! the package's batch padding (whose zero-valued padded similarities could only matter for a token
//! whose every real similarity is negative).
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

use crate::model::bert::Bert;
use crate::model::ModelError;

#[derive(Debug, Clone)]
pub struct BertScoreOptions {
    /// Encoder layer (1-based); 0 = the last.
    pub layer: usize,
    pub idf: bool,
    /// (P, R, F) baselines for rescaling.
    pub baseline: Option<(f64, f64, f64)>,
    pub batch_size: usize,
    pub max_len: usize,
}

impl Default for BertScoreOptions {
    fn default() -> Self {
        Self { layer: 0, idf: false, baseline: None, batch_size: 64, max_len: 512 }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BertScores {
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub f1: Vec<f64>,
    pub model: String,
    pub layer: usize,
    pub idf: bool,
    pub rescaled: bool,
}

/// Per-token embeddings (normalised) of each text, in input order, on the CPU.
fn token_embeddings(
    bert: &Bert,
    texts: &[String],
    layer: usize,
    batch: usize,
    max_len: usize,
) -> Result<(Vec<Vec<i64>>, Vec<Tensor>), ModelError> {
    let ids: Vec<Vec<i64>> = texts.iter().map(|t| bert.encode_ids(t.trim(), max_len)).collect::<Result<_, _>>()?;
    let lens: Vec<usize> = ids.iter().map(Vec::len).collect();
    let batches =
        crate::model::batching::length_sorted_batches(&lens, batch, crate::model::batching::LengthOrder::LongestFirst);
    let mut out: Vec<Option<Tensor>> = (0..ids.len()).map(|_| None).collect();
    tch::no_grad(|| {
        for chunk in &batches {
            let rows: Vec<Vec<i64>> = chunk.iter().map(|&i| ids[i].clone()).collect();
            let (h, _) = bert.forward(&rows, layer);
            let h = h.to_kind(Kind::Float).to_device(Device::Cpu);
            for (j, &i) in chunk.iter().enumerate() {
                let e = h.get(j as i64).narrow(0, 0, ids[i].len() as i64);
                let n = e.norm_scalaropt_dim(2, [1], true);
                out[i] = Some(e / n);
            }
        }
    });
    Ok((ids, out.into_iter().map(|t| t.expect("embedded")).collect()))
}

pub fn bertscore(
    bert: &Bert,
    cands: &[String],
    refs: &[String],
    opts: &BertScoreOptions,
) -> Result<BertScores, ModelError> {
    assert_eq!(cands.len(), refs.len(), "candidates and references pair up");
    let layer = if opts.layer == 0 { bert.cfg.num_hidden_layers } else { opts.layer };
    if layer > bert.cfg.num_hidden_layers {
        return Err(ModelError::Config(format!(
            "BERTScore layer {layer}: the model has {} layers",
            bert.cfg.num_hidden_layers
        )));
    }
    let (cls, sep) = (
        bert.tokenizer.token_to_id("[CLS]").map(i64::from).unwrap_or(101),
        bert.tokenizer.token_to_id("[SEP]").map(i64::from).unwrap_or(102),
    );
    let (c_ids, c_emb) = token_embeddings(bert, cands, layer, opts.batch_size, opts.max_len)?;
    let (r_ids, r_emb) = token_embeddings(bert, refs, layer, opts.batch_size, opts.max_len)?;
    let idf: HashMap<i64, f64> = if opts.idf {
        let m = refs.len() as f64;
        let mut df: HashMap<i64, usize> = HashMap::new();
        for ids in &r_ids {
            let set: std::collections::HashSet<i64> = ids.iter().copied().collect();
            for t in set {
                *df.entry(t).or_default() += 1;
            }
        }
        df.into_iter().map(|(t, c)| (t, ((m + 1.0) / (c as f64 + 1.0)).ln())).collect()
    } else {
        HashMap::new()
    };
    let default_w = if opts.idf { (refs.len() as f64 + 1.0).ln() } else { 1.0 };
    let weight = |t: i64| if t == cls || t == sep { 0.0 } else { *idf.get(&t).unwrap_or(&default_w) };
    let (mut ps, mut rs, mut fs) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..cands.len() {
        let empty = |ids: &Vec<i64>| ids.iter().all(|&t| t == cls || t == sep);
        if empty(&c_ids[i]) || empty(&r_ids[i]) {
            ps.push(0.0);
            rs.push(0.0);
            fs.push(0.0);
            continue;
        }
        let sim = c_emb[i].matmul(&r_emb[i].tr()); // [cand, ref]
        let best_p: Vec<f32> = Vec::<f32>::try_from(sim.max_dim(1, false).0).expect("floats");
        let best_r: Vec<f32> = Vec::<f32>::try_from(sim.max_dim(0, false).0).expect("floats");
        let avg = |best: &[f32], ids: &[i64]| {
            let w: Vec<f64> = ids.iter().map(|&t| weight(t)).collect();
            let total: f64 = w.iter().sum();
            best.iter().zip(&w).map(|(&b, &w)| b as f64 * w).sum::<f64>() / total
        };
        let p = avg(&best_p, &c_ids[i]);
        let r = avg(&best_r, &r_ids[i]);
        let (p, r, f) = match opts.baseline {
            None => (p, r, if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 }),
            Some((bp, br, bf)) => {
                let f = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
                ((p - bp) / (1.0 - bp), (r - br) / (1.0 - br), (f - bf) / (1.0 - bf))
            }
        };
        ps.push(p);
        rs.push(r);
        fs.push(f);
    }
    Ok(BertScores {
        precision: ps,
        recall: rs,
        f1: fs,
        model: bert.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        layer,
        idf: opts.idf,
        rescaled: opts.baseline.is_some(),
    })
}
