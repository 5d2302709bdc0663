//! Dataset statistics: sizes, unique questions and contexts, word lengths, "None of the above" share.
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

use super::QaExample;

pub const NONE_OF_THE_ABOVE: &str = "None of the above choices .";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LengthStats {
    pub mean: f64,
    pub median: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitStats {
    pub examples: usize,
    pub unique_questions: usize,
    pub unique_contexts: usize,
    pub context_words: LengthStats,
    pub question_words: LengthStats,
    pub answer_words: LengthStats,
    pub none_of_the_above_share: f64,
}

pub fn word_count(s: &str) -> usize {
    s.split_whitespace().count()
}

fn lengths(v: &[usize]) -> LengthStats {
    if v.is_empty() {
        return LengthStats { mean: 0.0, median: 0.0 };
    }
    let mean = v.iter().sum::<usize>() as f64 / v.len() as f64;
    let mut s = v.to_vec();
    s.sort_unstable();
    let n = s.len();
    let median = if n % 2 == 1 { s[n / 2] as f64 } else { (s[n / 2 - 1] + s[n / 2]) as f64 / 2.0 };
    LengthStats { mean: round6(mean), median }
}

/// Rounds to 6 decimals so the JSON (and its hash) does not depend on float summation noise.
pub fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

pub fn split_stats(rows: &[QaExample]) -> SplitStats {
    let q: HashSet<(&str, &str)> = rows.iter().map(|e| (e.context.as_str(), e.question.as_str())).collect();
    let c: HashSet<&str> = rows.iter().map(|e| e.context.as_str()).collect();
    let none = rows.iter().filter(|e| e.answer.trim() == NONE_OF_THE_ABOVE).count();
    SplitStats {
        examples: rows.len(),
        unique_questions: q.len(),
        unique_contexts: c.len(),
        context_words: lengths(&rows.iter().map(|e| word_count(&e.context)).collect::<Vec<_>>()),
        question_words: lengths(&rows.iter().map(|e| word_count(&e.question)).collect::<Vec<_>>()),
        answer_words: lengths(&rows.iter().map(|e| word_count(&e.answer)).collect::<Vec<_>>()),
        none_of_the_above_share: if rows.is_empty() { 0.0 } else { round6(none as f64 / rows.len() as f64) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_share() {
        let mk = |c: &str, q: &str, a: &str| QaExample {
            id: q.into(),
            context: c.into(),
            question: q.into(),
            answer: a.into(),
            choices: vec![],
            label: 0,
        };
        let rows = vec![mk("a b", "q1", NONE_OF_THE_ABOVE), mk("a b", "q2", "x"), mk("c d e f", "q3", "y z")];
        let s = split_stats(&rows);
        assert_eq!((s.examples, s.unique_questions, s.unique_contexts), (3, 3, 2));
        assert_eq!(s.context_words.median, 2.0);
        assert_eq!(s.none_of_the_above_share, round6(1.0 / 3.0));
    }
}

/// Distinct lower-cased words over the contexts, questions and answers of a dataset.
pub fn vocabulary_size<'a>(texts: impl IntoIterator<Item = &'a str>) -> usize {
    let mut v: HashSet<String> = HashSet::new();
    for t in texts {
        v.extend(t.split_whitespace().map(|w| w.to_lowercase()));
    }
    v.len()
}

/// How a set of replacement answers compares with the human answers they replace (aligned pairs):
/// what the report says about the AI-contaminated answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnswerComparison {
    pub pairs: usize,
    /// Mean SQuAD token F1 of the replacement against the human answer.
    pub mean_f1_vs_human: f64,
    /// Share of replacements identical to the human answer after SQuAD normalisation.
    pub exact_match_share: f64,
    /// Share of empty replacements (nothing after trimming).
    pub empty_share: f64,
    /// Share of degenerate replacements: no letter or digit at all (".", "?"), or one word repeated.
    pub degenerate_share: f64,
    pub human_answer_words: LengthStats,
    pub replacement_words: LengthStats,
}

/// Whether an answer is degenerate: no alphanumeric character, or a single word repeated (≥ 3 times).
pub fn is_degenerate(answer: &str) -> bool {
    if !answer.chars().any(char::is_alphanumeric) {
        return true;
    }
    let words: Vec<String> = answer.split_whitespace().map(|w| w.to_lowercase()).collect();
    words.len() >= 3 && words.iter().all(|w| *w == words[0])
}

pub fn compare_answers(pairs: &[(&str, &str)]) -> AnswerComparison {
    let n = pairs.len().max(1) as f64;
    let share = |f: &dyn Fn(&(&str, &str)) -> bool| round6(pairs.iter().filter(|p| f(p)).count() as f64 / n);
    AnswerComparison {
        pairs: pairs.len(),
        mean_f1_vs_human: round6(pairs.iter().map(|(h, r)| crate::metrics::squad::f1(r, h)).sum::<f64>() / n),
        exact_match_share: share(&|(h, r)| crate::metrics::squad::exact_match(r, h) == 1.0 && !r.trim().is_empty()),
        empty_share: share(&|(_, r)| r.trim().is_empty()),
        degenerate_share: share(&|(_, r)| is_degenerate(r)),
        human_answer_words: lengths(&pairs.iter().map(|(h, _)| word_count(h)).collect::<Vec<_>>()),
        replacement_words: lengths(&pairs.iter().map(|(_, r)| word_count(r)).collect::<Vec<_>>()),
    }
}

#[cfg(test)]
mod answer_tests {
    use super::*;

    #[test]
    fn answer_comparison_counts_empty_degenerate_and_overlap() {
        let pairs = [
            ("They were tired .", "They were tired."),
            ("She left early", "."),
            ("He won", ""),
            ("It rained", "no no no"),
        ];
        let c = compare_answers(&pairs);
        assert_eq!(c.pairs, 4);
        assert_eq!(c.exact_match_share, 0.25);
        assert_eq!(c.empty_share, 0.25);
        // ".", "" and "no no no" are degenerate.
        assert_eq!(c.degenerate_share, 0.75);
        assert_eq!(c.mean_f1_vs_human, 0.25);
        assert_eq!(vocabulary_size(["a B", "b c"]), 3);
    }
}
