//! Breakdowns of the test items: by question type and by whether the answer is "none of the above".
use super::*;

/// The question types a reviewer asks about (by the question's first word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuestionType {
    Why,
    What,
    How,
    Other,
}

impl QuestionType {
    pub fn of(question: &str) -> Self {
        let first = question
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        match first.as_str() {
            "why" => QuestionType::Why,
            "what" | "which" => QuestionType::What,
            "how" => QuestionType::How,
            _ => QuestionType::Other,
        }
    }

    pub fn key(&self) -> &'static str {
        match self {
            QuestionType::Why => "why",
            QuestionType::What => "what",
            QuestionType::How => "how",
            QuestionType::Other => "other",
        }
    }
}

/// Whether a reference answer is CosmosQA's "None of the above choices ." option.
pub fn is_none_of_the_above(answer: &str) -> bool {
    crate::metrics::squad::normalize(answer) == crate::metrics::squad::normalize("None of the above choices .")
}

/// One group's mean of one system on one metric, with its clustered interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMean {
    pub group: String,
    pub items: usize,
    pub system: String,
    pub metric: String,
    pub mean: f64,
    pub ci: Interval,
}

/// Means per group (`groups[i]` is item i's group), per system, on `metric`, each with a cluster-bootstrap
/// interval over the group's own items and clusters (`cluster_keys[i]` is item i's cluster).
pub fn breakdown(
    groups: &[String],
    cluster_keys: &[String],
    systems: &BTreeMap<String, Scores>,
    metric: &str,
    level: f64,
    r: Resampling,
) -> Vec<GroupMean> {
    let mut names: Vec<&String> = groups.iter().collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for g in names {
        let idx: Vec<usize> = (0..groups.len()).filter(|&i| &groups[i] == g).collect();
        let keys: Vec<&String> = idx.iter().map(|&i| &cluster_keys[i]).collect();
        let clusters = Clusters::from_keys(&keys);
        for (system, scores) in systems {
            let Some(v) = scores.get(metric) else { continue };
            if v.len() != groups.len() {
                continue;
            }
            let sub: Vec<f64> = idx.iter().map(|&i| v[i]).collect();
            let seed = sub_seed(r.seed, &format!("breakdown/{g}/{system}/{metric}"));
            out.push(GroupMean {
                group: g.clone(),
                items: sub.len(),
                system: system.clone(),
                metric: metric.into(),
                mean: mean(&sub),
                ci: cluster_mean_ci(&sub, &clusters, level, Resampling { resamples: r.resamples, seed }),
            });
        }
    }
    out
}

#[cfg(test)]
mod breakdown_tests {
    use super::*;

    #[test]
    fn question_types_and_none_of_the_above() {
        assert_eq!(QuestionType::of("Why did she leave?"), QuestionType::Why);
        assert_eq!(QuestionType::of("  what may happen next ?"), QuestionType::What);
        assert_eq!(QuestionType::of("Which is true?"), QuestionType::What);
        assert_eq!(QuestionType::of("How does he feel?"), QuestionType::How);
        assert_eq!(QuestionType::of("Where was I?"), QuestionType::Other);
        assert_eq!(QuestionType::of(""), QuestionType::Other);
        assert!(is_none_of_the_above("None of the above choices ."));
        assert!(is_none_of_the_above("none of the above choices"));
        assert!(!is_none_of_the_above("None of them."));
    }

    #[test]
    fn breakdown_means_each_group_on_its_own_items() {
        let groups: Vec<String> = (0..6).map(|i| if i < 4 { "why".into() } else { "how".into() }).collect();
        let keys: Vec<String> = (0..6).map(|i| format!("c{}", i / 2)).collect();
        let systems = BTreeMap::from([(
            "A".to_string(),
            BTreeMap::from([("f1".to_string(), vec![1.0, 1.0, 0.0, 0.0, 0.5, 0.5])]),
        )]);
        let b = breakdown(&groups, &keys, &systems, "f1", 0.95, Resampling { resamples: 1000, seed: 1 });
        assert_eq!(b.len(), 2);
        let how = b.iter().find(|g| g.group == "how").unwrap();
        assert_eq!((how.items, how.mean, how.ci.lo, how.ci.hi), (2, 0.5, 0.5, 0.5));
        let why = b.iter().find(|g| g.group == "why").unwrap();
        assert_eq!((why.items, why.mean), (4, 0.5));
        assert!(why.ci.lo >= 0.0 && why.ci.hi <= 1.0 && why.ci.hi > why.ci.lo);
    }
}
