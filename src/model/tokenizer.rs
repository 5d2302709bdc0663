//! Tokenizers loaded from `tokenizer.json` with the `tokenizers` crate (T5's Unigram appends `</s>`).
use std::path::Path;
use tch::{Device, Kind, Tensor};

use super::ModelError;

pub struct TextTokenizer {
    tok: tokenizers::Tokenizer,
    pub pad_id: i64,
    pub eos_id: i64,
}

impl TextTokenizer {
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let mut tok = super::read_tokenizer(path)?;
        // Padding and truncation are done here, explicitly, whatever the file says.
        tok.with_padding(None);
        tok.with_truncation(None).map_err(|e| ModelError::File { path: path.to_owned(), message: e.to_string() })?;
        let pad_id = tok.token_to_id("<pad>").map(i64::from).unwrap_or(0);
        let eos_id = tok.token_to_id("</s>").map(i64::from).unwrap_or(1);
        Ok(Self { tok, pad_id, eos_id })
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.tok
    }

    /// Token ids with the tokenizer's special tokens (T5: a final `</s>`), truncated to `max_len` keeping
    /// the final `</s>` as transformers' truncation does.
    pub fn encode(&self, text: &str, max_len: Option<usize>) -> Result<Vec<i64>, ModelError> {
        let enc =
            self.tok.encode(text, true).map_err(|e| ModelError::Config(format!("cannot tokenize {text:?}: {e}")))?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i as i64).collect();
        if let Some(m) = max_len {
            if ids.len() > m && m > 0 {
                let ends_with_eos = ids.last() == Some(&self.eos_id);
                ids.truncate(if ends_with_eos { m - 1 } else { m });
                if ends_with_eos {
                    ids.push(self.eos_id);
                }
            }
        }
        Ok(ids)
    }

    pub fn decode(&self, ids: &[i64]) -> Result<String, ModelError> {
        let ids: Vec<u32> = ids.iter().filter(|&&i| i >= 0).map(|&i| i as u32).collect();
        self.tok.decode(&ids, true).map_err(|e| ModelError::Config(format!("cannot decode: {e}")))
    }
}

/// Right-pads id rows with `pad` into ([b, s] ids, [b, s] 0/1 mask).
pub fn pad_batch(rows: &[Vec<i64>], pad: i64, device: Device) -> (Tensor, Tensor) {
    let s = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut ids = Vec::with_capacity(rows.len() * s);
    let mut mask = Vec::with_capacity(rows.len() * s);
    for r in rows {
        ids.extend_from_slice(r);
        ids.extend(std::iter::repeat_n(pad, s - r.len()));
        mask.extend(std::iter::repeat_n(1i64, r.len()));
        mask.extend(std::iter::repeat_n(0i64, s - r.len()));
    }
    let b = rows.len() as i64;
    (
        Tensor::from_slice(&ids).view([b, s as i64]).to_device(device),
        Tensor::from_slice(&mask).view([b, s as i64]).to_kind(Kind::Int64).to_device(device),
    )
}
