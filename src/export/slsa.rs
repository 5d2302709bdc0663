//! `--format slsa`: `provenance.intoto.jsonl`, one DSSE envelope per line (`payloadType`
//! `application/vnd.in-toto+json`, signed by the export signer, securesystemslib key id) holding an
//! in-toto Statement v1 with the SLSA Provenance v1 predicate for each train and evaluate entry.
//!
//! * `subject`: the adapter's files (train) or `scores.jsonl` (evaluate), `<root>/<path>` with SHA-256;
//! * `buildDefinition.buildType` = [`BUILD_TYPE`]; `externalParameters` = the stage instance, its part of
//!   the config (`params`), the seeds (decimal strings) and the whole config's hash; `internalParameters`
//!   = the determinism class and the recorded environment; `resolvedDependencies` = every recorded input
//!   with its digest and role (`training data`, `base model`, `pre-registration`, …, and the entry that
//!   produced it), and hsx's source at the recorded git commit (`gitCommit` digest);
//! * `runDetails.builder.id` = `urn:hsx:ledger-signer:<key id>` (the key that vouched for the run),
//!   `builder.version` = hsx's version and the git commit; `metadata` = the entry hash as `invocationId`,
//!   `startedOn`, `finishedOn`; `byproducts` = the ledger entry itself (its hash) and the stage's other
//!   outputs.
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

use super::dsse::Envelope;
use super::intoto::PAYLOAD_TYPE;
use super::{artifact_name, sslib_keyid, Document, ExportError, Verified, Writer};
use crate::ledger::{Entry, FileRecord, GitState, Root, SigningKeyFile};
use crate::stages::registry::{Instance, Stage};

pub const FILE: &str = "provenance.intoto.jsonl";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What `externalParameters` and `internalParameters` mean (described in docs/interop.md).
pub const BUILD_TYPE: &str = "urn:hsx:stage-run:v1";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: &'static str,
    pub subject: Vec<ResourceDescriptor>,
    pub predicate_type: &'static str,
    pub predicate: Provenance,
}

/// An in-toto ResourceDescriptor with the members this export fills.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceDescriptor {
    pub name: String,
    pub digest: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: &'static str,
    pub external_parameters: Value,
    pub internal_parameters: Value,
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunDetails {
    pub builder: Builder,
    pub metadata: BuildMetadata,
    pub byproducts: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Builder {
    pub id: String,
    pub version: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    pub invocation_id: String,
    pub started_on: String,
    pub finished_on: String,
}

fn sha256(hex: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("sha256".to_owned(), hex.to_owned())])
}

/// What an input is to the stage that read it, from the stage that wrote it (or, for a file no entry
/// wrote, from its root).
fn role(producer: Option<&Entry>, f: &FileRecord) -> &'static str {
    match producer.map(|p| Instance::parse(&p.stage).map(|i| i.stage)) {
        Some(Ok(Stage::BaseModel)) => "base model",
        Some(Ok(Stage::Preregister)) => "pre-registration",
        Some(Ok(Stage::Train(_))) => "adapter",
        Some(Ok(Stage::Prepare | Stage::Contaminate | Stage::Synthesize)) => {
            if f.path.ends_with("_val.jsonl") {
                "validation data"
            } else if f.path.ends_with("_test.jsonl") {
                "test data"
            } else {
                "training data"
            }
        }
        Some(_) => "input",
        None if f.root == Root::Data => "training data",
        None if f.root == Root::Workspace && f.path.starts_with("models/") => "base model",
        None => "input",
    }
}

/// The statement for entry `i` (a train or evaluate entry), or `None` for other stages.
pub fn statement(v: &Verified, i: usize, producers: &HashMap<String, usize>) -> Result<Option<Statement>, ExportError> {
    let e = &v.entries[i];
    let stage = match Instance::parse(&e.stage) {
        Ok(inst) => inst.stage,
        Err(_) => return Ok(None),
    };
    let is_subject: fn(&FileRecord) -> bool = match stage {
        Stage::Train(_) => |f| f.path.contains("/adapter/"),
        Stage::Evaluate(_) => |f| f.path.rsplit('/').next() == Some("scores.jsonl"),
        _ => return Ok(None),
    };
    let describe = |f: &FileRecord| ResourceDescriptor {
        name: artifact_name(f),
        digest: sha256(&f.sha256),
        annotations: BTreeMap::new(),
    };
    let subject: Vec<ResourceDescriptor> = e.outputs.iter().filter(|f| is_subject(f)).map(describe).collect();
    if subject.is_empty() {
        return Err(ExportError::Usage(format!(
            "entry {} ({}) records no {} to describe",
            e.seq,
            e.stage,
            if matches!(stage, Stage::Train(_)) { "adapter files" } else { "scores.jsonl" }
        )));
    }
    let mut deps: Vec<ResourceDescriptor> = e
        .inputs
        .iter()
        .map(|f| {
            let producer = producers.get(&artifact_name(f)).map(|&j| &v.entries[j]);
            let mut annotations = BTreeMap::from([("role".to_owned(), Value::from(role(producer, f)))]);
            if let Some(p) = producer {
                annotations.insert(
                    "producedBy".to_owned(),
                    serde_json::json!({"seq": p.seq, "stage": p.stage, "entryHash": p.hash}),
                );
            }
            ResourceDescriptor { name: artifact_name(f), digest: sha256(&f.sha256), annotations }
        })
        .collect();
    let mut version = BTreeMap::from([(
        "hsx".to_owned(),
        e.env.get("hsx_version").and_then(Value::as_str).unwrap_or("unknown").to_owned(),
    )]);
    if let GitState::Repository { commit, dirty, diff_sha256 } = &e.git {
        version.insert("gitCommit".to_owned(), commit.clone());
        let mut annotations = BTreeMap::from([("dirty".to_owned(), Value::from(*dirty))]);
        if let Some(d) = diff_sha256 {
            annotations.insert("diffSha256".to_owned(), Value::from(d.clone()));
        }
        if let Some(code) = e.env.get("stage_code_sha256") {
            annotations.insert("stageCodeSha256".to_owned(), code.clone());
        }
        deps.push(ResourceDescriptor {
            name: "hsx source".into(),
            digest: BTreeMap::from([("gitCommit".to_owned(), commit.clone())]),
            annotations,
        });
    }
    let mut byproducts = vec![ResourceDescriptor {
        name: format!("hsx ledger entry {} ({})", e.seq, e.stage),
        digest: sha256(&e.hash),
        annotations: BTreeMap::from([
            ("experiment".to_owned(), Value::from(e.experiment.clone())),
            ("headerSha256".to_owned(), Value::from(e.header_sha256.clone())),
            ("payloadType".to_owned(), Value::from(crate::ledger::ENTRY_PAYLOAD_TYPE)),
            ("signer".to_owned(), Value::from(v.header.signer.key_id.clone())),
        ]),
    }];
    byproducts.extend(e.outputs.iter().filter(|f| !is_subject(f)).map(describe));
    Ok(Some(Statement {
        type_: STATEMENT_TYPE,
        subject,
        predicate_type: PREDICATE_TYPE,
        predicate: Provenance {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE,
                external_parameters: serde_json::json!({
                    "stage": e.stage,
                    "params": e.params,
                    "seeds": {"master": e.seeds.master.to_string(), "stage": e.seeds.stage.to_string()},
                    "configSha256": e.config_sha256,
                }),
                internal_parameters: serde_json::json!({"determinism": e.determinism, "env": e.env}),
                resolved_dependencies: deps,
            },
            run_details: RunDetails {
                builder: Builder { id: format!("urn:hsx:ledger-signer:{}", v.header.signer.key_id), version },
                metadata: BuildMetadata {
                    invocation_id: format!("sha256:{}", e.hash),
                    started_on: e.started.clone(),
                    finished_on: e.finished.clone(),
                },
                byproducts,
            },
        },
    }))
}

pub fn write(v: &Verified, key: &SigningKeyFile, w: &mut Writer) -> Result<(), ExportError> {
    let keyid = sslib_keyid(&key.public());
    let mut producers: HashMap<String, usize> = HashMap::new();
    let mut text = String::new();
    let mut line = 0;
    for (i, e) in v.entries.iter().enumerate() {
        if let Some(st) = statement(v, i, &producers)? {
            let value = serde_json::to_value(&st).expect("a statement serialises");
            if let Some(n) = crate::canonical::first_non_i_json_number(&value) {
                return Err(ExportError::Usage(format!(
                    "entry {} ({}): the statement's member {} is the number {}, outside I-JSON's exact range",
                    e.seq, e.stage, n.path, n.number
                )));
            }
            let payload = crate::canonical::to_canonical_string(&value);
            text.push_str(&Envelope::sign(PAYLOAD_TYPE, payload.as_bytes(), &keyid, key)?.to_line());
            text.push('\n');
            line += 1;
            w.document(Document {
                file: FILE.into(),
                line: Some(line),
                kind: "statement",
                seq: Some(e.seq),
                stage: Some(e.stage.clone()),
                entry_hash: Some(e.hash.clone()),
                payload_type: PAYLOAD_TYPE.into(),
                keyid: keyid.clone(),
            });
        }
        for f in &e.outputs {
            producers.insert(artifact_name(f), i);
        }
    }
    if line == 0 {
        return Err(ExportError::Usage(format!(
            "ledger {} has no train or evaluate entry to describe as SLSA provenance",
            v.path.display()
        )));
    }
    w.file(FILE, text.as_bytes())
}
