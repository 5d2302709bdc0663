//! The base profile's model directory as a real download leaves it (issue 29):
//! - its identity is the files hsx reads: other weight formats, `.cache/huggingface/` and the rest of a
//!   download change no stage's input hash or resume decision (and are never opened), while an edit of
//!   `model.safetensors` or `tokenizer.json` changes them;
//! - `base-model` checks the checkpoint before anything runs, and each malformed directory fails with an
//!   error naming the file and the key or tensor.
//!
//! The model is the tiny random flan-t5-architecture fixture (tests/fixtures/t5/model), which has the
//! hub's file layout; no weights are downloaded.
mod common;

use hsx::config::Config;
use hsx::ledger::files::record_path;
use hsx::ledger::{FileRecord, Root, Roots};
use hsx::model::checkpoint::check_dir;
use hsx::pipeline::{self, Quiet, RunOptions, Status};
use hsx::stages::{self, Instance};
use sha1::Digest;
use std::path::{Path, PathBuf};
use tch::Tensor;

const MODEL_REL: &str = "models/flan-t5-base";
const REVISION: &str = "7bcac572ce56db69c1ea7c8af255c5d7c9672fc2";

/// The fixture model's three files, copied into `dir`.
fn copy_fixture(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(common::repo_path("tests/fixtures/t5/model").join(f), dir.join(f)).unwrap();
    }
}

/// configs/smoke.toml with the base profile's model source: `models/flan-t5-base` as an HF directory.
fn hf_dir_config(ws: &Path) -> PathBuf {
    let smoke = std::fs::read_to_string(common::repo_path("configs/smoke.toml")).unwrap();
    let mut out = String::new();
    let mut in_model = false;
    for line in smoke.lines() {
        if line.starts_with('[') {
            in_model = line == "[model]" || line.starts_with("[model.");
            if line == "[model]" {
                out.push_str(&format!("[model]\nsource = \"hf-dir\"\npath = \"{MODEL_REL}\"\n\n"));
            }
        }
        if !in_model && !line.starts_with("\"model.") {
            out.push_str(line);
            out.push('\n');
        }
    }
    let p = ws.join("hf-dir.toml");
    std::fs::write(&p, out).unwrap();
    Config::load(&p).unwrap_or_else(|e| panic!("the hf-dir test config: {e}"));
    p
}

/// Every stage instance's workspace-root inputs (the base model's files), recorded as the ledger would.
fn model_inputs(ws: &Path, cfg: &Config) -> Vec<(String, Vec<FileRecord>)> {
    let roots = Roots { run: None, data: None, workspace: Some(ws.to_owned()) };
    Instance::plan(cfg.experiment.seed, &cfg.experiment.replicate_seeds())
        .into_iter()
        .map(|i| {
            let spec = stages::spec(i, cfg);
            let recs = spec
                .inputs
                .iter()
                .filter(|(root, _)| *root == Root::Workspace)
                .flat_map(|(root, rel)| record_path(&roots, *root, rel).unwrap_or_else(|e| panic!("{i}: {e}")))
                .collect();
            (i.name(), recs)
        })
        .collect()
}

fn git_blob_sha1(bytes: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex::encode(h.finalize())
}

/// What `huggingface-cli download --local-dir` leaves beside the files hsx reads: other weight formats,
/// the README, and `.cache/huggingface/download/<file>.metadata` (commit, etag, time). `flax_model.msgpack`
/// is a FIFO: opening it would block or fail, so the run proves it is never opened.
fn add_download_leftovers(dir: &Path, stamp: &str) {
    std::fs::write(dir.join("pytorch_model.bin"), format!("stand-in torch weights {stamp}")).unwrap();
    std::fs::write(dir.join("tf_model.h5"), format!("stand-in tf weights {stamp}")).unwrap();
    std::fs::write(dir.join("README.md"), format!("model card {stamp}\n")).unwrap();
    std::fs::write(dir.join("spiece.model"), format!("stand-in sentencepiece {stamp}")).unwrap();
    let fifo = dir.join("flax_model.msgpack");
    if !fifo.exists() {
        let ok = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success();
        assert!(ok, "mkfifo failed");
    }
    let meta = dir.join(".cache/huggingface/download");
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(dir.join(".cache/huggingface/.gitignore"), "*\n").unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json", "pytorch_model.bin", "tf_model.h5"] {
        let bytes = std::fs::read(dir.join(f)).unwrap();
        let etag = if f.ends_with(".json") { git_blob_sha1(&bytes) } else { hsx::canonical::sha256_hex(&bytes) };
        // The third line is the download time: it differs between two downloads of the same bytes.
        std::fs::write(meta.join(format!("{f}.metadata")), format!("{REVISION}\n{etag}\n1765{stamp}.5\n")).unwrap();
        std::fs::write(meta.join(format!("{f}.lock")), "").unwrap();
    }
}

/// Whether `hsx run` would resume base-model from its latest entry (the executor's own decision).
fn resumes(ws: &Path, cfg: &Config) -> bool {
    let entries = hsx::ledger::store::read(&ws.join("ledger/hf.json")).unwrap().entries;
    let setup = pipeline::Setup::place(cfg.clone(), ws, None, ws.join(pipeline::run_dir_rel(cfg))).unwrap();
    let instance = Instance::from(hsx::stages::Stage::BaseModel);
    pipeline::resumable(&entries, instance.stage, &stages::spec(instance, cfg), &setup).is_some()
}

/// Entries recording every stage instance of the plan as it would be recorded now: its current
/// parameters, code identity and inputs (made from `template`, a real entry; run-root inputs are stand-in
/// files).
fn record_every_stage(ws: &Path, cfg: &Config, template: &hsx::ledger::Entry) -> Vec<hsx::ledger::Entry> {
    let setup = pipeline::Setup::place(cfg.clone(), ws, None, ws.join(pipeline::run_dir_rel(cfg))).unwrap();
    Instance::plan(cfg.experiment.seed, &cfg.experiment.replicate_seeds())
        .iter()
        .map(|i| {
            let spec = stages::spec(*i, cfg);
            let mut inputs = Vec::new();
            for (root, rel) in &spec.inputs {
                let path = setup.roots.get(*root).unwrap().join(rel);
                if !path.exists() {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, format!("stand-in for {rel}")).unwrap();
                }
                inputs.extend(record_path(&setup.roots, *root, rel).unwrap());
            }
            let mut e = template.clone();
            e.stage = spec.stage.clone();
            e.params = spec.params.clone();
            e.inputs = inputs;
            e.outputs = vec![];
            e.env["stage_code_sha256"] = hsx::stages::code::identity(i.stage).sha256.into();
            e
        })
        .collect()
}

/// The executor's resume decision for every stage instance against `entries` (true: it would be skipped).
fn resume_decisions(ws: &Path, cfg: &Config, entries: &[hsx::ledger::Entry]) -> Vec<(String, bool)> {
    let setup = pipeline::Setup::place(cfg.clone(), ws, None, ws.join(pipeline::run_dir_rel(cfg))).unwrap();
    Instance::plan(cfg.experiment.seed, &cfg.experiment.replicate_seeds())
        .iter()
        .map(|i| (i.name(), pipeline::resumable(entries, i.stage, &stages::spec(*i, cfg), &setup).is_some()))
        .collect()
}

/// Runs base-model (forced, as `--only` does) and returns its new entry.
fn run_base_model(ws: &Path, config: &Path) -> Result<(Status, hsx::ledger::Entry), String> {
    let opts = RunOptions {
        config_path: config.to_owned(),
        ledger_path: ws.join("ledger/hf.json"),
        key_path: common::key(ws, "k.pem"),
        workspace: ws.to_owned(),
        data_mirror: None,
        only: Some("base-model".into()),
        from: None,
        out: None,
    };
    let summary = pipeline::run(&opts, &Quiet).map_err(|e| e.to_string())?;
    let entries = hsx::ledger::store::read(&ws.join("ledger/hf.json")).unwrap().entries;
    Ok((summary.stages[0].status, entries.last().unwrap().clone()))
}

/// Flips one byte inside the first tensor's data (the file stays a valid checkpoint).
fn edit_weights(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let header = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    b[8 + header + 3] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn the_identity_is_the_files_hsx_reads_and_nothing_else_in_the_download() {
    let _torch = common::torch_lock();
    let d = tempfile::tempdir().unwrap();
    let ws = d.path();
    let model = ws.join(MODEL_REL);
    copy_fixture(&model);
    let config = hf_dir_config(ws);
    let cfg = Config::load(&config).unwrap();

    let before = model_inputs(ws, &cfg);
    // Every stage that loads the base model takes exactly its three files; the others take none.
    let readers: Vec<&str> = before.iter().filter(|(_, r)| !r.is_empty()).map(|(n, _)| n.as_str()).collect();
    for stage in [
        "base-model",
        "contaminate",
        "generator",
        "synthesize",
        "train-A",
        "train-B",
        "train-C",
        "evaluate-0",
        "evaluate-A",
    ] {
        assert!(readers.contains(&stage), "{stage} does not take the base model: {readers:?}");
    }
    for (stage, recs) in before.iter().filter(|(_, r)| !r.is_empty()) {
        let paths: Vec<&str> = recs.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "models/flan-t5-base/config.json",
                "models/flan-t5-base/model.safetensors",
                "models/flan-t5-base/tokenizer.json"
            ],
            "{stage}"
        );
    }
    let (first, entry) = run_base_model(ws, &config).unwrap();
    assert_eq!(first, Status::Ran);
    assert!(resumes(ws, &cfg), "an unchanged directory resumes");
    let recorded = record_every_stage(ws, &cfg, &entry);
    let decisions = resume_decisions(ws, &cfg, &recorded);
    assert!(decisions.iter().all(|(_, skip)| *skip), "every stage recorded as it is resumes: {decisions:?}");
    assert!(entry.metrics["hub"].is_null(), "no download metadata yet: {}", entry.metrics["hub"]);
    let tensors = Tensor::read_safetensors(model.join("model.safetensors")).unwrap().len();
    assert_eq!(entry.metrics["checkpoint"]["tensors"], tensors, "{}", entry.metrics["checkpoint"]);

    // A real download's leftovers, twice with different times: nothing moves, nothing is opened.
    for stamp in ["000001", "999999"] {
        add_download_leftovers(&model, stamp);
        assert_eq!(model_inputs(ws, &cfg), before, "download leftovers ({stamp}) changed an input hash");
        assert!(resumes(ws, &cfg), "download leftovers ({stamp}) changed base-model's resume decision");
        assert_eq!(
            resume_decisions(ws, &cfg, &recorded),
            decisions,
            "download leftovers ({stamp}) changed a stage's resume decision"
        );
    }

    // Editing what hsx reads changes every reader's input hash and re-runs base-model.
    for (file, edit) in [
        (
            "tokenizer.json",
            &(|p: &Path| {
                let t = std::fs::read_to_string(p).unwrap();
                std::fs::write(p, format!("{t}\n")).unwrap();
            }) as &dyn Fn(&Path),
        ),
        ("model.safetensors", &edit_weights as &dyn Fn(&Path)),
    ] {
        let prev = model_inputs(ws, &cfg);
        let recorded = record_every_stage(ws, &cfg, &entry);
        assert!(resume_decisions(ws, &cfg, &recorded).iter().all(|(_, skip)| *skip));
        edit(&model.join(file));
        // Every stage that reads the base model now re-runs; the others still resume.
        let after = resume_decisions(ws, &cfg, &recorded);
        for ((stage, skip), (_, recs)) in after.iter().zip(&prev) {
            assert_eq!(*skip, recs.is_empty(), "editing {file}: {stage} resumes = {skip}");
        }
        let now = model_inputs(ws, &cfg);
        for ((stage, a), (_, b)) in prev.iter().zip(&now) {
            if !a.is_empty() {
                assert_ne!(a, b, "editing {file} left {stage}'s input hash unchanged");
                let changed: Vec<&str> =
                    a.iter().zip(b).filter(|(x, y)| x != y).map(|(x, _)| x.path.as_str()).collect();
                assert_eq!(changed, [format!("{MODEL_REL}/{file}")], "{stage}");
            }
        }
        assert!(!resumes(ws, &cfg), "editing {file} left base-model resumable");
        let (status, entry) = run_base_model(ws, &config).unwrap();
        assert_eq!(status, Status::Ran);
        assert!(resumes(ws, &cfg), "after re-running on the edited {file} it resumes again");
        // The revision is provenance, from the metadata; the edited file no longer matches its etag.
        let hub = &entry.metrics["hub"];
        assert_eq!(hub["revision"], REVISION, "{hub}");
        assert_eq!(hub["files"][file]["matches_file"], false, "{hub}");
        assert!(hub["problems"].to_string().contains(file), "{hub}");
    }
    // The entry's inputs are the three files only.
    let entry = hsx::ledger::store::read(&ws.join("ledger/hf.json")).unwrap().entries.pop().unwrap();
    let recorded: Vec<&str> = entry.inputs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(recorded.len(), 3, "{recorded:?}");
}

/// A copy of the fixture with `tensors` rewritten by `f` (name → tensor).
fn with_tensors(dir: &Path, f: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let p = dir.join("model.safetensors");
    let mut t = Tensor::read_safetensors(&p).unwrap();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    f(&mut t);
    Tensor::write_safetensors(&t, &p).unwrap();
}

fn with_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn set(t: &mut [(String, Tensor)], name: &str, value: Tensor) {
    t.iter_mut().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1 = value;
}

fn get(t: &[(String, Tensor)], name: &str) -> Tensor {
    t.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1.shallow_clone()
}

type Breakage = (&'static str, Box<dyn Fn(&Path)>, &'static [&'static str]);

fn breakages() -> Vec<Breakage> {
    let q = "encoder.block.9.layer.0.SelfAttention.q.weight";
    vec![
        (
            "config keys missing",
            Box::new(|d: &Path| {
                with_config(d, |c| {
                    c.remove("relative_attention_max_distance");
                    c.remove("tie_word_embeddings");
                })
            }),
            &["config.json", "relative_attention_max_distance", "tie_word_embeddings"],
        ),
        (
            "config key null",
            Box::new(|d: &Path| {
                with_config(d, |c| {
                    c.insert("decoder_start_token_id".into(), serde_json::Value::Null);
                })
            }),
            &["config.json", "decoder_start_token_id"],
        ),
        (
            "unsupported activation",
            Box::new(|d: &Path| {
                with_config(d, |c| {
                    c.insert("feed_forward_proj".into(), "gated-mish".into());
                    c.remove("dense_act_fn");
                })
            }),
            &["config.json", "feed_forward_proj", "mish"],
        ),
        (
            "activation fields disagree",
            Box::new(|d: &Path| {
                with_config(d, |c| {
                    c.insert("dense_act_fn".into(), "gelu".into());
                })
            }),
            &["config.json", "dense_act_fn", "gated-gelu"],
        ),
        (
            "not a T5",
            Box::new(|d: &Path| {
                with_config(d, |c| {
                    c.insert("model_type".into(), "bart".into());
                })
            }),
            &["config.json", "model_type", "bart"],
        ),
        (
            "missing tensor",
            Box::new(|d: &Path| {
                with_tensors(d, |t| {
                    t.retain(|(n, _)| n != "decoder.block.1.layer.2.DenseReluDense.wo.weight");
                })
            }),
            &["model.safetensors", "1 missing", "decoder.block.1.layer.2.DenseReluDense.wo.weight"],
        ),
        (
            "unexpected tensor",
            Box::new(move |d: &Path| {
                with_tensors(d, |t| {
                    t.push((q.into(), Tensor::zeros([32, 32], (tch::Kind::Float, tch::Device::Cpu))));
                })
            }),
            &["model.safetensors", "1 unexpected", "encoder.block.9.layer.0.SelfAttention.q.weight"],
        ),
        (
            "mis-shaped tensor",
            Box::new(|d: &Path| {
                with_tensors(d, |t| {
                    set(t, "encoder.final_layer_norm.weight", Tensor::ones([31], (tch::Kind::Float, tch::Device::Cpu)));
                })
            }),
            &["model.safetensors", "mis-shaped", "encoder.final_layer_norm.weight is [31]", "[32]"],
        ),
        (
            "embed_tokens differs from shared",
            Box::new(|d: &Path| {
                with_tensors(d, |t| {
                    let s = get(t, "shared.weight");
                    t.push(("decoder.embed_tokens.weight".into(), &s + 1.0));
                })
            }),
            &["model.safetensors", "decoder.embed_tokens.weight", "shared.weight"],
        ),
        (
            "integer dtype",
            Box::new(|d: &Path| {
                with_tensors(d, |t| {
                    let w = get(t, "encoder.final_layer_norm.weight");
                    set(t, "encoder.final_layer_norm.weight", w.to_kind(tch::Kind::Int));
                })
            }),
            &["model.safetensors", "encoder.final_layer_norm.weight", "I32"],
        ),
        (
            "truncated download",
            Box::new(|d: &Path| {
                let p = d.join("model.safetensors");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() - 100]).unwrap();
            }),
            &["model.safetensors", "truncated"],
        ),
        (
            "tokenizer larger than the embedding",
            Box::new(|d: &Path| {
                with_tensors(d, |t| {
                    for n in ["shared.weight", "lm_head.weight"] {
                        let w = get(t, n).narrow(0, 0, 140).contiguous();
                        set(t, n, w);
                    }
                });
                with_config(d, |c| {
                    c.insert("vocab_size".into(), 140.into());
                });
            }),
            &["tokenizer.json", "145 entries", "vocab_size", "140"],
        ),
        (
            "pad id disagrees",
            Box::new(|d: &Path| {
                with_config(d, |c| {
                    c.insert("pad_token_id".into(), 3.into());
                })
            }),
            &["tokenizer.json", "<pad> is id 0", "pad_token_id is 3"],
        ),
        (
            "eos id disagrees",
            Box::new(|d: &Path| {
                with_config(d, |c| {
                    c.insert("eos_token_id".into(), 2.into());
                })
            }),
            &["tokenizer.json", "</s> is id 1", "eos_token_id is 2"],
        ),
        (
            "tokenizer appends no </s>",
            Box::new(|d: &Path| {
                let p = d.join("tokenizer.json");
                let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                v["post_processor"] = serde_json::Value::Null;
                std::fs::write(&p, v.to_string()).unwrap();
            }),
            &["tokenizer.json", "does not append </s>"],
        ),
    ]
}

#[test]
fn each_malformed_checkpoint_is_refused_naming_the_file_and_the_key_or_tensor() {
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("good");
    copy_fixture(&good);
    let summary = check_dir(&good).unwrap_or_else(|e| panic!("the fixture must pass: {e}"));
    assert_eq!((summary.tokenizer_entries, summary.embedding_rows), (145, 145));
    assert!(summary.shared_copies.is_empty());
    // A copy of shared.weight that is equal is accepted, and said.
    let copy = d.path().join("copy");
    copy_fixture(&copy);
    with_tensors(&copy, |t| {
        let s = get(t, "shared.weight");
        t.push(("encoder.embed_tokens.weight".into(), s.copy()));
    });
    assert_eq!(check_dir(&copy).unwrap().shared_copies, ["encoder.embed_tokens.weight"]);

    for (k, (what, breaks, needles)) in breakages().into_iter().enumerate() {
        let dir = d.path().join(format!("broken-{k}"));
        copy_fixture(&dir);
        breaks(&dir);
        let err = match check_dir(&dir) {
            Ok(s) => panic!("{what}: accepted ({s:?})"),
            Err(e) => e.to_string(),
        };
        for n in needles {
            assert!(err.contains(n), "{what}: the error does not name {n:?}:\n{err}");
        }
    }
}

#[test]
fn base_model_stops_on_a_malformed_checkpoint_before_anything_runs() {
    let _torch = common::torch_lock();
    let d = tempfile::tempdir().unwrap();
    let ws = d.path();
    copy_fixture(&ws.join(MODEL_REL));
    with_tensors(&ws.join(MODEL_REL), |t| {
        t.retain(|(n, _)| n != "lm_head.weight");
    });
    let config = hf_dir_config(ws);
    let err = run_base_model(ws, &config).unwrap_err();
    assert!(err.contains("model.safetensors") && err.contains("lm_head.weight"), "{err}");
    assert!(
        !ws.join("ledger/hf.json").exists()
            || hsx::ledger::store::read(&ws.join("ledger/hf.json")).unwrap().entries.is_empty()
    );
}
