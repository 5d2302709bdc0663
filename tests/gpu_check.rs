//! scripts/gpu-check.sh, exercised without a GPU so that it does not rot: its dry run prints the plan and
//! the results table with every row, and bad arguments are refused with exit 2 and a message naming them.
mod common;

use std::process::{Command, Output};

fn gpu_check(args: &[&str]) -> Output {
    Command::new("bash").arg(common::repo_path("scripts/gpu-check.sh")).args(args).output().expect("bash runs")
}

const ROWS: [&str; 13] = [
    "| GPU, driver, libtorch | not run |",
    "| build | not run |",
    "| T5 parity with transformers on CUDA (tests/t5_parity.rs) | not run |",
    "| LoRA parity with peft on CUDA (tests/lora.rs) | not run |",
    "| bf16 autocast vs fp32 on CUDA (tests/bf16.rs) | not run |",
    "| two identical bf16 LoRA trainings, bit for bit | not run |",
    "| two identical greedy generations, flan-t5-base shape, bf16, bit for bit | not run |",
    "| two identical sampled generations (T = 0.7, seeded), flan-t5-base shape, bf16, bit for bit | not run |",
    "| greedy generation, flan-t5-base shape, bf16: hsx / transformers | not run |",
    "| sampled generation (T = 0.7, top-p 0.9), flan-t5-base shape, bf16: hsx / transformers | not run |",
    "| LoRA training, flan-t5-base shape, bf16: hsx / transformers+peft | not run |",
    "| base-profile rehearsal on CUDA (configs/base-rehearsal.toml) | not run |",
    "| GPU facts in every CUDA entry of the rehearsal (env.torch.cuda) | not run |",
];

#[test]
fn dry_run_prints_the_plan_and_every_row_of_the_table() {
    let out = gpu_check(&["--dry-run", "--out", "somewhere", "--prebuilt", "bin"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("out somewhere; binaries bin"), "{text}");
    let planned: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("  would run: ")).collect();
    assert_eq!(
        planned,
        ["facts", "build", "parity", "bf16", "rehearsal", "determinism", "generation", "throughput"],
        "{text}"
    );
    assert!(text.contains("| check | result | detail |\n| --- | --- | --- |\n"), "{text}");
    for row in ROWS {
        assert!(text.contains(row), "missing table row {row:?} in\n{text}");
    }
}

#[test]
fn steps_choose_a_subset_in_execution_order() {
    let out = gpu_check(&["--dry-run", "--steps", "throughput,facts"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    let planned: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("  would run: ")).collect();
    assert_eq!(planned, ["facts", "throughput"]);
}

#[test]
fn the_generation_check_runs_on_its_own_and_after_the_training_check() {
    // Point 5 of issue 29: generation determinism is a step of its own (selectable alone), placed beside
    // the training check, and it compares greedy and sampled runs.
    let out = gpu_check(&["--dry-run", "--steps", "generation,determinism"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let planned: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("  would run: ")).collect();
    assert_eq!(planned, ["determinism", "generation"]);
    let script = std::fs::read_to_string(common::repo_path("scripts/gpu-check.sh")).unwrap();
    for needle in ["--temperature 0)", "--temperature 0.7 --seed 7", "gen-$mode-1.jsonl", "gen-$mode-2.jsonl"] {
        assert!(script.contains(needle), "the generation step lacks {needle:?}");
    }
}

#[test]
fn bad_arguments_exit_2_and_name_the_argument() {
    for (args, want) in [
        (vec!["--bogus"], "unknown argument '--bogus'"),
        (vec!["--steps", "facts,nosuch"], "unknown step 'nosuch'"),
        (vec!["--out"], "--out needs a directory"),
        (vec!["--prebuilt"], "--prebuilt needs a directory"),
    ] {
        let out = gpu_check(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed a table");
    }
}

#[test]
fn help_lists_every_option() {
    let out = gpu_check(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for opt in ["--dry-run", "--out DIR", "--steps LIST", "--prebuilt DIR", "--minilm DIR"] {
        assert!(text.contains(opt), "--help lacks {opt}:\n{text}");
    }
}
