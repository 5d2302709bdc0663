//! Dataset statistics: sizes, unique questions and contexts, word lengths, "None of the above" share.
use serde::Serialize;
use std::collections::HashSet;

use super::QaExample;

pub const NONE_OF_THE_ABOVE: &str = "None of the above choices .";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LengthStats {
    pub mean: f64,
    pub median: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
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
