//! `--format in-toto`: the ledger as an in-toto supply chain that `in-toto-verify` checks offline.
//!
//! * `root.layout`: the stage graph. One step per entry, named by its stage instance (`prepare`,
//!   `train-A@43`); an entry that a later entry of the same instance superseded (a re-run) is named
//!   `<instance>#<seq>`. Each step authorises the export signer's key (threshold 1) and states:
//!   - `expected_materials`: `REQUIRE` every recorded input; `MATCH <input> WITH PRODUCTS FROM <step>` for
//!     an input that an earlier entry wrote (the latest such entry before it: the file it read), `ALLOW`
//!     for an input no entry wrote (the CosmosQA file, a base model in the workspace); then
//!     `DISALLOW *`. So a step passes only if it consumed exactly the recorded files, each with the very
//!     digest its producer reported.
//!   - `expected_products`: `REQUIRE` and `ALLOW` every recorded output, then `DISALLOW *`.
//!   - the layout's `keys` hold the export signer's key; `expires` is `--expires` (default a year on).
//! * `links/<step>.<keyid[..8]>.link`: one link per entry, `materials` and `products` = the recorded inputs
//!   and outputs with their SHA-256, `environment.hsx` = which entry (seq, stage, hash, ledger and signer).
//! * `export_signer.pem`: the key that `in-toto-verify --verification-keys` takes.
//!
//! Artifacts are named `<root>/<path>` ([`super::artifact_name`]). Layout and links are DSSE envelopes
//! (`payloadType` `application/vnd.in-toto+json`, payload = the RFC 8785 form of the layout or link),
//! which in-toto (≥ 2.0) reads beside the older `{"signed", "signatures"}` form; the signature's key id is
//! securesystemslib's. What this does not prove: that an `ALLOW`ed external input is the right one (its
//! digest is in the link, not pinned by the layout), or anything about the last step's products beyond
//! the link's signature; see docs/interop.md.
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

use super::dsse::Envelope;
use super::{artifact_name, sslib_key, sslib_keyid, Document, ExportError, Verified, Writer};
use crate::ledger::{FileRecord, SigningKeyFile};

/// The payload type in-toto reads DSSE layouts, links and statements under.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const LAYOUT_FILE: &str = "root.layout";

#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    #[serde(rename = "_type")]
    pub type_: &'static str,
    pub expires: String,
    pub readme: String,
    pub keys: BTreeMap<String, Value>,
    pub steps: Vec<Step>,
    pub inspect: Vec<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    #[serde(rename = "_type")]
    pub type_: &'static str,
    pub name: String,
    pub threshold: u32,
    pub pubkeys: Vec<String>,
    pub expected_command: Vec<String>,
    pub expected_materials: Vec<Vec<String>>,
    pub expected_products: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Link {
    #[serde(rename = "_type")]
    pub type_: &'static str,
    pub name: String,
    pub command: Vec<String>,
    pub materials: BTreeMap<String, Digest>,
    pub products: BTreeMap<String, Digest>,
    pub byproducts: BTreeMap<String, Value>,
    pub environment: LinkEnvironment,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Digest {
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkEnvironment {
    pub hsx: LinkOrigin,
}

/// Which ledger entry a link restates.
#[derive(Debug, Clone, Serialize)]
pub struct LinkOrigin {
    pub experiment: String,
    pub header_sha256: String,
    pub seq: u64,
    pub stage: String,
    pub entry_hash: String,
    pub ledger_signer: String,
}

/// The step name of each entry: its stage instance, or `<instance>#<seq>` when a later entry of the same
/// instance superseded it.
pub fn step_names(v: &Verified) -> Vec<String> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, e) in v.entries.iter().enumerate() {
        last.insert(e.stage.as_str(), i);
    }
    v.entries
        .iter()
        .enumerate()
        .map(|(i, e)| if last[e.stage.as_str()] == i { e.stage.clone() } else { format!("{}#{}", e.stage, e.seq) })
        .collect()
}

/// An artifact name as an fnmatch pattern that matches only itself (`*`, `?` and `[` bracketed).
pub fn literal_pattern(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '*' | '?' | '[' => format!("[{c}]"),
            c => c.to_string(),
        })
        .collect()
}

fn artifacts(seq: u64, what: &str, files: &[FileRecord]) -> Result<BTreeMap<String, Digest>, ExportError> {
    let mut out = BTreeMap::new();
    for f in files {
        let name = artifact_name(f);
        let digest = Digest { sha256: f.sha256.clone() };
        if let Some(prev) = out.insert(name.clone(), digest.clone()) {
            if prev != digest {
                return Err(ExportError::Usage(format!(
                    "entry {seq} records {what} {name} twice with different digests; in-toto cannot state that"
                )));
            }
        }
    }
    Ok(out)
}

fn rule(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

/// The layout and links of a verified ledger, unsigned.
pub fn build(v: &Verified, keyid: &str, key: Value, expires: &str) -> Result<(Layout, Vec<Link>), ExportError> {
    let names = step_names(v);
    // The latest entry so far that wrote each artifact: the producer a later reader consumed.
    let mut producer: HashMap<String, usize> = HashMap::new();
    let mut steps = Vec::new();
    let mut links = Vec::new();
    for (i, e) in v.entries.iter().enumerate() {
        let materials = artifacts(e.seq, "input", &e.inputs)?;
        let products = artifacts(e.seq, "output", &e.outputs)?;
        let mut expected_materials: Vec<Vec<String>> =
            materials.keys().map(|m| rule(&["REQUIRE", &literal_pattern(m)])).collect();
        for m in materials.keys() {
            let pattern = literal_pattern(m);
            expected_materials.push(match producer.get(m) {
                Some(&j) => rule(&["MATCH", &pattern, "WITH", "PRODUCTS", "FROM", &names[j]]),
                None => rule(&["ALLOW", &pattern]),
            });
        }
        expected_materials.push(rule(&["DISALLOW", "*"]));
        let mut expected_products: Vec<Vec<String>> =
            products.keys().map(|p| rule(&["REQUIRE", &literal_pattern(p)])).collect();
        expected_products.extend(products.keys().map(|p| rule(&["ALLOW", &literal_pattern(p)])));
        expected_products.push(rule(&["DISALLOW", "*"]));
        steps.push(Step {
            type_: "step",
            name: names[i].clone(),
            threshold: 1,
            pubkeys: vec![keyid.to_owned()],
            expected_command: Vec::new(),
            expected_materials,
            expected_products,
        });
        for p in products.keys() {
            producer.insert(p.clone(), i);
        }
        links.push(Link {
            type_: "link",
            name: names[i].clone(),
            command: Vec::new(),
            materials,
            products,
            byproducts: BTreeMap::new(),
            environment: LinkEnvironment {
                hsx: LinkOrigin {
                    experiment: e.experiment.clone(),
                    header_sha256: e.header_sha256.clone(),
                    seq: e.seq,
                    stage: e.stage.clone(),
                    entry_hash: e.hash.clone(),
                    ledger_signer: v.header.signer.key_id.clone(),
                },
            },
        });
    }
    let readme = format!(
        "hsx ledger of experiment {} (header sha256 {}, {} entries, head sha256 {}) as an in-toto supply chain: \
         one step per ledger entry, each consuming exactly the files its producers reported. Layout and links \
         were derived from the ledger after it verified and are signed by the export signer (key {keyid}); \
         the ledger itself is signed by {}.",
        v.header.experiment,
        v.header.sha256(),
        v.head.entries,
        v.head.hash,
        v.header.signer.key_id
    );
    let layout = Layout {
        type_: "layout",
        expires: expires.to_owned(),
        readme,
        keys: BTreeMap::from([(keyid.to_owned(), key)]),
        steps,
        inspect: Vec::new(),
    };
    Ok((layout, links))
}

fn signed<T: Serialize>(doc: &T, keyid: &str, key: &SigningKeyFile) -> Result<String, ExportError> {
    let value = serde_json::to_value(doc).expect("an in-toto document serialises");
    let payload = crate::canonical::to_canonical_string(&value);
    let mut text = serde_json::to_string_pretty(&Envelope::sign(PAYLOAD_TYPE, payload.as_bytes(), keyid, key)?)
        .expect("an envelope serialises");
    text.push('\n');
    Ok(text)
}

pub fn write(
    v: &Verified,
    key: &SigningKeyFile,
    expires: time::OffsetDateTime,
    w: &mut Writer,
) -> Result<(), ExportError> {
    let public = key.public();
    let keyid = sslib_keyid(&public);
    let mut key_dict = sslib_key(&public);
    key_dict["keyid"] = Value::String(keyid.clone());
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let expires = expires
        .to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .map_err(|e| ExportError::Usage(format!("--expires cannot be written as in-toto's time: {e}")))?;
    let (layout, links) = build(v, &keyid, key_dict, &expires)?;
    w.file(LAYOUT_FILE, signed(&layout, &keyid, key)?.as_bytes())?;
    w.document(Document {
        file: LAYOUT_FILE.into(),
        line: None,
        kind: "layout",
        seq: v.head.seq,
        stage: None,
        entry_hash: Some(v.head.hash.clone()),
        payload_type: PAYLOAD_TYPE.into(),
        keyid: keyid.clone(),
    });
    for (link, e) in links.iter().zip(&v.entries) {
        let file = format!("links/{}.{}.link", link.name, &keyid[..8]);
        w.file(&file, signed(link, &keyid, key)?.as_bytes())?;
        w.document(Document {
            file,
            line: None,
            kind: "link",
            seq: Some(e.seq),
            stage: Some(link.name.clone()),
            entry_hash: Some(e.hash.clone()),
            payload_type: PAYLOAD_TYPE.into(),
            keyid: keyid.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_only_the_name() {
        assert_eq!(literal_pattern("run/a*b?[c].txt"), "run/a[*]b[?][[]c].txt");
        assert_eq!(literal_pattern("run/prepare/human_train.jsonl"), "run/prepare/human_train.jsonl");
    }
}
