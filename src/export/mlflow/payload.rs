//! What one ledger entry becomes in MLflow, as pure functions: params (the stage's own part of the
//! config, flattened to dotted keys), metrics (every numeric leaf of its metrics, a `[[step, value], …]`
//! curve as one metric over steps), tags (provenance), dataset inputs (its recorded data files with
//! their digests), and the batches MLflow accepts. The limits are MLflow's (mlflow/utils/validation.py):
//! keys of at most 250 characters of `[A-Za-z0-9_ ./-]` that do not resolve to another path, param
//! values of at most 6,000 characters, tag values of at most 8,000, at most 100 params or tags and 1,000
//! metrics in one `log-batch`, dataset digests of at most 36 characters.
use serde_json::Value;
use std::collections::BTreeSet;

use super::rest::{Dataset, DatasetInput, Metric, Param, Tag};
use crate::ledger::{Entry, GitState};

pub const MAX_KEY: usize = 250;
pub const MAX_PARAM_VALUE: usize = 6000;
pub const MAX_TAG_VALUE: usize = 8000;
pub const MAX_PARAMS_OR_TAGS_PER_BATCH: usize = 100;
pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_DIGEST: usize = 36;

/// Tag keys the export writes (besides MLflow's own `mlflow.*`).
pub const TAG_ROLE: &str = "hsx.role";
pub const TAG_ENTRY_HASH: &str = "hsx.entry.hash";
pub const TAG_HEADER: &str = "hsx.ledger.header_sha256";
pub const TAG_HEAD: &str = "hsx.ledger.head";

/// One key segment as MLflow accepts it: other characters become `_`, and `.`/`..`/empty (which would
/// resolve to another path) become `_`.
fn segment(s: &str) -> String {
    let t: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || "_- ".contains(c) { c } else { '_' }).collect();
    let t = t.trim().to_owned();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

/// A key from its segments, at most [`MAX_KEY`] characters (a longer one keeps its end).
pub fn key(segments: &[String]) -> String {
    let k = segments.iter().map(|s| segment(s)).collect::<Vec<_>>().join(".");
    if k.len() <= MAX_KEY {
        return k;
    }
    let cut = k.len() - (MAX_KEY - 1);
    let start = (cut..k.len()).find(|i| k.is_char_boundary(*i)).unwrap_or(k.len());
    format!("~{}", &k[start..])
}

/// `text` cut to `max` characters, saying where the whole value is.
pub fn truncate(text: &str, max: usize, whole: &str) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let note = format!(" … [cut at {max} characters; the whole value is in {whole}]");
    let keep = max.saturating_sub(note.chars().count());
    text.chars().take(keep).chain(note.chars()).collect()
}

/// Keys made unique in order: a second `k` becomes `k_2`, and so on.
fn unique(keys: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    keys.map(|k| {
        let mut candidate = k.clone();
        let mut n = 2;
        while !seen.insert(candidate.clone()) {
            candidate = format!("{k}_{n}");
            n += 1;
        }
        candidate
    })
    .collect()
}

fn flatten_params(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                path.push(k.clone());
                flatten_params(x, path, out);
                path.pop();
            }
        }
        Value::String(s) => out.push((path.clone(), s.clone())),
        other => out.push((path.clone(), other.to_string())),
    }
}

/// The entry's params (its part of the config) as MLflow params: nested tables as dotted keys, lists
/// and other values as JSON text, a value over MLflow's limit cut with a note naming the entry.
pub fn params(e: &Entry) -> Vec<Param> {
    let mut flat = Vec::new();
    flatten_params(&e.params, &mut Vec::new(), &mut flat);
    let whole = format!("ledger entry #{} ({}) params", e.seq, &e.hash);
    let keys = unique(flat.iter().map(|(p, _)| key(p)));
    keys.into_iter()
        .zip(flat)
        .map(|(key, (_, value))| Param { key, value: truncate(&value, MAX_PARAM_VALUE, &whole) })
        .collect()
}

/// `[[step, value], …]` with whole, non-negative steps: a curve.
fn as_curve(a: &[Value]) -> Option<Vec<(i64, f64)>> {
    if a.is_empty() {
        return None;
    }
    a.iter()
        .map(|p| match p.as_array().map(Vec::as_slice) {
            Some([s, x]) => Some((s.as_u64().and_then(|s| i64::try_from(s).ok())?, x.as_f64()?)),
            _ => None,
        })
        .collect()
}

fn flatten_metrics(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, f64, i64)>) {
    match v {
        Value::Number(n) => {
            if let Some(x) = n.as_f64().filter(|x| x.is_finite()) {
                out.push((path.clone(), x, 0));
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                path.push(k.clone());
                flatten_metrics(x, path, out);
                path.pop();
            }
        }
        Value::Array(a) => match as_curve(a) {
            Some(points) => {
                out.extend(points.into_iter().filter(|(_, x)| x.is_finite()).map(|(s, x)| (path.clone(), x, s)))
            }
            None => {
                for (i, x) in a.iter().enumerate() {
                    path.push(i.to_string());
                    flatten_metrics(x, path, out);
                    path.pop();
                }
            }
        },
        _ => {}
    }
}

/// Every numeric leaf of the entry's metrics as an MLflow metric at the entry's finish time: objects and
/// lists give dotted keys (`validation.f1`, `hypotheses.0.contrast.estimate`), and a list of
/// `[step, value]` pairs (a loss curve) gives one metric over those steps. Strings, booleans and nulls
/// are not metrics (the ledger holds them).
pub fn metrics(e: &Entry, timestamp: i64) -> Vec<Metric> {
    let mut flat = Vec::new();
    flatten_metrics(&e.metrics, &mut Vec::new(), &mut flat);
    // A curve's points share their key; only distinct series need distinct keys.
    let mut series: Vec<(String, Vec<(f64, i64)>)> = Vec::new();
    for (p, x, step) in flat {
        let k = key(&p);
        match series.last_mut() {
            Some((last, points)) if *last == k && step != 0 => points.push((x, step)),
            _ => series.push((k, vec![(x, step)])),
        }
    }
    let keys = unique(series.iter().map(|(k, _)| k.clone()));
    keys.into_iter()
        .zip(series)
        .flat_map(|(key, (_, points))| {
            points.into_iter().map(move |(value, step)| Metric { key: key.clone(), value, timestamp, step })
        })
        .collect()
}

fn tag(key: &str, value: impl Into<String>) -> Tag {
    Tag { key: key.to_owned(), value: truncate(&value.into(), MAX_TAG_VALUE, "the ledger") }
}

/// Provenance of one entry: its hash and position, the ledger it belongs to and the head at export, the
/// signer, the git commit (`mlflow.source.git.commit`), the parent run, seeds, determinism and code.
pub fn child_tags(e: &Entry, parent_run_id: &str, header_sha256: &str, head: &str, key_id: &str) -> Vec<Tag> {
    let mut t = vec![
        tag("mlflow.parentRunId", parent_run_id),
        tag(TAG_ROLE, "entry"),
        tag(TAG_ENTRY_HASH, &e.hash),
        tag("hsx.entry.seq", e.seq.to_string()),
        tag("hsx.stage", &e.stage),
        tag(TAG_HEADER, header_sha256),
        tag(TAG_HEAD, head),
        tag("hsx.signer.key_id", key_id),
        tag("hsx.seed.master", e.seeds.master.to_string()),
        tag("hsx.seed.stage", e.seeds.stage.to_string()),
        tag("hsx.config_sha256", &e.config_sha256),
        tag("hsx.determinism", serde_json::to_string(&e.determinism).unwrap_or_default()),
    ];
    if let GitState::Repository { commit, dirty, .. } = &e.git {
        t.push(tag("mlflow.source.git.commit", commit));
        t.push(tag("hsx.git.dirty", dirty.to_string()));
    }
    if let Some(code) = e.env.get("stage_code_sha256").and_then(Value::as_str) {
        t.push(tag("hsx.stage_code_sha256", code));
    }
    t
}

/// The dataset inputs of an entry: each recorded input that is data (JSONL, CSV), with its SHA-256
/// (the first [`MAX_DIGEST`] hex digits as MLflow's digest; the whole in its source), in `context`.
pub fn dataset_inputs(e: &Entry, context: &str) -> Vec<DatasetInput> {
    e.inputs
        .iter()
        .filter(|r| r.path.ends_with(".jsonl") || r.path.ends_with(".csv"))
        .map(|r| DatasetInput {
            tags: vec![tag("mlflow.data.context", context)],
            dataset: Dataset {
                name: r.path.clone(),
                digest: r.sha256.chars().take(MAX_DIGEST).collect(),
                source_type: "hsx-ledger".into(),
                source: serde_json::json!({"root": r.root, "path": r.path, "sha256": r.sha256}).to_string(),
                profile: serde_json::json!({"bytes": r.bytes}).to_string(),
            },
        })
        .collect()
}

/// What a stage's inputs are to it: training data, evaluation data, or the source of what it makes.
pub fn input_context(stage: &str) -> &'static str {
    let base = stage.split('@').next().unwrap_or(stage);
    if base.starts_with("train-") || base == "generator" {
        "training"
    } else if base.starts_with("evaluate-") || base == "compare" {
        "evaluation"
    } else {
        "source"
    }
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn millis(t: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(params: Value, metrics: Value) -> Entry {
        let v = json!({
            "seq": 3, "stage": "train-A@43", "experiment": "x", "header_sha256": "h", "prev": "p",
            "started": "2026-01-02T03:04:05Z", "finished": "2026-01-02T03:04:06.5Z",
            "git": {"state": "repository", "commit": "abc", "dirty": false, "diff_sha256": null},
            "env": {"stage_code_sha256": "code"}, "seeds": {"master": "42", "stage": "7"},
            "params": params, "config": {}, "config_sha256": "c",
            "inputs": [{"root": "run", "path": "prepare/human_train.jsonl", "bytes": 10, "sha256": "a".repeat(64)},
                       {"root": "run", "path": "base-model/model/model.safetensors", "bytes": 5, "sha256": "b".repeat(64)}],
            "outputs": [], "determinism": {"class": "bitwise"}, "metrics": metrics,
            "hash": "e".repeat(64), "signature": "s"
        });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn params_are_the_stages_config_part_flattened_and_cut_at_mlflows_limit() {
        let long = "x".repeat(7000);
        let e =
            entry(json!({"lora": {"r": 4, "targets": ["q", "v"]}, "train": {"lr": 0.001}, "note": long}), json!({}));
        let p = params(&e);
        let get = |k: &str| p.iter().find(|x| x.key == k).map(|x| x.value.clone());
        assert_eq!(get("lora.r").as_deref(), Some("4"));
        assert_eq!(get("lora.targets").as_deref(), Some(r#"["q","v"]"#));
        assert_eq!(get("train.lr").as_deref(), Some("0.001"));
        let note = get("note").unwrap();
        assert_eq!(note.chars().count(), MAX_PARAM_VALUE);
        assert!(note.contains(&format!("ledger entry #3 ({})", "e".repeat(64))), "{note:.100}");
    }

    #[test]
    fn metrics_are_the_numeric_leaves_and_curves_are_series() {
        let e = entry(
            json!({}),
            json!({"examples": 200, "trained": true, "reason": "text",
                   "loss_curve": [[10, 4.5], [20, 4.25]], "val_loss_per_epoch": [4.0, 3.5],
                   "validation": {"f1": 0.25, "f1_ci95": [0.125, 0.5], "A−0": 1.0, "nan": null},
                   "tokens": {"t5/enc": 3}}),
        );
        let m = metrics(&e, 99);
        let find = |k: &str| m.iter().filter(|x| x.key == k).map(|x| (x.step, x.value)).collect::<Vec<_>>();
        assert_eq!(find("examples"), vec![(0, 200.0)]);
        assert_eq!(find("loss_curve"), vec![(10, 4.5), (20, 4.25)]);
        assert_eq!(find("val_loss_per_epoch.0"), vec![(0, 4.0)]);
        assert_eq!(find("val_loss_per_epoch.1"), vec![(0, 3.5)]);
        assert_eq!(find("validation.f1_ci95.1"), vec![(0, 0.5)]);
        assert_eq!(find("validation.A_0"), vec![(0, 1.0)]);
        assert_eq!(find("tokens.t5_enc"), vec![(0, 3.0)]);
        assert!(m.iter().all(|x| x.timestamp == 99));
        assert_eq!(m.len(), 10, "{m:?}");
        let keys: BTreeSet<&str> = m.iter().map(|x| x.key.as_str()).collect();
        assert!(!keys.contains("trained") && !keys.contains("reason"));
    }

    #[test]
    fn keys_stay_within_mlflows_rules() {
        assert_eq!(key(&["..".into(), "a/b".into(), "".into(), "x y".into()]), "__.a_b._.x y");
        let long = key(&["k".repeat(300)]);
        assert_eq!(long.len(), MAX_KEY);
        assert!(long.starts_with('~'));
        assert_eq!(unique(["a".to_owned(), "a".into(), "b".into(), "a".into()].into_iter()), ["a", "a_2", "b", "a_3"]);
    }

    #[test]
    fn tags_inputs_and_times() {
        let e = entry(json!({}), json!({}));
        let t = child_tags(&e, "parent", "hdr", "head", "sha256:k");
        let get = |k: &str| t.iter().find(|x| x.key == k).map(|x| x.value.as_str());
        assert_eq!(get("mlflow.parentRunId"), Some("parent"));
        assert_eq!(get("mlflow.source.git.commit"), Some("abc"));
        assert_eq!(get(TAG_ENTRY_HASH), Some("e".repeat(64).as_str()));
        assert_eq!(get("hsx.seed.master"), Some("42"));
        assert_eq!(get("hsx.stage_code_sha256"), Some("code"));
        assert_eq!(get("hsx.determinism"), Some(r#"{"class":"bitwise"}"#));
        let d = dataset_inputs(&e, input_context(&e.stage));
        assert_eq!(d.len(), 1, "only data files are datasets");
        assert_eq!(d[0].dataset.digest, "a".repeat(36));
        assert_eq!(d[0].tags[0].value, "training");
        let src: Value = serde_json::from_str(&d[0].dataset.source).unwrap();
        assert_eq!(src["sha256"], "a".repeat(64));
        assert_eq!(input_context("evaluate-0"), "evaluation");
        assert_eq!(input_context("synthesize"), "source");
        assert_eq!(millis(&e.started), Some(1_767_323_045_000));
        assert_eq!(millis(&e.finished), Some(1_767_323_046_500));
    }
}
