//! ROUGE-1, ROUGE-2 and ROUGE-L F-measures exactly as Google's `rouge-score` (`RougeScorer`) computes
//! them with its default tokenizer: lowercase; every run of characters outside a–z0–9 becomes one
//! separator (so "café" gives "caf"); with `use_stemmer`, tokens longer than 3 characters are stemmed
//! by NLTK's Porter stemmer ([`super::porter`]). ROUGE-N counts clipped n-gram overlaps; ROUGE-L uses
//! the longest common subsequence of tokens. F = 2PR/(P+R), and 0 when either side has no tokens.
use std::collections::HashMap;

pub fn tokenize(text: &str, stem: bool) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut tokens = Vec::new();
    let mut cur = String::new();
    for c in lower.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            cur.push(c);
        } else if !cur.is_empty() {
            tokens.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    if stem {
        for t in tokens.iter_mut() {
            if t.len() > 3 {
                *t = stem_cached(t);
            }
        }
    }
    tokens.retain(|t| !t.is_empty());
    tokens
}

thread_local! {
    // Stemming is a pure function of the word; answers repeat words, so remember them.
    static STEMS: std::cell::RefCell<HashMap<String, String>> = std::cell::RefCell::new(HashMap::new());
}

fn stem_cached(word: &str) -> String {
    STEMS.with(|m| {
        let mut m = m.borrow_mut();
        if let Some(s) = m.get(word) {
            return s.clone();
        }
        let s = super::porter::stem(word);
        if m.len() < 1_000_000 {
            m.insert(word.to_owned(), s.clone());
        }
        s
    })
}

/// Clipped overlap of two multisets given as sorted keys.
fn sorted_overlap<T: Ord>(a: &[T], b: &[T]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

fn prf(overlap: usize, pred_total: usize, ref_total: usize) -> Prf {
    let precision = overlap as f64 / pred_total.max(1) as f64;
    let recall = overlap as f64 / ref_total.max(1) as f64;
    let fmeasure = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    Prf { precision, recall, fmeasure }
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut m = HashMap::new();
    if tokens.len() >= n {
        for w in tokens.windows(n) {
            *m.entry(w).or_default() += 1;
        }
    }
    m
}

/// ROUGE-N of `pred` against `reference` (tokenized).
pub fn rouge_n(pred: &[String], reference: &[String], n: usize) -> Prf {
    let p = ngrams(pred, n);
    let r = ngrams(reference, n);
    let overlap: usize = r.iter().map(|(g, &c)| c.min(*p.get(g).unwrap_or(&0))).sum();
    prf(overlap, p.values().sum(), r.values().sum())
}

fn lcs(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

pub fn rouge_l(pred: &[String], reference: &[String]) -> Prf {
    if pred.is_empty() || reference.is_empty() {
        return Prf { precision: 0.0, recall: 0.0, fmeasure: 0.0 };
    }
    prf(lcs(reference, pred), pred.len(), reference.len())
}

/// (ROUGE-1, ROUGE-2, ROUGE-L) F-measures. Same results as [`rouge_n`] and [`rouge_l`]; tokens are
/// interned to integers first so counting is sorting and merging.
pub fn rouge_f(pred: &str, reference: &str, stem: bool) -> (f64, f64, f64) {
    let p = tokenize(pred, stem);
    let r = tokenize(reference, stem);
    let mut vocab: HashMap<&str, u32> = HashMap::with_capacity(p.len() + r.len());
    let pi: Vec<u32> = p
        .iter()
        .map(|t| {
            let n = vocab.len() as u32;
            *vocab.entry(t.as_str()).or_insert(n)
        })
        .collect();
    let ri: Vec<u32> = r
        .iter()
        .map(|t| {
            let n = vocab.len() as u32;
            *vocab.entry(t.as_str()).or_insert(n)
        })
        .collect();
    let mut p1 = pi.clone();
    let mut r1 = ri.clone();
    p1.sort_unstable();
    r1.sort_unstable();
    let f_of = |overlap: usize, np: usize, nr: usize| prf(overlap, np, nr).fmeasure;
    let r1f = f_of(sorted_overlap(&p1, &r1), p1.len(), r1.len());
    let bigrams = |v: &[u32]| {
        let mut b: Vec<u64> = v.windows(2).map(|w| ((w[0] as u64) << 32) | w[1] as u64).collect();
        b.sort_unstable();
        b
    };
    let (p2, r2) = (bigrams(&pi), bigrams(&ri));
    let r2f = f_of(sorted_overlap(&p2, &r2), p2.len(), r2.len());
    let rlf = if pi.is_empty() || ri.is_empty() {
        0.0
    } else {
        let mut prev = vec![0u32; pi.len() + 1];
        let mut cur = vec![0u32; pi.len() + 1];
        for x in &ri {
            for (j, y) in pi.iter().enumerate() {
                cur[j + 1] = if x == y { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
            }
            std::mem::swap(&mut prev, &mut cur);
        }
        f_of(prev[pi.len()] as usize, pi.len(), ri.len())
    };
    (r1f, r2f, rlf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_rules() {
        assert_eq!(tokenize("Café au-lait, 2 cups!", false), ["caf", "au", "lait", "2", "cups"]);
        assert_eq!(tokenize("running dogs", true), ["run", "dog"]);
        assert_eq!(rouge_f("", "x", false), (0.0, 0.0, 0.0));
        let (p, r) = (tokenize("a b a c d", false), tokenize("a a b b d c", false));
        let slow = (rouge_n(&p, &r, 1).fmeasure, rouge_n(&p, &r, 2).fmeasure, rouge_l(&p, &r).fmeasure);
        assert_eq!(rouge_f("a b a c d", "a a b b d c", false), slow);
        let (r1, r2, rl) = rouge_f("the cat sat", "the cat sat down", false);
        assert!((r1 - 6.0 / 7.0).abs() < 1e-12 && (r2 - 0.8).abs() < 1e-12 && (rl - 6.0 / 7.0).abs() < 1e-12);
    }
}
