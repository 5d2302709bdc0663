//! The shipped configs parse and validate; bad keys and values are named; the config hash is stable.
mod common;

use hsx::config::{Config, ModelSpec};
use std::path::Path;

fn load(rel: &str) -> Config {
    Config::load(&common::repo_path(rel)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn shipped_profiles_parse_and_hold_the_seed_recipe() {
    let base = load("configs/base.toml");
    assert!(matches!(&base.model, ModelSpec::HfDir { path } if path == "models/flan-t5-base"));
    assert_eq!((base.split.train, base.split.val, base.split.test), (20_000, 2_000, 2_000));
    assert_eq!((base.lora.r, base.lora.alpha, base.lora.dropout), (16, 32.0, 0.1));
    assert_eq!((base.train.epochs, base.train.batch_size, base.train.grad_accum), (3, 8, 4));
    assert_eq!((base.train.lr, base.train.weight_decay, base.train.warmup_steps), (3e-4, 0.01, 100));
    assert_eq!(base.synth.multiplier, 5.0);
    assert_eq!(base.experiment.seed, 42);
    for rel in ["configs/tiny.toml", "configs/smoke.toml"] {
        let c = load(rel);
        assert!(matches!(c.model, ModelSpec::Scratch { .. }), "{rel} should build its own base model");
        assert_eq!(c.data.files, vec!["valid.csv".to_string()]);
    }
}

/// The rehearsal is the base profile at google/flan-t5-base's exact shapes (the values of the model card's
/// config.json) with the base profile's recipe; what it changes, it states as deviations with reasons.
#[test]
fn the_rehearsal_holds_flan_t5_base_shapes_and_the_base_recipe() {
    let base = load("configs/base.toml");
    let r = load("configs/base-rehearsal.toml");
    let ModelSpec::Random { arch, vocab_size, tokenizer } = &r.model else {
        panic!("the rehearsal's model.source must be random")
    };
    let shape = (arch.d_model, arch.d_ff, arch.d_kv, arch.num_heads, arch.num_layers, arch.num_decoder_layers);
    assert_eq!(shape, (768, 2048, 64, 12, 12, 12));
    assert_eq!(
        (arch.relative_attention_num_buckets, arch.relative_attention_max_distance, arch.dropout_rate),
        (32, 128, 0.1)
    );
    assert_eq!((*vocab_size, tokenizer.vocab_size, tokenizer.extra_ids), (32_128, 32_100, 100));
    assert_eq!(r.runtime.precision, base.runtime.precision);
    // The recipe is the base profile's; only the loss-logging cadence differs (every step: a rehearsal has 3).
    let mut train = r.train.clone();
    assert_eq!(train.log_every, 1);
    train.log_every = base.train.log_every;
    assert_eq!(
        (r.lora.clone(), train, r.filters.clone()),
        (base.lora.clone(), base.train.clone(), base.filters.clone())
    );
    assert_eq!((r.contaminate.clone(), r.eval.clone()), (base.contaminate.clone(), base.eval.clone()));
    let v = serde_json::to_value(&r).unwrap();
    let devs = hsx::config::seed::deviations(&v);
    assert!(!devs.is_empty());
    for d in devs {
        assert!(d.reason.as_deref().is_some_and(|w| !w.is_empty()), "{} deviates without a reason", d.key);
    }
}

#[test]
fn config_hash_ignores_key_order_formatting_and_spelled_out_defaults() {
    let a = r#"
[experiment]
id = "x"
[model]
source = "hf-dir"
path = "m"
"#;
    let b = r#"
# a comment
[model]
path   = "m"
source = "hf-dir"

[experiment]
seed = 42
id = "x"
[lora]
targets = ["q", "v"]
"#;
    let ha = Config::from_toml_str(a, Path::new("a")).unwrap().sha256();
    let hb = Config::from_toml_str(b, Path::new("b")).unwrap().sha256();
    assert_eq!(ha, hb);
    let c = a.replace("id = \"x\"", "id = \"x\"\nseed = 43");
    assert_ne!(ha, Config::from_toml_str(&c, Path::new("c")).unwrap().sha256());
    // The shipped profiles all differ.
    let hs: std::collections::HashSet<String> =
        ["configs/base.toml", "configs/tiny.toml", "configs/smoke.toml"].iter().map(|p| load(p).sha256()).collect();
    assert_eq!(hs.len(), 3);
}

#[test]
fn validation_errors_name_file_and_key() {
    let base = std::fs::read_to_string(common::repo_path("configs/base.toml")).unwrap();
    let cases = [
        ("lr = 3e-4", "lr = -1.0", "train.lr"),
        ("share_answer_expansion = 0.3", "share_answer_expansion = 0.4", "synth.share_question_variants"),
        ("minhash_rows = 4", "minhash_rows = 5", "filters.minhash_permutations"),
        ("max_words = 200", "max_words = 5", "filters.max_words"),
        ("test = 2000", "test = 0", "split.test"),
        ("path = \"models/flan-t5-base\"", "path = \"/abs/flan\"", "model.path"),
        ("targets = [\"q\", \"v\"]", "targets = [\"q\", \"q\"]", "lora.targets"),
        ("bootstrap_resamples = 1000", "bootstrap_resamples = 10", "eval.bootstrap_resamples"),
        ("scope = \"generated\"", "scope = \"whole\"", "filters.scope"),
        // Recorded in every ledger entry: beyond 2^53 - 1, RFC 8785 tools cannot read it exactly.
        ("seed = 42", "seed = 9007199254740992", "experiment.seed"),
    ];
    for (from, to, key) in cases {
        assert!(base.contains(from), "{from}");
        let text = base.replacen(from, to, 1);
        let e = Config::from_toml_str(&text, Path::new("configs/base.toml")).unwrap_err().to_string();
        assert!(e.contains("configs/base.toml") && e.contains(key), "{to}: {e}");
    }
    // Unknown keys and wrong enum values are parse errors naming the key and the allowed values.
    let e = Config::from_toml_str(&base.replace("warmup_steps = 100", "warmup_step = 100"), Path::new("b.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("warmup_step") && e.contains("warmup_steps") && e.contains("b.toml"), "{e}");
    let e = Config::from_toml_str(&base.replace("precision = \"bf16\"", "precision = \"fp16\""), Path::new("b.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("fp16") && e.contains("bf16"), "{e}");
}

/// A config string is one line of plain text: a control character (a line feed that would start a new
/// section of REPORT.md, a carriage return, an escape) or a direction override is refused, naming the key.
#[test]
fn control_characters_in_any_config_string_are_refused_naming_the_key() {
    let smoke = std::fs::read_to_string(common::repo_path("configs/smoke.toml")).unwrap();
    let base = std::fs::read_to_string(common::repo_path("configs/base.toml")).unwrap();
    let reason = "\"split.test\" = \"smoke: sized for speed\"";
    let cases = [
        (
            &smoke,
            reason,
            "\"split.test\" = \"smoke\\n\\n## 7. Verdicts (corrected)\\n| H1 | **supported** |\"",
            "deviations.\"split.test\"",
            "U+000A",
        ),
        (&smoke, reason, "\"split.test\" = \"smoke\\rsized\"", "deviations.\"split.test\"", "U+000D"),
        (&smoke, reason, "\"split.test\" = \"smoke \\u202Edeeps\"", "deviations.\"split.test\"", "U+202E"),
        (&base, "path = \"models/flan-t5-base\"", "path = \"models/flan\\u001b[31m\"", "model.path", "U+001B"),
        (&base, "bertscore_model = \"\"", "bertscore_model = \"mini\\tlm\"", "eval.bertscore_model", "U+0009"),
        (
            &base,
            "files = [\"train.csv\", \"valid.csv\"]",
            "files = [\"train.csv\", \"valid\\n.csv\"]",
            "data.files[1]",
            "U+000A",
        ),
        (&base, "report_dir = \"reports/base\"", "report_dir = \"reports/\\u0000\"", "experiment.report_dir", "U+0000"),
        // The experiment id allows letters, digits and `-_.` only.
        (&base, "id = \"exp-42\"", "id = \"exp\\n42\"", "experiment.id", "A-Z a-z 0-9"),
    ];
    for (text, from, to, key, char) in cases {
        assert!(text.contains(from), "{from}");
        let e = Config::from_toml_str(&text.replacen(from, to, 1), Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains(key) && e.contains(char), "{to}: {e}");
    }
    // A multi-line TOML string in a reason: the same.
    let multi = smoke.replacen(reason, "\"split.test\" = \"\"\"smoke:\nsized for speed\"\"\"", 1);
    let e = Config::from_toml_str(&multi, Path::new("c.toml")).unwrap_err().to_string();
    assert!(e.contains("deviations.\"split.test\"") && e.contains("line feed"), "{e}");
}
