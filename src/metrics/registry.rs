//! The metric registry: every score hsx reports, in one table shared by the evaluate stage, `hsx score`,
//! the compare stage (table, gaps, CSV, plots) and the report template (which loops over it).
//!
//! Adding a metric: one row in [`METRICS`] (and, if no existing computation yields it, a field of
//! [`PerExample`] filled by [`super::lexical`] or the BERTScore step). New rows go last, so the
//! bootstrap seeds of the existing metrics (derived from their position) do not change.
use serde::de::Error as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{Metric, PerExample};

/// Which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
}

/// One metric of the registry.
#[derive(Debug)]
pub struct MetricDef {
    /// The key in `scores.jsonl`, `comparison.json`, `hsx score --json` and the report context.
    pub key: &'static str,
    /// Short label: CSV columns and plot axes.
    pub label: &'static str,
    /// Column title in REPORT.md.
    pub title: &'static str,
    pub direction: Direction,
    /// Which computation produces it (`hsx score --metrics` selects by this).
    pub family: Metric,
    /// How it is computed, in words.
    pub computed: &'static str,
    /// Scored per model by `evaluate` and compared by `compare`; otherwise only `hsx score` prints it.
    pub compared: bool,
    /// Its per-example values in a [`PerExample`].
    pub values: fn(&PerExample) -> &[f64],
}

pub const METRICS: [MetricDef; 9] = [
    MetricDef {
        key: "em",
        label: "EM",
        title: "EM",
        direction: Direction::HigherIsBetter,
        family: Metric::Em,
        computed: "exact match after SQuAD v1.1 normalisation",
        compared: true,
        values: |p| &p.em,
    },
    MetricDef {
        key: "f1",
        label: "F1",
        title: "F1",
        direction: Direction::HigherIsBetter,
        family: Metric::F1,
        computed: "SQuAD v1.1 token F1",
        compared: true,
        values: |p| &p.f1,
    },
    MetricDef {
        key: "rouge1",
        label: "ROUGE-1",
        title: "ROUGE-1",
        direction: Direction::HigherIsBetter,
        family: Metric::Rouge,
        computed: "rouge-score unigram F-measure",
        compared: true,
        values: |p| &p.rouge1,
    },
    MetricDef {
        key: "rouge2",
        label: "ROUGE-2",
        title: "ROUGE-2",
        direction: Direction::HigherIsBetter,
        family: Metric::Rouge,
        computed: "rouge-score bigram F-measure",
        compared: true,
        values: |p| &p.rouge2,
    },
    MetricDef {
        key: "rougeL",
        label: "ROUGE-L",
        title: "ROUGE-L",
        direction: Direction::HigherIsBetter,
        family: Metric::Rouge,
        computed: "rouge-score longest-common-subsequence F-measure",
        compared: true,
        values: |p| &p.rouge_l,
    },
    MetricDef {
        key: "bertscore_precision",
        label: "BERTScore-P",
        title: "BERTScore P",
        direction: Direction::HigherIsBetter,
        family: Metric::BertScore,
        computed: "BERTScore precision (greedy cosine matching of encoder token embeddings)",
        compared: false,
        values: |p| &p.bertscore_precision,
    },
    MetricDef {
        key: "bertscore_recall",
        label: "BERTScore-R",
        title: "BERTScore R",
        direction: Direction::HigherIsBetter,
        family: Metric::BertScore,
        computed: "BERTScore recall",
        compared: false,
        values: |p| &p.bertscore_recall,
    },
    MetricDef {
        key: "bertscore_f1",
        label: "BERTScore",
        title: "BERTScore F1",
        direction: Direction::HigherIsBetter,
        family: Metric::BertScore,
        computed: "BERTScore F1",
        compared: true,
        values: |p| &p.bertscore_f1,
    },
    MetricDef {
        key: "mc_accuracy",
        label: "MC accuracy",
        title: "MC accuracy",
        direction: Direction::HigherIsBetter,
        family: Metric::MultipleChoice,
        computed: "multiple-choice accuracy by rank classification: the labelled option of four has the highest mean token log-likelihood given the prompt (chance 25%)",
        compared: true,
        values: |p| &p.mc_accuracy,
    },
];

/// The metrics scored per model and compared, in order (a metric's position here seeds its bootstrap).
pub fn compared() -> impl Iterator<Item = &'static MetricDef> {
    METRICS.iter().filter(|m| m.compared)
}

/// The compared metric called `key`.
pub fn by_key(key: &str) -> Option<&'static MetricDef> {
    compared().find(|m| m.key == key)
}

/// The metric the hypotheses are judged on.
pub const PRIMARY: &str = "f1";

/// One line of `scores.jsonl`: an example's id and its value of every compared metric, written and read
/// by this type (keys in sorted order; reading names a missing or non-numeric metric).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRow {
    pub id: String,
    /// Aligned with [`compared`].
    pub values: Vec<f64>,
}

impl ScoreRow {
    /// The rows of `per` (every compared metric must have been computed), one per id.
    pub fn from_per_example(ids: &[String], per: &PerExample) -> Vec<ScoreRow> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| ScoreRow { id: id.clone(), values: compared().map(|m| (m.values)(per)[i]).collect() })
            .collect()
    }

    /// This row's value of the compared metric `key`.
    pub fn get(&self, key: &str) -> Option<f64> {
        compared().position(|m| m.key == key).map(|i| self.values[i])
    }
}

impl Serialize for ScoreRow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
        m.insert("id", serde_json::Value::from(self.id.clone()));
        for (def, v) in compared().zip(&self.values) {
            m.insert(def.key, serde_json::Value::from(*v));
        }
        m.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ScoreRow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m: BTreeMap<String, serde_json::Value> = BTreeMap::deserialize(d)?;
        let id = match m.get("id") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => return Err(D::Error::custom("a score row needs a string `id`")),
        };
        let values = compared()
            .map(|def| match m.get(def.key) {
                Some(v) => v
                    .as_f64()
                    .ok_or_else(|| D::Error::custom(format!("metric `{}` of {id:?} is not a number: {v}", def.key))),
                None => Err(D::Error::custom(format!("row {id:?} has no metric `{}`", def.key))),
            })
            .collect::<Result<_, _>>()?;
        Ok(ScoreRow { id, values })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_rows_round_trip() {
        let mut keys: Vec<&str> = METRICS.iter().map(|m| m.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), METRICS.len());
        let per = PerExample {
            em: vec![1.0],
            f1: vec![0.5],
            rouge1: vec![0.25],
            rouge2: vec![0.0],
            rouge_l: vec![0.125],
            bertscore_precision: vec![0.9],
            bertscore_recall: vec![0.8],
            bertscore_f1: vec![0.85],
            mc_accuracy: vec![1.0],
        };
        let rows = ScoreRow::from_per_example(&["q1".into()], &per);
        let text = serde_json::to_string(&rows[0]).unwrap();
        // Sorted keys, as every earlier scores.jsonl.
        assert_eq!(
            text,
            r#"{"bertscore_f1":0.85,"em":1.0,"f1":0.5,"id":"q1","mc_accuracy":1.0,"rouge1":0.25,"rouge2":0.0,"rougeL":0.125}"#
        );
        let back: ScoreRow = serde_json::from_str(&text).unwrap();
        assert_eq!(back, rows[0]);
        assert_eq!(back.get("f1"), Some(0.5));
    }

    #[test]
    fn a_missing_metric_is_named() {
        let e = serde_json::from_str::<ScoreRow>(r#"{"id":"q1","em":1.0}"#).unwrap_err().to_string();
        assert!(e.contains("`f1`") && e.contains("q1"), "{e}");
        let e = serde_json::from_str::<ScoreRow>(
            r#"{"id":"q1","bertscore_f1":null,"em":1,"f1":1,"mc_accuracy":1,"rouge1":1,"rouge2":1,"rougeL":1}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bertscore_f1"), "{e}");
    }
}
