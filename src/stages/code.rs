//! Each stage's code identity: the part of the resume key that says "the code that would run is the code
//! that ran". It is the SHA-256 of every file the binary is built from (`src/`, `templates/`,
//! `Cargo.toml`, `Cargo.lock`, `build.rs`; hashed by `build.rs` at compile time), except the files that
//! only *other* stages run, or no stage (the CLI, verify, reproduce, export, benchmarks) ([`OWNED`]). So editing
//! the report template changes the report's identity and no other stage's: resuming re-renders the
//! report and retrains nothing; editing the CLI's printing re-runs nothing. Editing anything shared (the
//! model code, the data code, the executor, a dependency) changes every stage's identity, as it should.
//!
//! [`OWNED`] is checked by a test: no file that another stage may run refers to an owned file's module.
//! The files exempt from that check are the module declarations and stage dispatch (`lib.rs`,
//! `stages/mod.rs`), `error.rs`, which only names the error types of every room, and this table.
//!
//! The identity is recorded in each ledger entry as `env.stage_code_sha256`, with the number of files it
//! covers (`env.stage_code_files`).
use sha2::{Digest, Sha256};

use super::registry::{Arm, Model, Stage};

include!(concat!(env!("OUT_DIR"), "/code_files.rs"));

/// The evaluations; compare, which reads their prediction rows with the evaluate stage's type; and the
/// report, which reads their entries as the evaluate stage's record.
const EVALUATE_COMPARE_REPORT: [Stage; 6] = [
    Stage::Evaluate(Model::Base),
    Stage::Evaluate(Model::Arm(Arm::A)),
    Stage::Evaluate(Model::Arm(Arm::B)),
    Stage::Evaluate(Model::Arm(Arm::C)),
    Stage::Compare,
    Stage::Report,
];

/// Files (or directories, ending in `/`) run only by the listed stages (by none: the entry points).
/// Every file not listed here is part of every stage's code. The report reads each entry as its stage's
/// typed record, declared in the stage's file, so it runs every stage file (and what those name): an
/// edit of a stage file re-renders the report, as the stage's new entry would anyway.
pub const OWNED: &[(&str, &[Stage])] = &[
    ("src/stages/prepare.rs", &[Stage::Prepare, Stage::Report]),
    // The train stage (and so the generator, which uses its loop) reads the plan the pre-registration wrote.
    (
        "src/stages/preregister.rs",
        &[
            Stage::Preregister,
            Stage::Generator,
            Stage::Train(Arm::A),
            Stage::Train(Arm::B),
            Stage::Train(Arm::C),
            Stage::Compare,
            Stage::Report,
        ],
    ),
    ("src/stages/base_model.rs", &[Stage::BaseModel, Stage::Report]),
    // The base model's record holds the pretraining's held-out figures (`HeldOut`).
    ("src/model/pretrain.rs", &[Stage::BaseModel, Stage::Report]),
    ("src/stages/contaminate.rs", &[Stage::Contaminate, Stage::Report]),
    ("src/stages/generator.rs", &[Stage::Generator, Stage::Report]),
    ("src/stages/synthesize.rs", &[Stage::Synthesize, Stage::Report]),
    // The generator trains its adapter with the train stage's loop; compare reads its typed record
    // (`TrainMetrics`) from each `train_metrics.json`.
    (
        "src/stages/train.rs",
        &[
            Stage::Train(Arm::A),
            Stage::Train(Arm::B),
            Stage::Train(Arm::C),
            Stage::Generator,
            Stage::Compare,
            Stage::Report,
        ],
    ),
    ("src/stages/evaluate.rs", &EVALUATE_COMPARE_REPORT),
    ("src/model/choice.rs", &EVALUATE_COMPARE_REPORT),
    // compare's record holds the analysis's results (`HypothesisResult`, `PowerCheck`, ...).
    ("src/stages/compare.rs", &[Stage::Compare, Stage::Report]),
    ("src/stages/compare/", &[Stage::Compare, Stage::Report]),
    ("src/analysis.rs", &[Stage::Compare, Stage::Report]),
    ("src/analysis/", &[Stage::Compare, Stage::Report]),
    ("src/stages/report.rs", &[Stage::Report]),
    ("src/report.rs", &[Stage::Report]),
    ("src/report/", &[Stage::Report]),
    ("templates/", &[Stage::Report]),
    // The entry points above the executor: no stage runs them, so editing them re-runs nothing.
    ("src/main.rs", &[]),
    ("src/cli/", &[]),
    ("src/audit.rs", &[]),
    ("src/export/", &[]),
    ("src/reproduce.rs", &[]),
    ("src/reproduce/", &[]),
    ("src/repro_stats.rs", &[]),
    ("src/repro_stats/", &[]),
    ("src/bench.rs", &[]),
    // `hsx export`: a view of a verified ledger; no stage runs it.
    ("src/export/", &[]),
    // The Slurm driver and a job's entry point: each job runs its stage through the shared executor.
    ("src/slurm.rs", &[]),
];

/// The stages that run `path`: `None` when every stage does.
pub fn owners(path: &str) -> Option<&'static [Stage]> {
    OWNED.iter().find(|(p, _)| if p.ends_with('/') { path.starts_with(p) } else { path == *p }).map(|(_, s)| *s)
}

/// A stage's code identity: the SHA-256 over `path NUL sha256 LF` of every file the stage may run, in
/// path order, and how many files that is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeIdentity {
    pub sha256: String,
    pub files: usize,
}

pub fn identity(stage: Stage) -> CodeIdentity {
    identity_of(stage, CODE_FILES)
}

fn identity_of(stage: Stage, files: &[(&str, &str)]) -> CodeIdentity {
    let mut h = Sha256::new();
    let mut n = 0;
    for (path, sha) in files {
        if owners(path).is_some_and(|o| !o.contains(&stage)) {
            continue;
        }
        h.update(path.as_bytes());
        h.update([0]);
        h.update(sha.as_bytes());
        h.update([b'\n']);
        n += 1;
    }
    CodeIdentity { sha256: hex::encode(h.finalize()), files: n }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_owned_path_exists_and_the_table_covers_every_file() {
        for (p, stages) in OWNED {
            assert!(!stages.is_empty() || !p.starts_with("src/stages/"), "{p} is a stage file with no stage");
            assert!(
                CODE_FILES.iter().any(|(f, _)| if p.ends_with('/') { f.starts_with(p) } else { f == p }),
                "OWNED lists {p}, which is not a file the binary is built from"
            );
        }
        assert!(CODE_FILES.iter().any(|(f, _)| *f == "src/stages/code.rs"));
        assert!(CODE_FILES.iter().any(|(f, _)| *f == "templates/REPORT.md.j2"));
        assert!(CODE_FILES.iter().any(|(f, _)| *f == "Cargo.lock"));
    }

    #[test]
    fn a_template_edit_changes_the_report_identity_only() {
        let mut edited: Vec<(&str, &str)> = CODE_FILES.to_vec();
        let t = edited.iter_mut().find(|(f, _)| *f == "templates/REPORT.md.j2").expect("the template is hashed");
        t.1 = "0000000000000000000000000000000000000000000000000000000000000000";
        for stage in Stage::ALL {
            let changed = identity_of(stage, CODE_FILES) != identity_of(stage, &edited);
            assert_eq!(changed, stage == Stage::Report, "{stage}");
        }
        // An entry point (the CLI's printing, reproduce) changes none.
        for f in ["src/cli/print.rs", "src/reproduce.rs"] {
            let mut edited: Vec<(&str, &str)> = CODE_FILES.to_vec();
            edited.iter_mut().find(|(p, _)| *p == f).expect("hashed").1 = "00";
            for stage in Stage::ALL {
                assert_eq!(identity_of(stage, CODE_FILES), identity_of(stage, &edited), "{f} {stage}");
            }
        }
        // A shared file (the model code) changes every stage's identity.
        let mut edited: Vec<(&str, &str)> = CODE_FILES.to_vec();
        edited.iter_mut().find(|(f, _)| *f == "src/model/t5.rs").expect("t5.rs is hashed").1 = "00";
        for stage in Stage::ALL {
            assert_ne!(identity_of(stage, CODE_FILES), identity_of(stage, &edited), "{stage}");
        }
        // The train loop is the three train stages' and the generator's; compare and the report read its
        // typed record.
        let mut edited: Vec<(&str, &str)> = CODE_FILES.to_vec();
        edited.iter_mut().find(|(f, _)| *f == "src/stages/train.rs").expect("train.rs is hashed").1 = "00";
        let changed: Vec<Stage> =
            Stage::ALL.into_iter().filter(|s| identity_of(*s, CODE_FILES) != identity_of(*s, &edited)).collect();
        assert_eq!(
            changed,
            [
                Stage::Generator,
                Stage::Train(Arm::A),
                Stage::Train(Arm::B),
                Stage::Train(Arm::C),
                Stage::Compare,
                Stage::Report
            ]
        );
        // A stage's file changes its own identity and the report's, which reads its record; no other's.
        let mut edited: Vec<(&str, &str)> = CODE_FILES.to_vec();
        edited.iter_mut().find(|(f, _)| *f == "src/stages/contaminate.rs").expect("hashed").1 = "00";
        let changed: Vec<Stage> =
            Stage::ALL.into_iter().filter(|s| identity_of(*s, CODE_FILES) != identity_of(*s, &edited)).collect();
        assert_eq!(changed, [Stage::Contaminate, Stage::Report]);
    }

    /// Module declarations and stage dispatch, the error types, and this table (it names every owned
    /// path): files that may name an owned module without running it for another stage. (The entry points
    /// need no exemption: no stage runs them, so they may name anything.)
    const EXEMPT: [&str; 4] = ["src/lib.rs", "src/stages/mod.rs", "src/error.rs", "src/stages/code.rs"];

    fn exempt(path: &str) -> bool {
        EXEMPT.contains(&path)
    }

    /// The ways Rust source in `from` can name the module of `owned`.
    fn mentions(from: &str, text: &str, owned: &str) -> bool {
        if owned.ends_with('/') {
            // A directory of non-Rust files: named by an include_str!/include_bytes! (or a path string).
            return text.contains(&format!("/{owned}")) || text.contains(&format!("\"{owned}"));
        }
        let module = owned.trim_start_matches("src/").trim_end_matches(".rs").trim_end_matches("/mod");
        let segs: Vec<&str> = module.split('/').collect();
        let (last, parent) = segs.split_last().expect("a module path");
        let full = format!("crate::{}", segs.join("::"));
        let word =
            |t: &str, at: usize, len: usize| !t[at + len..].starts_with(|c: char| c.is_alphanumeric() || c == '_');
        let find_word = |needle: &str| text.match_indices(needle).any(|(i, _)| word(text, i, needle.len()));
        if find_word(&full) {
            return true;
        }
        // `use crate::parent::{…, last, …}` and, from a sibling file, `super::last` / `super::{…}`.
        let parent_path =
            if parent.is_empty() { "crate::".to_owned() } else { format!("crate::{}::", parent.join("::")) };
        let sibling = from.rsplit_once('/').map(|(d, _)| d) == owned.rsplit_once('/').map(|(d, _)| d);
        let mut groups: Vec<String> = vec![format!("{parent_path}{{")];
        if sibling {
            if find_word(&format!("super::{last}")) {
                return true;
            }
            groups.push("super::{".to_owned());
        }
        for g in groups {
            for (i, _) in text.match_indices(&g) {
                let body = &text[i + g.len()..];
                let body = &body[..body.find('}').unwrap_or(body.len())];
                if body.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|w| w == *last) {
                    return true;
                }
            }
        }
        false
    }

    #[test]
    fn no_other_stage_runs_an_owned_file() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (from, _) in CODE_FILES.iter().filter(|(f, _)| f.ends_with(".rs") && f.starts_with("src/")) {
            if exempt(from) {
                continue;
            }
            let text = std::fs::read_to_string(root.join(from)).unwrap_or_else(|e| panic!("read {from}: {e}"));
            // Test modules are not run by any stage, and comments run nothing.
            let text = text.split("#[cfg(test)]").next().unwrap_or("");
            let text: String =
                text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
            let text = text.as_str();
            for (owned, stages) in OWNED {
                if from == owned || (owned.ends_with('/') && from.starts_with(owned)) {
                    continue;
                }
                // `from` is run by every stage (None) or by its owners; each must be an owner of `owned`.
                let runners: &[Stage] = owners(from).unwrap_or(&Stage::ALL);
                if runners.iter().all(|s| stages.contains(s)) {
                    continue;
                }
                assert!(
                    !mentions(from, text, owned),
                    "{from} names {owned}, which OWNED gives to {stages:?} only, but {from} is run by {runners:?}: \
                     add those stages to {owned}'s owners or move the shared code out of {owned}"
                );
            }
        }
    }

    #[test]
    fn the_mention_check_sees_the_forms_rust_uses() {
        assert!(mentions(
            "src/stages/generator.rs",
            "let x = super::train::train_adapter(ctx);",
            "src/stages/train.rs"
        ));
        assert!(mentions("src/stages/compare.rs", "use super::{ctx, evaluate::Prediction};", "src/stages/evaluate.rs"));
        assert!(mentions("src/pipeline.rs", "use crate::{analysis, config};", "src/analysis.rs"));
        assert!(mentions("src/pipeline.rs", "crate::model::pretrain::run(x)", "src/model/pretrain.rs"));
        assert!(mentions("src/pipeline.rs", "use crate::model::{t5, pretrain::Pretrain};", "src/model/pretrain.rs"));
        assert!(mentions("src/x.rs", "include_str!(\"../templates/REPORT.md.j2\")", "templates/"));
        assert!(!mentions("src/pipeline.rs", "crate::analysis_other::f()", "src/analysis.rs"));
        assert!(!mentions("src/pipeline.rs", "let report = 1; // the report", "src/report.rs"));
    }
}
