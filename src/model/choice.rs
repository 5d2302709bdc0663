//! Multiple-choice evaluation by rank classification, the way FLAN and T0 score CosmosQA: each answer
//! option is scored by the model's log-likelihood of the option's tokens (with the final `</s>`, as the
//! option would be a training target) given the prompt; the prediction is the best-scoring option.
//!
//! Both the summed and the per-token mean log-likelihood are returned; accuracy uses the mean (long
//! options are not penalised for their length), and a tie goes to the lowest option index.
use tch::{Device, Kind};

use super::t5::T5;
use super::tokenizer::pad_batch;

/// The log-likelihood of one option given its prompt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptionScore {
    /// Σ log p(token) over the option's tokens.
    pub sum: f64,
    /// `sum` / number of tokens.
    pub mean: f64,
}

/// Scores every (prompt, option) pair: `options[i]` are the tokenised options of `prompts[i]`.
/// Pairs are processed `batch` at a time, longest prompts first so padding stays small.
pub fn score_options(
    model: &T5,
    prompts: &[Vec<i64>],
    options: &[Vec<Vec<i64>>],
    batch: usize,
    pad: i64,
    bf16: bool,
) -> Vec<Vec<OptionScore>> {
    let device = model.device();
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (i, opts) in options.iter().enumerate() {
        for j in 0..opts.len() {
            pairs.push((i, j));
        }
    }
    // Longest prompt first, then longest option: batches of similar length.
    pairs.sort_by_key(|&(i, j)| (std::cmp::Reverse(prompts[i].len()), std::cmp::Reverse(options[i][j].len()), i, j));
    let mut out: Vec<Vec<OptionScore>> =
        options.iter().map(|o| vec![OptionScore { sum: 0.0, mean: 0.0 }; o.len()]).collect();
    tch::no_grad(|| {
        for chunk in pairs.chunks(batch.max(1)) {
            let ins: Vec<Vec<i64>> = chunk.iter().map(|&(i, _)| prompts[i].clone()).collect();
            let labs: Vec<Vec<i64>> = chunk.iter().map(|&(i, j)| options[i][j].clone()).collect();
            let scores =
                crate::runtime::with_bf16_autocast(bf16, device, || batch_loglik(model, &ins, &labs, pad, device));
            for (&(i, j), s) in chunk.iter().zip(scores) {
                out[i][j] = s;
            }
        }
    });
    out
}

fn batch_loglik(model: &T5, inputs: &[Vec<i64>], labels: &[Vec<i64>], pad: i64, device: Device) -> Vec<OptionScore> {
    let (ids, mask) = pad_batch(inputs, pad, device);
    let (lab, lmask) = pad_batch(labels, pad, device);
    let lab = lab.masked_fill(&lmask.eq(0), -100);
    let enc = model.encode(&ids, &mask, false);
    let logits = model.decode(&model.shift_right(&lab), &enc, &mask, None, false).to_kind(Kind::Float);
    let logp = logits.log_softmax(-1, Kind::Float);
    let gathered = logp.gather(2, &lab.clamp_min(0).unsqueeze(-1), false).squeeze_dim(-1) * lmask.to_kind(Kind::Float);
    let sums =
        Vec::<f64>::try_from(gathered.sum_dim_intlist([1i64].as_slice(), false, Kind::Double)).unwrap_or_default();
    sums.iter()
        .zip(labels)
        .map(|(&s, l)| OptionScore { sum: s, mean: if l.is_empty() { f64::NAN } else { s / l.len() as f64 } })
        .collect()
}

/// The index of the best option by mean log-likelihood (ties: the lowest index); `None` when empty.
pub fn best_option(scores: &[OptionScore]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (j, s) in scores.iter().enumerate() {
        if best.is_none_or(|(_, m)| s.mean > m) {
            best = Some((j, s.mean));
        }
    }
    best.map(|(j, _)| j)
}

/// Per-example 1/0 correctness: the labelled option ranks first.
pub fn correct(scores: &[Vec<OptionScore>], labels: &[usize]) -> Vec<f64> {
    scores.iter().zip(labels).map(|(s, &l)| if best_option(s) == Some(l) { 1.0 } else { 0.0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(mean: f64) -> OptionScore {
        OptionScore { sum: mean * 2.0, mean }
    }

    #[test]
    fn best_option_by_mean_with_ties_to_the_lowest_index() {
        assert_eq!(best_option(&[s(-2.0), s(-1.0), s(-1.0), s(-3.0)]), Some(1));
        assert_eq!(best_option(&[]), None);
        assert_eq!(correct(&[vec![s(-2.0), s(-1.0)], vec![s(-1.0), s(-2.0)]], &[1, 1]), vec![1.0, 0.0]);
    }
}
