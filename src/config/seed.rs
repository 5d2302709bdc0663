//! The seed's specification (docs/DESIGN.md §2) as config values, and the deviations of a config from
//! it. Every deviation must carry its reason in the config's `[deviations]` table (dotted key → why);
//! the report lists each one with the seed's value, the value used and that reason, from the recorded
//! config alone.
use serde::Serialize;
use serde_json::Value;

/// (dotted config key, the seed's value as JSON text). `null`: the seed has no such setting (a profile
/// that sets one deviates).
pub const SEED: &[(&str, &str)] = &[
    ("experiment.seed", "42"),
    ("split.train", "20000"),
    ("split.val", "2000"),
    ("split.test", "2000"),
    ("model.source", r#""hf-dir""#),
    ("lora.r", "16"),
    ("lora.alpha", "32"),
    ("lora.dropout", "0.1"),
    ("lora.targets", r#"["q","v"]"#),
    ("train.epochs", "3"),
    ("train.batch_size", "8"),
    ("train.grad_accum", "4"),
    ("train.lr", "3e-4"),
    ("train.weight_decay", "0.01"),
    ("train.warmup_steps", "100"),
    ("train.warmup_share", "null"),
    ("contaminate.ai_share", "0.8"),
    ("contaminate.temperature", "0.3"),
    ("synth.multiplier", "5"),
    ("synth.temperature", "0.7"),
    ("filters.ngram_n", "8"),
    ("filters.ngram_max_overlap", "0.3"),
    ("filters.semantic_max_cosine", "0.85"),
    ("filters.min_words", "10"),
    ("filters.max_words", "200"),
];

/// One setting where a config departs from the seed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deviation {
    pub key: String,
    pub seed: Value,
    pub used: Value,
    /// The config's `[deviations]` entry for this key; None when the config gives no reason.
    pub reason: Option<String>,
}

fn lookup<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(v, |cur, k| cur.get(k))
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        _ => a == b,
    }
}

/// The deviations of a config (as its JSON form, the one every ledger entry records) from the seed,
/// in [`SEED`] order, each with the reason the config's `deviations` table gives.
pub fn deviations(config: &Value) -> Vec<Deviation> {
    SEED.iter()
        .filter_map(|(key, seed)| {
            let seed: Value = serde_json::from_str(seed).expect("SEED holds JSON");
            let used = lookup(config, key).cloned().unwrap_or(Value::Null);
            if same(&seed, &used) {
                return None;
            }
            let reason = config.get("deviations").and_then(|d| d.get(*key)).and_then(Value::as_str).map(str::to_owned);
            Some(Deviation { key: (*key).to_owned(), seed, used, reason })
        })
        .collect()
}

/// Reasons given for keys that do not deviate (or are not seed settings): stale entries a config must drop.
pub fn stale_reasons(config: &Value) -> Vec<String> {
    let deviating: Vec<String> = deviations(config).into_iter().map(|d| d.key).collect();
    config
        .get("deviations")
        .and_then(Value::as_object)
        .map(|m| m.keys().filter(|k| !deviating.contains(k)).cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_changed_setting_is_a_deviation_with_its_reason() {
        let c = json!({"experiment": {"seed": 42}, "split": {"train": 20000, "val": 2000, "test": 2000},
            "model": {"source": "hf-dir"}, "lora": {"r": 16, "alpha": 32.0, "dropout": 0.1, "targets": ["q", "v"]},
            "train": {"epochs": 3, "batch_size": 8, "grad_accum": 4, "lr": 0.003, "weight_decay": 0.01, "warmup_steps": 100},
            "contaminate": {"ai_share": 0.8, "temperature": 0.3}, "synth": {"multiplier": 5.0, "temperature": 0.7},
            "filters": {"ngram_n": 8, "ngram_max_overlap": 0.3, "semantic_max_cosine": 0.85, "min_words": 10, "max_words": 200},
            "deviations": {"train.lr": "a small model needs a larger step", "train.epochs": "stale"}});
        let d = deviations(&c);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].key, "train.lr");
        assert_eq!(d[0].seed, json!(3e-4));
        assert_eq!(d[0].reason.as_deref(), Some("a small model needs a larger step"));
        assert_eq!(stale_reasons(&c), ["train.epochs"]);
        let mut no_reason = c.clone();
        no_reason["deviations"] = json!({});
        no_reason["train"]["warmup_share"] = json!(0.05);
        let d = deviations(&no_reason);
        assert_eq!(
            d.iter().map(|x| (x.key.as_str(), x.reason.is_none())).collect::<Vec<_>>(),
            [("train.lr", true), ("train.warmup_share", true)]
        );
    }

    #[test]
    fn every_shipped_profile_gives_a_reason_for_each_deviation() {
        for p in ["configs/tiny.toml", "configs/smoke.toml", "configs/base.toml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p);
            let cfg = crate::config::Config::load(&path).unwrap();
            let v = serde_json::to_value(&cfg).unwrap();
            let missing: Vec<String> =
                deviations(&v).into_iter().filter(|d| d.reason.is_none()).map(|d| d.key).collect();
            assert!(missing.is_empty(), "{p}: no reason in [deviations] for {missing:?}");
            assert!(
                stale_reasons(&v).is_empty(),
                "{p}: reasons for settings that do not deviate: {:?}",
                stale_reasons(&v)
            );
        }
    }
}
