//! Snapshot tests of REPORT.md rendered from committed fixture ledgers (tests/inputs/, made by
//! make_report_ledgers.py): a complete run, a synthesis shortfall, a failed hypothesis.
use hsx::ledger::Ledger;
use hsx::report::{render, report_entries, DEFAULT_TEMPLATE};

/// What a report's snapshot leaves out: dates, hashes, key ids and times.
fn report_filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\d{4}-\d{2}-\d{2}", "[date]"),
        (r"\[#(\d+) [0-9a-f]{8}\]", "[#$1 hash]"),
        (r"`[0-9a-f]{10,16}`", "`[hash]`"),
        (r"sha256:[0-9a-f]{16}", "sha256:[key]"),
        (r"--expect-head [0-9a-f]{64}", "--expect-head [head]"),
        (r"\| \d+\.\d \|", "| [secs] |"),
        (r"total \d+\.\d s", "total [secs] s"),
    ]
}

#[test]
fn rendered_reports() {
    insta::glob!("inputs/ledger_*.json", |path| {
        let ledger: Ledger = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let text = render(&ledger, report_entries(&ledger), DEFAULT_TEMPLATE)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for bad in ["[FILL", "X.XXX", "TO BE FILLED"] {
            assert!(!text.contains(bad));
        }
        insta::with_settings!({filters => report_filters()}, {
            insta::assert_snapshot!(text);
        });
    });
}

#[test]
fn a_missing_value_is_an_error_not_a_blank() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inputs/ledger_complete.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cmp = v["entries"].as_array_mut().unwrap().iter_mut().find(|e| e["stage"] == "compare").unwrap();
    cmp["metrics"]["table"]["B"].as_object_mut().unwrap().remove("f1");
    let ledger: Ledger = serde_json::from_value(v).unwrap();
    let e = render(&ledger, report_entries(&ledger), DEFAULT_TEMPLATE).unwrap_err().to_string();
    assert!(e.contains("REPORT.md"), "{e}");
}

#[test]
fn a_filter_the_registry_does_not_know_is_an_error_not_a_mislabel() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inputs/ledger_complete.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let sy = v["entries"].as_array_mut().unwrap().iter_mut().find(|e| e["stage"] == "synthesize").unwrap();
    sy["metrics"]["filter_order"].as_array_mut().unwrap().push("sixth_filter".into());
    let ledger: Ledger = serde_json::from_value(v).unwrap();
    let e = render(&ledger, report_entries(&ledger), DEFAULT_TEMPLATE).unwrap_err().to_string();
    assert!(e.contains("sixth_filter"), "{e}");
}

#[test]
fn the_template_loops_over_the_registries_instead_of_naming_their_rows() {
    use hsx::metrics::registry::{compared, PRIMARY};
    for (name, _) in hsx::synth::filters::rejection_reasons() {
        assert!(!DEFAULT_TEMPLATE.contains(&format!("\"{name}\"")), "the template names filter {name}");
    }
    for m in compared().filter(|m| m.key != PRIMARY) {
        for spelled in
            [format!(".{}.", m.key), format!(".{} ", m.key), format!("\"{}\"", m.key), format!("| {} |", m.title)]
        {
            assert!(!DEFAULT_TEMPLATE.contains(&spelled), "the template names metric {} as {spelled:?}", m.key);
        }
    }
    for s in hsx::stages::Stage::ALL.iter().filter(|s| s.name().contains('-')) {
        assert!(!DEFAULT_TEMPLATE.contains(&format!("\"{}\"", s.template_key())), "the template lists stage {s}");
    }
}

fn fixture(name: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inputs").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn render_value(v: serde_json::Value) -> Result<String, hsx::report::ReportError> {
    let ledger: Ledger = serde_json::from_value(v).unwrap();
    render(&ledger, report_entries(&ledger), DEFAULT_TEMPLATE)
}

fn stage<'a>(v: &'a mut serde_json::Value, name: &str) -> &'a mut serde_json::Value {
    v["entries"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .rev()
        .find(|e| e["stage"] == name)
        .unwrap_or_else(|| panic!("no {name} entry"))
}

/// `mean [lo, hi]` as the report prints a table cell.
fn cell(c: &serde_json::Value) -> String {
    let x = |v: &serde_json::Value| v.as_f64().unwrap();
    format!("{:.4} [{:.4}, {:.4}]", x(&c["mean"]), x(&c["ci"][0]), x(&c["ci"][1]))
}

#[test]
fn model_0_has_a_row_with_intervals_and_its_differences_in_every_report() {
    for name in ["ledger_complete.json", "ledger_shortfall.json", "ledger_failed_hypothesis.json"] {
        let mut v = fixture(name);
        let text = render_value(v.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let cmp = stage(&mut v, "compare")["metrics"].clone();
        let row =
            text.lines().find(|l| l.starts_with("| model 0 (")).unwrap_or_else(|| panic!("{name}: no model 0 row"));
        // Every compared metric's cell of model 0, from the compare entry, in registry order.
        let cells: Vec<String> =
            hsx::metrics::registry::compared().filter_map(|m| cmp["table"]["0"].get(m.key)).map(cell).collect();
        assert!(!cells.is_empty(), "{name}: the compare entry has no model 0 row");
        assert_eq!(row, format!("| model 0 ({}) | {} |", hsx::stages::Model::Base.data(), cells.join(" | ")), "{name}");
        // The descriptive differences with model 0, each with an interval; and the entry that scored it.
        for d in cmp["differences"].as_array().unwrap() {
            let label = d["label"].as_str().unwrap();
            let pm = cmp["primary_metric"].as_str().unwrap();
            let e = &d["metrics"][pm];
            let iv = format!(
                "{:.4} [{:.4}, {:.4}]",
                e["estimate"].as_f64().unwrap(),
                e["ci"]["lo"].as_f64().unwrap(),
                e["ci"]["hi"].as_f64().unwrap()
            );
            assert!(text.contains(&format!("| {label} (model ")), "{name}: no {label} row");
            assert!(text.contains(&format!("{label} = {iv}")), "{name}: the summary lacks {label} = {iv}");
        }
        let seq = stage(&mut v, "evaluate-0")["seq"].as_u64().unwrap();
        assert!(text.contains(&format!("greedily [#{seq} ")), "{name}: model 0's paragraph does not cite evaluate-0");
        // Not a hypothesis: H1–H4 only, as pre-registered.
        let ids: Vec<&str> = cmp["hypotheses"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap()).collect();
        assert!(ids.iter().all(|id| ["H1", "H2", "H3", "H4"].contains(id)), "{ids:?}");
    }
}

#[test]
fn a_ledger_without_model_0_is_refused_naming_the_stage() {
    let mut v = fixture("ledger_complete.json");
    v["entries"].as_array_mut().unwrap().retain(|e| e["stage"] != "evaluate-0");
    let e = render_value(v).unwrap_err().to_string();
    assert!(e.contains("evaluate-0"), "{e}");
}

#[test]
fn an_hf_dir_base_model_gets_the_flan_cosmosqa_limitation_with_model_0s_score() {
    const LIMITATION: &str = "FLAN's instruction-tuning mixture reportedly includes CosmosQA";
    let scratch = render_value(fixture("ledger_complete.json")).unwrap();
    assert!(!scratch.contains(LIMITATION), "a scratch base model is not FLAN");
    // The same ledger as if the base profile had run: `model.source = "hf-dir"` in the recorded config.
    let mut v = fixture("ledger_complete.json");
    let path = "models/flan-t5-base";
    let model = serde_json::json!({"source": "hf-dir", "path": path});
    for e in v["entries"].as_array_mut().unwrap() {
        e["config"]["model"] = model.clone();
    }
    // flan-t5-base's shapes, as its config.json gives them (the record holds the loaded T5 config).
    let config = serde_json::json!({"vocab_size": 32128, "d_model": 768, "d_kv": 64, "d_ff": 2048, "num_layers": 12,
                                    "num_heads": 12, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": false,
                                    "num_decoder_layers": 12, "relative_attention_num_buckets": 32,
                                    "relative_attention_max_distance": 128, "dropout_rate": 0.1,
                                    "layer_norm_epsilon": 1e-6, "pad_token_id": 0, "eos_token_id": 1,
                                    "decoder_start_token_id": 0, "model_type": "t5"});
    stage(&mut v, "base-model")["metrics"] =
        serde_json::json!({"source": "hf-dir", "path": path, "parameters": 247577856, "config": config});
    let cmp = stage(&mut v, "compare")["metrics"].clone();
    let text = render_value(v).unwrap_or_else(|e| panic!("{e}"));
    let line = text.lines().find(|l| l.contains(LIMITATION)).expect("the FLAN/CosmosQA limitation");
    assert!(line.contains(&format!("`{path}`")), "{line}");
    let pm = cmp["primary_metric"].as_str().unwrap();
    let f1 = cell(&cmp["table"]["0"][pm]);
    assert!(line.contains(&f1), "the limitation does not give model 0's {pm} {f1}: {line}");
}

#[test]
fn entries_older_than_the_heldout_quotes_and_baseline_scores_still_render_and_say_so() {
    let mut v = fixture("ledger_shortfall.json");
    let new = render_value(v.clone()).unwrap();
    let bm = &stage(&mut v, "base-model")["metrics"];
    let (start, end) = (bm["heldout"]["loss_start"].as_f64().unwrap(), bm["heldout"]["loss_end"].as_f64().unwrap());
    assert!(
        new.contains(&format!("{start:.3} before the first optimizer step and {end:.3} after the last")),
        "held-out losses not printed"
    );
    assert!(new.contains("none accepted in this run."));
    assert!(!new.contains("not scored"), "a baseline cell is unscored");
    // As older entries were: no held-out figures, no quoted examples, baselines on the lexical metrics only.
    let bm = stage(&mut v, "base-model")["metrics"].as_object_mut().unwrap();
    bm.remove("heldout");
    bm.remove("train_loss_last_window");
    let initial = bm["initial_loss"].as_f64().unwrap();
    stage(&mut v, "synthesize")["metrics"].as_object_mut().unwrap().remove("quoted_examples");
    let cmp = stage(&mut v, "compare")["metrics"].as_object_mut().unwrap();
    cmp.remove("baseline_scoring");
    for row in cmp["baseline_table"].as_object_mut().unwrap().values_mut() {
        let row = row.as_object_mut().unwrap();
        row.retain(|k, _| ["em", "f1", "rouge1", "rouge2", "rougeL"].contains(&k.as_str()));
    }
    let old = render_value(v.clone()).unwrap();
    assert!(old.contains(&format!("no held-out slice in this run (`model.pretrain.heldout_share` = 0, or an entry older than the held-out figures); {initial:.3} on the first training batch")));
    assert!(!old.contains("Accepted examples, quoted verbatim"));
    assert!(old.contains("not scored") && old.contains("baselines are scored on the lexical metrics only"));
    // A held-out share of 0 records null: the same sentence.
    stage(&mut v, "base-model")["metrics"]["heldout"] = serde_json::Value::Null;
    assert!(render_value(v).unwrap().contains("no held-out slice in this run"));
}

/// `ledger_complete.json` as if A, B and C had been trained with two seeds (`experiment.replicates =
/// [42, 43]`): the compare entry's `replicates` in the form compare writes it — the master seed's own
/// analysis (the fixture's table, power and hypotheses), a second seed's with every mean 0.02 higher and
/// H1 inconclusive, and the across-replicate description — and the top-level results standing for the
/// across-replicate ones, their intervals widened.
fn replicated_fixture() -> serde_json::Value {
    use serde_json::json;
    let mut v = fixture("ledger_complete.json");
    let train: serde_json::Map<String, serde_json::Value> = ["A", "B", "C"]
        .iter()
        .map(|a| {
            let t = stage(&mut v, &format!("train-{a}"))["metrics"].clone();
            (a.to_string(), json!({"trained": t["trained"], "examples": t["examples"], "optimizer_steps": t["optimizer_steps"], "best_epoch": t["best_epoch"]}))
        })
        .collect();
    let cmp = &mut stage(&mut v, "compare")["metrics"];
    let table = |shift: f64| -> serde_json::Value {
        let mut t = serde_json::Map::new();
        for a in ["A", "B", "C"] {
            let mut row = cmp["table"][a].clone();
            for cell in row.as_object_mut().unwrap().values_mut() {
                for k in ["/mean", "/ci/0", "/ci/1"] {
                    let x = cell.pointer(k).unwrap().as_f64().unwrap();
                    *cell.pointer_mut(k).unwrap() = json!(((x + shift) * 1e6).round() / 1e6);
                }
            }
            t.insert(a.into(), row);
        }
        serde_json::Value::Object(t)
    };
    let replicate = |seed: u64, shift: f64, h1: &str| {
        let mut hypotheses = cmp["hypotheses"].clone();
        hypotheses
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .filter(|h| h["id"] == "H1")
            .for_each(|h| h["verdict"] = json!(h1));
        let mut train = train.clone();
        for (a, t) in train.iter_mut() {
            t["stage"] = json!(if seed == 42 { format!("train-{a}") } else { format!("train-{a}@{seed}") });
        }
        let evaluate: serde_json::Map<String, serde_json::Value> = ["A", "B", "C"]
            .iter()
            .map(|a| {
                (
                    a.to_string(),
                    json!(if seed == 42 { format!("evaluate-{a}") } else { format!("evaluate-{a}@{seed}") }),
                )
            })
            .collect();
        json!({"seed": seed, "master": seed == 42, "evaluate": evaluate, "train": train, "table": table(shift),
               "power": cmp["power"], "hypotheses": hypotheses})
    };
    let h1_master =
        cmp["hypotheses"].as_array().unwrap().iter().find(|h| h["id"] == "H1" && h["primary"] == json!(true)).unwrap()
            ["verdict"]
            .clone();
    let per_replicate = vec![replicate(42, 0.0, h1_master.as_str().unwrap()), replicate(43, 0.02, "inconclusive")];
    cmp["replicates"] = json!({
        "seeds": [42, 43], "count": 2, "master_seed": 42, "per_replicate": per_replicate,
        "across": {
            "results": "the top-level table, power, hypotheses and differences",
            "estimate": "mean over the test items of the per-item mean over the replicates",
            "interval_method": hsx::analysis::ACROSS_INTERVAL_METHOD,
            "test_method": hsx::analysis::ACROSS_TEST_METHOD,
            "verdicts": "the verdict rule on the across-replicate interval and that test: a verdict needs both",
            "trained_once": "model 0 and the trivial baselines keep the one-seed cluster bootstrap",
        },
        "derived": hsx::stages::compare::REPLICATED_OUTPUTS,
    });
    // The across-replicate means: halfway between the two seeds, with wider intervals.
    for a in ["A", "B", "C"] {
        for cell in cmp["table"][a].as_object_mut().unwrap().values_mut() {
            let (m, lo, hi) =
                (cell["mean"].as_f64().unwrap(), cell["ci"][0].as_f64().unwrap(), cell["ci"][1].as_f64().unwrap());
            *cell = json!({"mean": ((m + 0.01) * 1e6).round() / 1e6, "ci": [((lo - 0.01) * 1e6).round() / 1e6, ((hi + 0.03) * 1e6).round() / 1e6]});
        }
    }
    v["entries"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .for_each(|e| e["config"]["experiment"]["replicates"] = json!([42, 43]));
    v
}

#[test]
fn a_replicated_report_shows_each_seed_and_the_across_replicate_results_the_verdicts_use() {
    let one = render_value(fixture("ledger_complete.json")).unwrap();
    assert!(
        !one.contains("Training replicates") && !one.contains("two-stage"),
        "a one-seed report has no replicate section"
    );
    let mut v = replicated_fixture();
    let text = render_value(v.clone()).unwrap_or_else(|e| panic!("{e}"));
    let cmp = stage(&mut v, "compare")["metrics"].clone();
    assert!(text.contains("### Training replicates") && text.contains("training seeds 42, 43"), "no replicate section");
    assert!(text.contains("**The verdicts use the across-replicate results:**"));
    assert!(text.contains(hsx::analysis::ACROSS_INTERVAL_METHOD), "the interval method is not named");
    assert!(
        text.contains("for the fine-tuned models a two-stage bootstrap: the 2 training seeds with replacement"),
        "the interval description of the tables"
    );
    // One row per seed with each fine-tuned model's primary-metric cell, and the across-replicate row.
    for r in cmp["replicates"]["per_replicate"].as_array().unwrap() {
        let seed = r["seed"].as_u64().unwrap();
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("| {seed}{} | ", if seed == 42 { " (master)" } else { "" })))
            .unwrap_or_else(|| panic!("no row for seed {seed}"));
        for a in ["A", "B", "C"] {
            assert!(row.contains(&cell(&r["table"][a]["f1"])), "seed {seed}, {a}: {row}");
        }
        assert!(
            text.contains(&format!("| {seed} | A | `{}` |", r["train"]["A"]["stage"].as_str().unwrap())),
            "no training row of A for seed {seed}"
        );
    }
    let across = text.lines().find(|l| l.starts_with("| **across replicates** |")).expect("the across-replicate row");
    assert!(across.contains(&cell(&cmp["table"]["A"]["f1"])), "{across}");
    insta::with_settings!({filters => report_filters()}, {
        insta::assert_snapshot!("replicated_report", text);
    });
}

/// The ledgers the report must still read: the first (format 1) exp-42, the shipped one, the archived
/// previous shipping, the fixtures.
const LEDGERS: [&str; 6] = [
    "tests/inputs/exp-42-v1.json",
    "ledger/exp-42.json",
    "ledger/archive/exp-42-2026-11-26/ledger/exp-42.json",
    "tests/inputs/ledger_complete.json",
    "tests/inputs/ledger_shortfall.json",
    "tests/inputs/ledger_failed_hypothesis.json",
];

fn ledger(rel: &str) -> Ledger {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_entry_of_the_old_and_shipped_ledgers_reads_back_unchanged_as_its_stages_record() {
    for rel in LEDGERS {
        let l = ledger(rel);
        assert!(!l.entries.is_empty(), "{rel}");
        for e in &l.entries {
            // Read as the typed record of its stage (older entries' missing fields are options) and
            // written back: every key and value as recorded, none dropped, none added.
            let back = hsx::report::entry_record(e).unwrap_or_else(|err| panic!("{rel}: {err}"));
            assert_eq!(back, e.metrics, "{rel}: entry {} ({}) does not read back unchanged", e.seq, e.stage);
        }
    }
}

#[test]
fn the_shipped_ledger_renders_its_shipped_report_and_the_first_ledger_names_what_it_lacks() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = ledger("ledger/exp-42.json");
    let last_report = shipped.entries.iter().rev().find(|e| e.stage == "report").expect("the shipped report's entry");
    let dir = last_report.params["report_dir"].as_str().expect("its report_dir");
    assert!(root.join(dir).join("REPORT.md").is_file(), "the shipped {dir}/REPORT.md");
    // The entries before the report entry render through the typed records.
    let before: Vec<_> = shipped.entries.iter().filter(|e| e.seq < last_report.seq).cloned().collect();
    render(&shipped, &before, DEFAULT_TEMPLATE).expect("the shipped ledger renders from its typed records");
    // `hsx verify`'s check with this build's report code: the shipped report was made by earlier report code
    // (before Markdown escaping), so it is held to its signed hash and its one head citation, with a note.
    let this_code = hsx::stages::code::identity(hsx::stages::registry::Stage::Report).sha256;
    match hsx::report::check_report_entry(&shipped, root, &this_code) {
        Ok(_) => {}
        Err(f) => panic!("the shipped report fails verify's report check: {f}"),
    }
    // The format-1 ledger predates the pre-registration and model 0: it reads (above), but a report
    // needs both, and says so.
    let v1 = ledger("tests/inputs/exp-42-v1.json");
    let e = render(&v1, report_entries(&v1), DEFAULT_TEMPLATE).unwrap_err().to_string();
    assert!(e.contains("no `preregister` entry"), "{e}");
}

#[test]
fn a_renamed_or_mistyped_key_is_a_read_error_naming_the_entry_and_the_key() {
    let mut v = fixture("ledger_complete.json");
    let p = stage(&mut v, "prepare");
    let seq = p["seq"].as_u64().unwrap();
    let m = p["metrics"].as_object_mut().unwrap();
    let n = m.remove("examples_read").unwrap();
    m.insert("rows_read".into(), n);
    let e = render_value(v).unwrap_err().to_string();
    assert!(e.contains(&format!("ledger entry {seq} (prepare)")) && e.contains("examples_read"), "{e}");
    let mut v = fixture("ledger_complete.json");
    let c = stage(&mut v, "compare");
    let seq = c["seq"].as_u64().unwrap();
    c["metrics"]["table"]["A"]["f1"]["mean"] = "high".into();
    let e = render_value(v).unwrap_err().to_string();
    assert!(e.contains(&format!("ledger entry {seq} (compare)")) && e.contains("table.A.f1.mean"), "{e}");
}
