//! Trivial baselines: answers that need no model. A model that does not beat the best of them has
//! learned nothing the test can see, and every hypothesis about it is *not testable*.
//!
//! * `constant` — the train split's most frequent answer (after SQuAD normalisation; ties broken by the
//!   normalised text), given to every test question;
//! * `question` — the question itself, copied;
//! * `context-sentence` — the context sentence sharing the most distinct normalised words with the
//!   question (ties: the earliest sentence).
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use super::squad::normalize;
use crate::data::QaExample;

/// The trivial baselines, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Baseline {
    Constant,
    Question,
    ContextSentence,
}

impl Baseline {
    pub const ALL: [Baseline; 3] = [Baseline::Constant, Baseline::Question, Baseline::ContextSentence];

    pub fn key(&self) -> &'static str {
        match self {
            Baseline::Constant => "constant",
            Baseline::Question => "question",
            Baseline::ContextSentence => "context-sentence",
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Baseline::Constant => "most frequent train answer",
            Baseline::Question => "copy the question",
            Baseline::ContextSentence => "context sentence with most question words",
        }
    }
}

/// The train split's most frequent answer: counted by normalised text, returned as the first raw
/// spelling seen of the winning normalised text. `None` for an empty split.
pub fn most_frequent_answer(train: &[QaExample]) -> Option<String> {
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (i, e) in train.iter().enumerate() {
        counts.entry(normalize(&e.answer)).or_insert((0, i)).0 += 1;
    }
    // Highest count; among equals the smallest normalised text (BTreeMap order) wins.
    let mut best: Option<(&String, usize, usize)> = None;
    for (norm, (n, first)) in &counts {
        if best.is_none_or(|(_, bn, _)| *n > bn) {
            best = Some((norm, *n, *first));
        }
    }
    best.map(|(_, _, first)| train[first].answer.clone())
}

/// Splits text into sentences after `.`, `!` or `?` followed by whitespace (the trailing piece counts).
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (j, &(i, c)) in chars.iter().enumerate() {
        if matches!(c, '.' | '!' | '?') && chars.get(j + 1).is_some_and(|(_, n)| n.is_whitespace()) {
            let s = text[start..i + c.len_utf8()].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = i + c.len_utf8();
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// The context sentence sharing the most distinct normalised words with the question.
pub fn best_context_sentence(context: &str, question: &str) -> String {
    let q: BTreeSet<String> = normalize(question).split_whitespace().map(str::to_owned).collect();
    let mut best = ("", 0usize);
    for s in sentences(context) {
        let words: BTreeSet<String> = normalize(s).split_whitespace().map(str::to_owned).collect();
        let n = words.intersection(&q).count();
        if best.0.is_empty() || n > best.1 {
            best = (s, n);
        }
    }
    best.0.to_owned()
}

/// The baseline's answer to every test example, aligned with `test`.
pub fn predictions(baseline: Baseline, train: &[QaExample], test: &[QaExample]) -> Vec<String> {
    match baseline {
        Baseline::Constant => {
            let a = most_frequent_answer(train).unwrap_or_default();
            vec![a; test.len()]
        }
        Baseline::Question => test.iter().map(|e| e.question.clone()).collect(),
        Baseline::ContextSentence => test.iter().map(|e| best_context_sentence(&e.context, &e.question)).collect(),
    }
}

/// How a baseline, which has no model to rank options with, answers the multiple-choice question.
pub const MC_RULE: &str =
    "the answer option with the highest SQuAD token F1 against the baseline's answer (ties to the first option)";

/// The option [`MC_RULE`] picks for `answer` among `choices` (0 when there are none).
pub fn choose_option(answer: &str, choices: &[String]) -> usize {
    let mut best = (0usize, f64::NEG_INFINITY);
    for (k, c) in choices.iter().enumerate() {
        let f1 = super::squad::em_f1(answer, c).1;
        if f1 > best.1 {
            best = (k, f1);
        }
    }
    best.0
}

/// Per test example, 1 where [`choose_option`] on the baseline's answer picks the labelled option, else 0.
pub fn mc_correct(predictions: &[String], test: &[QaExample]) -> Vec<f64> {
    predictions
        .iter()
        .zip(test)
        .map(|(p, e)| f64::from(u8::from(choose_option(p, &e.choices) == e.label as usize)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(answer: &str) -> QaExample {
        QaExample {
            id: answer.into(),
            context: String::new(),
            question: String::new(),
            answer: answer.into(),
            choices: vec![],
            label: 0,
        }
    }

    #[test]
    fn most_frequent_counts_normalised_answers() {
        let train = vec![
            ex("They were tired."),
            ex("None of the above choices ."),
            ex("none of the above choices"),
            ex("they were tired"),
        ];
        // Two each; "none of above choices" < "they were tired" in normalised order.
        assert_eq!(most_frequent_answer(&train).as_deref(), Some("None of the above choices ."));
        let train = vec![ex("b"), ex("a"), ex("B.")];
        assert_eq!(most_frequent_answer(&train).as_deref(), Some("b"));
        assert_eq!(most_frequent_answer(&[]), None);
    }

    #[test]
    fn sentences_split_on_terminal_punctuation() {
        assert_eq!(sentences("I went home. It was late! Why? No"), vec!["I went home.", "It was late!", "Why?", "No"]);
        assert_eq!(sentences("3.5 percent rose.  Then"), vec!["3.5 percent rose.", "Then"]);
        assert_eq!(sentences(""), Vec::<&str>::new());
    }

    #[test]
    fn context_sentence_with_most_question_words() {
        let c = "We walked to the park. The dog chased a red ball. Then we went home.";
        assert_eq!(best_context_sentence(c, "Why did the dog chase the ball?"), "The dog chased a red ball.");
        // No shared word: the first sentence.
        assert_eq!(best_context_sentence(c, "xyz?"), "We walked to the park.");
    }

    #[test]
    fn the_mc_rule_picks_the_option_closest_to_the_answer_and_ties_to_the_first() {
        let choices: Vec<String> = [
            "They went to the park.",
            "She bought some milk.",
            "None of the above choices .",
            "He bought milk and bread.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(choose_option("buy milk", &choices), 1); // F1 1/3 against 2/7 for option 4, 0 for the others
        assert_eq!(choose_option("None of the above choices.", &choices), 2);
        // No shared word: every F1 is 0, so the first option.
        assert_eq!(choose_option("xyz", &choices), 0);
        // Equal F1 for options 1 and 2: the first of them.
        let tied: Vec<String> =
            ["a dog ran", "park visit", "visit park", "park"].iter().map(|s| s.to_string()).collect();
        assert_eq!(choose_option("park visit today", &tied), 1);
        assert_eq!(choose_option("park", &tied), 3);
        let mut e = ex("x");
        e.choices = choices.clone();
        e.label = 1;
        let mut f = e.clone();
        f.label = 3;
        assert_eq!(mc_correct(&["buy milk".into(), "buy milk".into()], &[e, f]), vec![1.0, 0.0]);
    }
}
