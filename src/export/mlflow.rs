//! `hsx export --format mlflow`: the run as MLflow runs, through the tracking server's REST API — one
//! parent run per ledger (found again by the ledger header's hash) and one child run per stage instance
//! (its latest entry, found again by the entry's hash), with the entry's params, metrics, provenance tags
//! and dataset inputs; REPORT.md with its table and plots, the ledger and its signed head as the parent's
//! artifacts (uploaded through the server's artifact proxy).
//!
//! MLflow is a view of the signed ledger, never a second source of truth: every value comes from a
//! verified entry, and exporting again adds nothing — an entry already exported is skipped, and the
//! parent is brought up to date only when the ledger's head moved. A child left unfinished by an
//! interrupted export is deleted and made again; a child whose entry a newer entry of the same stage
//! instance replaced is deleted (MLflow keeps deleted runs restorable), so the experiment shows the run as
//! the report does. Only runs carrying this ledger's header hash are ever touched.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::recorded::RunView;
use super::ExportError;
use crate::ledger::{Entry, GitState};

pub mod payload;
pub mod rest;

use payload::{TAG_ENTRY_HASH, TAG_HEAD, TAG_HEADER, TAG_ROLE};
use rest::{Client, CreateRun, LogBatch, LogInputs, Run, Tag};

#[derive(Debug, Clone)]
pub struct MlflowOptions {
    /// `http(s)://host:port[/prefix]` of an MLflow tracking server.
    pub tracking_uri: String,
    /// The MLflow experiment (default: the ledger's experiment id).
    pub experiment: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MlflowSummary {
    pub tracking_uri: String,
    pub experiment: String,
    pub experiment_id: String,
    pub parent_run_id: String,
    pub parent_created: bool,
    /// Whether the parent's head, tags and artifacts were brought up to date (the ledger's head moved).
    pub parent_updated: bool,
    pub ledger_head: String,
    pub children: Vec<ChildSummary>,
    /// Runs of replaced or unfinished entries that this export deleted.
    pub deleted: Vec<String>,
    pub artifacts: Vec<String>,
    /// Why the artifacts were not uploaded, when they were not.
    pub artifacts_skipped: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ChildSummary {
    pub stage: String,
    pub run_id: String,
    pub created: bool,
    pub params: usize,
    pub metrics: usize,
    pub datasets: usize,
}

fn millis(e: &Entry, t: &str) -> Result<i64, ExportError> {
    payload::millis(t).ok_or_else(|| ExportError::entry(e, format!("time {t:?} is not RFC 3339")))
}

fn filter(header_sha256: &str, role: &str) -> String {
    format!("tags.`{TAG_HEADER}` = '{header_sha256}' and tags.`{TAG_ROLE}` = '{role}'")
}

/// Creates the child run of entry `e`: params, metrics, dataset inputs, then FINISHED (the last step, so
/// an unfinished child is one an export did not complete).
fn create_child(c: &Client, exp: &str, parent: &str, v: &RunView<'_>, e: &Entry) -> Result<ChildSummary, ExportError> {
    let header = v.header.sha256();
    let tags = payload::child_tags(e, parent, &header, &v.head.hash, &v.header.signer.key_id);
    let run =
        c.create_run(&CreateRun { experiment_id: exp, run_name: &e.stage, start_time: millis(e, &e.started)?, tags })?;
    let id = run.info.run_id.as_str();
    let params = payload::params(e);
    for chunk in params.chunks(payload::MAX_PARAMS_OR_TAGS_PER_BATCH) {
        c.log_batch(&LogBatch { run_id: id, params: chunk.to_vec(), ..Default::default() })?;
    }
    let metrics = payload::metrics(e, millis(e, &e.finished)?);
    for chunk in metrics.chunks(payload::MAX_METRICS_PER_BATCH) {
        c.log_batch(&LogBatch { run_id: id, metrics: chunk.to_vec(), ..Default::default() })?;
    }
    let datasets = payload::dataset_inputs(e, payload::input_context(&e.stage));
    if !datasets.is_empty() {
        c.log_inputs(&LogInputs { run_id: id, datasets: datasets.clone() })?;
    }
    c.finish_run(id, millis(e, &e.finished)?)?;
    Ok(ChildSummary {
        stage: e.stage.clone(),
        run_id: id.to_owned(),
        created: true,
        params: params.len(),
        metrics: metrics.len(),
        datasets: datasets.len(),
    })
}

/// compare's verdicts, as tags of the parent (strings are not metrics).
fn verdict_tags(v: &RunView<'_>) -> Vec<Tag> {
    #[derive(Deserialize)]
    struct H {
        id: String,
        metric: String,
        primary: bool,
        verdict: String,
    }
    #[derive(Deserialize)]
    struct P {
        verdict: String,
    }
    #[derive(Deserialize)]
    struct C {
        primary_metric: String,
        hypotheses: Vec<H>,
        power: P,
    }
    let Ok(e) = v.entry("compare") else { return vec![] };
    let Ok(c) = serde_json::from_value::<C>(e.metrics.clone()) else { return vec![] };
    let mut t = vec![Tag { key: "hsx.verdict.power".into(), value: c.power.verdict }];
    t.extend(
        c.hypotheses
            .into_iter()
            .filter(|h| h.primary && h.metric == c.primary_metric)
            .map(|h| Tag { key: format!("hsx.verdict.{}", payload::key(&[h.id])), value: h.verdict }),
    );
    t
}

/// The parent's artifacts: every file of the latest report entry (checked against its recorded hash)
/// under `report/`, and the ledger with its signed head under `ledger/`.
fn artifacts(v: &RunView<'_>) -> Result<Vec<(String, Vec<u8>)>, ExportError> {
    let mut out = Vec::new();
    if let Ok(re) = v.entry("report") {
        let dir = re.params.get("report_dir").and_then(|d| d.as_str()).unwrap_or("");
        for rec in &re.outputs {
            let root = v.roots.get(rec.root).ok_or_else(|| {
                ExportError::entry(re, format!("root {} of {} is not available on this machine", rec.root, rec.path))
            })?;
            let bytes = super::recorded::read_checked(root, rec, re)?;
            let rel = rec.path.strip_prefix(&format!("{dir}/")).unwrap_or(&rec.path);
            out.push((format!("report/{rel}"), bytes));
        }
    }
    let ledger = v.ledger_path;
    let head = crate::ledger::head::head_path_for(ledger);
    for p in [ledger, head.as_path()] {
        if let (Some(name), true) = (p.file_name(), p.is_file()) {
            let limit = if p == ledger { crate::fsx::Limit::LEDGER } else { crate::fsx::Limit::HEAD };
            let bytes = crate::fsx::read_file(p, limit).map_err(|e| ExportError::file(p, e))?;
            out.push((format!("ledger/{}", name.to_string_lossy()), bytes));
        }
    }
    Ok(out)
}

/// Brings the parent up to date with the ledger's head: artifacts, head and verdict tags, FINISHED at the
/// last entry's end.
fn update_parent(c: &Client, v: &RunView<'_>, parent: &Run, s: &mut MlflowSummary) -> Result<(), ExportError> {
    match rest::proxied_root(&parent.info.artifact_uri) {
        Some(root) => {
            for (rel, bytes) in artifacts(v)? {
                c.upload_artifact(&root, &rel, &bytes)?;
                s.artifacts.push(rel);
            }
        }
        None => {
            s.artifacts_skipped = Some(format!(
                "the server keeps this run's artifacts at {:?}, which its REST API does not serve; start it with \
                 artifact proxying (`mlflow server --serve-artifacts`, the default)",
                parent.info.artifact_uri
            ))
        }
    }
    let last = v.entries.last().ok_or_else(|| ExportError::file(v.ledger_path, "has no entries"))?;
    let file = v.ledger_file();
    let mut tags = vec![
        Tag { key: TAG_HEAD.into(), value: v.head.hash.clone() },
        Tag { key: "hsx.ledger.head_seq".into(), value: v.head.seq.to_string() },
        Tag { key: "hsx.ledger.entries".into(), value: v.entries.len().to_string() },
        Tag {
            key: "mlflow.note.content".into(),
            value: format!(
                "A view of the signed hsx ledger `{file}` (experiment `{}`, head `{}`), exported by hsx. The ledger \
                 is the record; this run only shows it. Check it with `hsx verify --ledger {file} --expect-head {}`.",
                v.header.experiment,
                v.head_citation(),
                v.head.hash
            ),
        },
    ];
    if let GitState::Repository { commit, .. } = &last.git {
        tags.push(Tag { key: "mlflow.source.git.commit".into(), value: commit.clone() });
    }
    tags.extend(verdict_tags(v));
    c.log_batch(&LogBatch { run_id: &parent.info.run_id, tags, ..Default::default() })?;
    c.finish_run(&parent.info.run_id, millis(last, &last.finished)?)?;
    s.parent_updated = true;
    Ok(())
}

/// Exports a verified ledger to the tracking server; a second export of the same ledger adds nothing.
pub fn export(v: &RunView<'_>, opts: &MlflowOptions) -> Result<MlflowSummary, ExportError> {
    let c = Client::new(&opts.tracking_uri)?;
    let hdr = &v.header;
    let name = opts.experiment.clone().unwrap_or_else(|| hdr.experiment.clone());
    let exp = c.experiment_id(&name)?;
    let header_sha = hdr.sha256();
    let (parent, parent_created) = match c.search_runs(&exp, &filter(&header_sha, "ledger"))?.into_iter().next() {
        Some(p) => (p, false),
        None => {
            let first = v.entries.first().ok_or_else(|| ExportError::file(v.ledger_path, "has no entries"))?;
            let tags = vec![
                Tag { key: TAG_ROLE.into(), value: "ledger".into() },
                Tag { key: TAG_HEADER.into(), value: header_sha.clone() },
                Tag { key: "hsx.experiment".into(), value: hdr.experiment.clone() },
                Tag { key: "hsx.signer.key_id".into(), value: hdr.signer.key_id.clone() },
                Tag { key: "hsx.signer.public_key".into(), value: hdr.signer.public_key.clone() },
            ];
            let start = payload::millis(&hdr.created).unwrap_or(millis(first, &first.started)?);
            (
                c.create_run(&CreateRun { experiment_id: &exp, run_name: &hdr.experiment, start_time: start, tags })?,
                true,
            )
        }
    };
    let mut s = MlflowSummary {
        tracking_uri: opts.tracking_uri.clone(),
        experiment: name,
        experiment_id: exp.clone(),
        parent_run_id: parent.info.run_id.clone(),
        parent_created,
        parent_updated: false,
        ledger_head: v.head_citation(),
        children: vec![],
        deleted: vec![],
        artifacts: vec![],
        artifacts_skipped: None,
    };
    let mut existing: BTreeMap<String, Run> = BTreeMap::new();
    for r in c.search_runs(&exp, &filter(&header_sha, "entry"))? {
        if let Some(h) = r.tag(TAG_ENTRY_HASH).map(str::to_owned) {
            existing.insert(h, r);
        }
    }
    let mut latest: Vec<&Entry> = v.latest().into_values().collect();
    latest.sort_by_key(|e| e.seq);
    for e in &latest {
        match existing.remove(&e.hash) {
            Some(r) if r.info.status == "FINISHED" => s.children.push(ChildSummary {
                stage: e.stage.clone(),
                run_id: r.info.run_id,
                created: false,
                params: 0,
                metrics: 0,
                datasets: 0,
            }),
            unfinished => {
                if let Some(r) = unfinished {
                    c.delete_run(&r.info.run_id)?;
                    s.deleted.push(r.info.run_id);
                }
                s.children.push(create_child(&c, &exp, &parent.info.run_id, v, e)?);
            }
        }
    }
    // What is left are runs of entries a later entry of the same stage instance replaced.
    for (_, r) in existing {
        c.delete_run(&r.info.run_id)?;
        s.deleted.push(r.info.run_id);
    }
    if parent.tag(TAG_HEAD) != Some(v.head.hash.as_str()) || parent.info.status != "FINISHED" {
        update_parent(&c, v, &parent, &mut s)?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn search_filters_quote_dotted_tag_keys() {
        assert_eq!(
            super::filter("abc", "entry"),
            "tags.`hsx.ledger.header_sha256` = 'abc' and tags.`hsx.role` = 'entry'"
        );
    }
}
