//! The two derived datasets: AI-contaminated answers (the base model's own), and synthetic examples from
//! a generator fine-tuned on the human seed, kept only when they pass the five filters (`filters`).
//!
//! Prompt formats (flan style; also printed in the report):
//!
//! | task | input | target |
//! |---|---|---|
//! | answer (models A/B/C, contamination, the generator's answer task) | `Answer the question given the context.\n\nContext: {context}\n\nQuestion: {question}` | the answer |
//! | paraphrase (contamination) | `Paraphrase the following answer.\n\nQuestion: {question}\n\nAnswer: {answer}` | — (base model, not trained) |
//! | question variant | `Write another question about this context.\n\nContext: {context}\n\nQuestion: {question}` | another question on the same context |
//! | context augmentation | `Write a context in which the answer to the question holds.\n\nQuestion: {question}\n\nAnswer: {answer}` | the seed context |
//! | answer expansion | `Ask and answer a question about this context.\n\nContext: {context}` | `Question: {q} Answer: {a}` for the context's question/answer pairs |
//!
//! ```text
//! hsx run --config configs/smoke.toml --ledger ledger/smoke.json --only synthesize
//! ```
use serde::{Deserialize, Serialize};

pub mod filters;
pub mod similarity;

pub fn answer_prompt(context: &str, question: &str) -> String {
    format!("Answer the question given the context.\n\nContext: {context}\n\nQuestion: {question}")
}

pub fn paraphrase_prompt(question: &str, answer: &str) -> String {
    format!("Paraphrase the following answer.\n\nQuestion: {question}\n\nAnswer: {answer}")
}

pub fn question_variant_prompt(context: &str, question: &str) -> String {
    format!("Write another question about this context.\n\nContext: {context}\n\nQuestion: {question}")
}

pub fn context_prompt(question: &str, answer: &str) -> String {
    format!("Write a context in which the answer to the question holds.\n\nQuestion: {question}\n\nAnswer: {answer}")
}

pub fn expansion_prompt(context: &str) -> String {
    format!("Ask and answer a question about this context.\n\nContext: {context}")
}

pub fn expansion_target(question: &str, answer: &str) -> String {
    format!("Question: {question} Answer: {answer}")
}

/// Splits an answer-expansion output `Question: … Answer: …` into (question, answer).
pub fn parse_expansion(text: &str) -> Option<(String, String)> {
    let t = text.trim();
    let rest = t.strip_prefix("Question:")?;
    let (q, a) = rest.split_once("Answer:")?;
    let (q, a) = (q.trim(), a.trim());
    (!q.is_empty() && !a.is_empty()).then(|| (q.to_owned(), a.to_owned()))
}

/// One training pair for a seq2seq model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub input: String,
    pub target: String,
    /// Which task it teaches (generator data) or which split it came from.
    #[serde(default)]
    pub task: String,
    /// The seed example it came from.
    #[serde(default)]
    pub seed_id: String,
}

/// A row of `ai_contaminated.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContaminatedRow {
    pub id: String,
    pub context: String,
    pub question: String,
    pub answer: String,
    /// `ai` or `paraphrase`.
    pub kind: String,
    pub original_answer_sha256: String,
    /// Generation attempts (1 + retries for empty outputs).
    pub attempts: usize,
}

/// Synthesis strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    QuestionVariants,
    ContextAugmentation,
    AnswerExpansion,
}

impl Strategy {
    pub const ALL: [Strategy; 3] =
        [Strategy::QuestionVariants, Strategy::ContextAugmentation, Strategy::AnswerExpansion];
    pub fn name(self) -> &'static str {
        match self {
            Strategy::QuestionVariants => "question_variants",
            Strategy::ContextAugmentation => "context_augmentation",
            Strategy::AnswerExpansion => "answer_expansion",
        }
    }
}

/// A row of `synthetic.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticRow {
    pub id: String,
    pub context: String,
    pub question: String,
    pub answer: String,
    pub strategy: Strategy,
    pub seed_id: String,
}

impl SyntheticRow {
    /// The text the filters judge: context, question and answer.
    pub fn full_text(&self) -> String {
        format!("{} {} {}", self.context, self.question, self.answer)
    }

    /// (context, question, answer), as the filters read an example.
    pub fn fields(&self) -> filters::Fields<'_> {
        (&self.context, &self.question, &self.answer)
    }
}

/// How many accepted examples the synthesize stage quotes per strategy, and how many characters of each
/// quoted context it keeps.
pub const QUOTED_PER_STRATEGY: usize = 3;
pub const QUOTED_CONTEXT_CHARS: usize = 200;

/// One accepted example as the synthesize entry quotes it: id, seed example, question and answer
/// verbatim, the context verbatim up to `context_chars` characters (then cut at that character, with
/// "…" appended), and the context's full length in characters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotedExample {
    pub id: String,
    pub seed_id: String,
    pub context: String,
    pub context_chars: usize,
    pub context_truncated: bool,
    pub question: String,
    pub answer: String,
}

/// `row` quoted with its context cut to `context_chars` characters.
pub fn quote(row: &SyntheticRow, context_chars: usize) -> QuotedExample {
    let length = row.context.chars().count();
    let context = if length > context_chars {
        let mut cut: String = row.context.chars().take(context_chars).collect();
        cut.push('…');
        cut
    } else {
        row.context.clone()
    };
    QuotedExample {
        id: row.id.clone(),
        seed_id: row.seed_id.clone(),
        context,
        context_chars: length,
        context_truncated: length > context_chars,
        question: row.question.clone(),
        answer: row.answer.clone(),
    }
}

/// Per strategy (every one of [`Strategy::ALL`], empty when it accepted none), the first `per` of the
/// accepted examples in the order they were generated and accepted (`accepted`'s order, which is
/// `synthetic.jsonl`'s), quoted by [`quote`].
pub fn quoted_examples(
    accepted: &[SyntheticRow],
    per: usize,
    context_chars: usize,
) -> std::collections::BTreeMap<&'static str, Vec<QuotedExample>> {
    Strategy::ALL
        .iter()
        .map(|s| {
            (
                s.name(),
                accepted.iter().filter(|r| r.strategy == *s).take(per).map(|r| quote(r, context_chars)).collect(),
            )
        })
        .collect()
}

/// The generator's training pairs, from the human train split only: question variants (pairs of
/// questions on one context), context augmentation, answer expansion, and the answer task. At most
/// `max_per_task` per task (0 = all), chosen with a seeded shuffle.
pub fn generator_pairs(train: &[crate::data::QaExample], max_per_task: usize, seed: u64) -> Vec<Pair> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut by_ctx: Vec<(String, Vec<&crate::data::QaExample>)> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for e in train {
        let i = *index.entry(e.context.clone()).or_insert_with(|| {
            by_ctx.push((e.context.clone(), Vec::new()));
            by_ctx.len() - 1
        });
        by_ctx[i].1.push(e);
    }
    let mut tasks: Vec<Vec<Pair>> = vec![Vec::new(); 4];
    for (ctx, qs) in &by_ctx {
        for a in qs {
            for b in qs {
                if a.id != b.id && a.question != b.question {
                    tasks[0].push(Pair {
                        input: question_variant_prompt(ctx, &a.question),
                        target: b.question.clone(),
                        task: "question_variants".into(),
                        seed_id: a.id.clone(),
                    });
                }
            }
            tasks[1].push(Pair {
                input: context_prompt(&a.question, &a.answer),
                target: ctx.clone(),
                task: "context_augmentation".into(),
                seed_id: a.id.clone(),
            });
            tasks[2].push(Pair {
                input: expansion_prompt(ctx),
                target: expansion_target(&a.question, &a.answer),
                task: "answer_expansion".into(),
                seed_id: a.id.clone(),
            });
            tasks[3].push(Pair {
                input: answer_prompt(ctx, &a.question),
                target: a.answer.clone(),
                task: "answer".into(),
                seed_id: a.id.clone(),
            });
        }
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for mut t in tasks {
        t.shuffle(&mut rng);
        if max_per_task > 0 {
            t.truncate(max_per_task);
        }
        out.extend(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_round_trips() {
        let t = expansion_target("Why did he go?", "To buy milk.");
        assert_eq!(parse_expansion(&t), Some(("Why did he go?".into(), "To buy milk.".into())));
        assert_eq!(parse_expansion("Question: only"), None);
        assert_eq!(parse_expansion("nonsense"), None);
    }

    #[test]
    fn the_quoted_examples_are_the_first_accepted_lines_of_each_strategy() {
        let long = "Ünïcode context, ".repeat(20); // 340 characters, more bytes
        let rows: Vec<SyntheticRow> = (0..7)
            .map(|k| SyntheticRow {
                id: format!("syn-{k}"),
                context: if k % 2 == 0 { long.clone() } else { format!("short context {k}") },
                question: format!("question {k}?"),
                answer: format!("answer {k}"),
                strategy: if k < 5 { Strategy::ContextAugmentation } else { Strategy::AnswerExpansion },
                seed_id: format!("seed-{k}"),
            })
            .collect();
        let path = std::env::temp_dir().join(format!("hsx-quotes-{}.jsonl", std::process::id()));
        crate::data::write_jsonl(crate::fsx::dir_of(&path), &path, &rows).unwrap();
        let lines: Vec<SyntheticRow> = crate::data::read_jsonl_as(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let q = quoted_examples(&lines, QUOTED_PER_STRATEGY, QUOTED_CONTEXT_CHARS);
        assert_eq!(q.len(), Strategy::ALL.len());
        assert!(q["question_variants"].is_empty());
        for (strategy, want) in [("context_augmentation", vec![0, 1, 2]), ("answer_expansion", vec![5, 6])] {
            let got = &q[strategy];
            assert_eq!(got.len(), want.len(), "{strategy}");
            for (g, &k) in got.iter().zip(&want) {
                let line = &lines[k];
                assert_eq!(g.id, line.id);
                assert_eq!(g.seed_id, line.seed_id);
                assert_eq!(g.question, line.question);
                assert_eq!(g.answer, line.answer);
                assert_eq!(g.context_chars, line.context.chars().count());
                if line.context.chars().count() > QUOTED_CONTEXT_CHARS {
                    let kept = g.context.strip_suffix('…').expect("a cut context ends in an ellipsis");
                    assert_eq!(kept.chars().count(), QUOTED_CONTEXT_CHARS);
                    assert!(line.context.starts_with(kept));
                    assert!(g.context_truncated);
                } else {
                    assert_eq!(g.context, line.context);
                    assert!(!g.context_truncated);
                }
            }
        }
    }
}
