//! Exact match and token F1 as the official SQuAD v1.1 evaluation script computes them.
//!
//! Normalisation, in the script's order: lowercase; remove every character of Python's
//! `string.punctuation` (ASCII only — curly quotes and other Unicode punctuation survive); replace the
//! articles a / an / the, as whole `\b`-delimited words, by a space; collapse whitespace. EM compares the
//! normalised strings; F1 is over the multiset of normalised whitespace tokens, 0 when they share none
//! (so an empty prediction against an empty reference has EM 1 and F1 0, as in the script).
use std::collections::HashMap;

const PUNCT: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Python's `\w` for `str` patterns: Unicode alphanumerics and the underscore.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

pub fn normalize(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower.chars().filter(|c| !PUNCT.contains(*c)).collect();
    // Articles: maximal runs of word characters equal to a/an/the become a space.
    let mut out = String::with_capacity(no_punct.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if matches!(word.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in no_punct.chars() {
        if is_word_char(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn exact_match(pred: &str, reference: &str) -> f64 {
    em_f1(pred, reference).0
}

pub fn f1(pred: &str, reference: &str) -> f64 {
    em_f1(pred, reference).1
}

/// (EM, F1), normalising each string once.
pub fn em_f1(pred: &str, reference: &str) -> (f64, f64) {
    let p = normalize(pred);
    let r = normalize(reference);
    let em = if p == r { 1.0 } else { 0.0 };
    (em, f1_normalized(&p, &r))
}

fn f1_normalized(p: &str, r: &str) -> f64 {
    let pt: Vec<&str> = p.split_whitespace().collect();
    let rt: Vec<&str> = r.split_whitespace().collect();
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for t in &rt {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0i64;
    for t in &pt {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / pt.len() as f64;
    let recall = same as f64 / rt.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_conventions() {
        assert_eq!(normalize("The  Cat's hat!"), "cats hat");
        assert_eq!(normalize("an apple, a day"), "apple day");
        assert_eq!(normalize("theory"), "theory");
        assert_eq!(exact_match("", "the"), 1.0);
        assert_eq!(f1("", "the"), 0.0);
        assert_eq!(f1("", ""), 0.0);
        assert_eq!(normalize("\u{201c}quoted\u{201d}"), "\u{201c}quoted\u{201d}");
        assert!((f1("x b c", "b c d") - 2.0 / 3.0).abs() < 1e-12);
        assert!((f1("a b c", "b c d") - 0.8).abs() < 1e-12, "the article a is dropped");
    }
}
