//! Command-line interface: argument parsing, logging, progress and printing. No experiment logic here.
//!
//! Exit codes: 0 ok; 1 a check failed (`verify`, `reproduce`); 2 a usage or input error.
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};

use hsx::ledger::verify::{verify_file, VerifyOptions};
use hsx::ledger::{keys, Roots, SigningKeyFile, TrustedKeys};
use hsx::pipeline::{self, Progress, RunOptions};

/// hsx — does synthetic data from a clean human seed recover the quality lost to AI-contaminated
/// training data? Runs the CosmosQA / flan-t5 + LoRA experiment as a signed, reproducible artifact.
#[derive(Debug, Parser)]
#[command(name = "hsx", version, propagate_version = true)]
pub struct Cli {
    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the experiment stage by stage, recording each stage as a signed ledger entry. Re-running on
    /// an existing ledger resumes: stages whose inputs, parameters and code are unchanged are skipped.
    Run(RunArgs),
    /// Re-run every recorded stage from a ledger into a fresh directory and compare the outputs.
    Reproduce(ReproduceArgs),
    /// Audit a ledger: format, hash chain, signatures, trusted signers, config hashes, recorded files.
    Verify(VerifyArgs),
    /// Render REPORT.md from the ledger's entries alone.
    Report(ReportArgs),
    /// Create an ed25519 signing key (mode 0600, outside the repository) and print its public key.
    Keygen(KeygenArgs),
    /// Score predictions against references: EM, token F1, ROUGE-1/2/L, BERTScore, with 95% CIs.
    Score(ScoreArgs),
    /// Generate text with a T5 model (greedy or seeded sampling), optionally with a LoRA adapter.
    Generate(GenerateArgs),
    /// Sentence embeddings (all-MiniLM-L6-v2 by default), one per input text.
    Embed(EmbedArgs),
    /// Train a LoRA adapter with the seed's recipe on {"input","target"} JSONL.
    Train(TrainArgs),
    /// CosmosQA data: download the official files, or print statistics of a file.
    #[command(subcommand)]
    Data(DataCommand),
    /// Benchmarks (timings for benches/*.py, which run the Python peer in the same run).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Greedy generation throughput: new tokens per second over a fixed batch of token ids.
    Generate {
        /// HF-format T5 directory.
        #[arg(long)]
        model: PathBuf,
        /// JSON file: a list of token-id rows (one batch).
        #[arg(long)]
        ids: PathBuf,
        #[arg(long, default_value_t = 32)]
        new_tokens: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Timed repetitions (after one warm-up).
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// Filters 1, 2, 4 and 5 (exact duplicate, 8-gram overlap, MinHash-LSH, length) over candidates
    /// against a seed set; candidates per second.
    Filters {
        /// JSON file {"seeds": [text], "candidates": [text]}.
        #[arg(long)]
        data: PathBuf,
    },
    /// MiniLM sentence embeddings per second.
    Embed {
        /// JSON file: a list of sentences.
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// EM + F1 + ROUGE-1/2/L (stemmed) over prediction/reference pairs; pairs per second.
    Metrics {
        /// JSON file: a list of [prediction, reference] pairs.
        #[arg(long)]
        pairs: PathBuf,
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
    /// LoRA training throughput: one epoch over fixed examples with the seed's recipe (r 16, q and v,
    /// batch 8), length-bucketed; real (non-padding) tokens per second.
    Train {
        #[arg(long)]
        model: PathBuf,
        /// JSON file {"inputs": [[ids]], "labels": [[ids]]}.
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Experiment config (TOML), e.g. configs/tiny.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Ledger file to create or resume, e.g. ledger/exp-42.json.
    #[arg(long)]
    pub ledger: PathBuf,
    /// Signing key (default: $HSX_SIGNING_KEY, else the key `hsx keygen` writes).
    #[arg(long, env = "HSX_SIGNING_KEY")]
    pub key: Option<PathBuf>,
    /// Directory holding cosmosqa/valid.csv etc., read in place (an offline mirror).
    #[arg(long, env = "HSX_DATA_MIRROR")]
    pub data_mirror: Option<PathBuf>,
    /// Force re-running from this stage on.
    #[arg(long)]
    pub from: Option<String>,
    /// Run only this stage.
    #[arg(long)]
    pub only: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// The ledger to reproduce.
    #[arg(long)]
    pub ledger: PathBuf,
    /// Fresh run directory for the re-run (never the original).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Re-run from this stage on (earlier outputs are copied from the original run).
    #[arg(long)]
    pub from: Option<String>,
    /// Signing key for the reproduction ledger (default: $HSX_SIGNING_KEY, else `hsx keygen`'s).
    #[arg(long, env = "HSX_SIGNING_KEY")]
    pub key: Option<PathBuf>,
    /// Directory holding cosmosqa/<files>, read in place.
    #[arg(long, env = "HSX_DATA_MIRROR")]
    pub data_mirror: Option<PathBuf>,
    /// Perturbation: run with this many libtorch threads instead of the recorded count.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Perturbation: run with this master seed instead of the recorded one.
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The ledger to audit.
    #[arg(long)]
    pub ledger: PathBuf,
    /// Accept only signers listed here (format of ledger/trusted_keys).
    #[arg(long)]
    pub trusted_keys: Option<PathBuf>,
    /// Fail when a recorded artifact is missing (by default missing files are reported, not failed).
    #[arg(long)]
    pub require_artifacts: bool,
    /// Directory holding cosmosqa/<files>, to check recorded data inputs.
    #[arg(long, env = "HSX_DATA_MIRROR")]
    pub data_mirror: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(long)]
    pub ledger: PathBuf,
    #[arg(long)]
    pub template: Option<PathBuf>,
    #[arg(long, default_value = "report/REPORT.md")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key (default: $XDG_CONFIG_HOME/hsx/signing_key.pem).
    #[arg(long, env = "HSX_SIGNING_KEY")]
    pub out: Option<PathBuf>,
    /// Replace an existing key.
    #[arg(long)]
    pub force: bool,
    /// Do nothing (exit 0) when the key already exists; print its public key.
    #[arg(long, conflicts_with = "force")]
    pub if_missing: bool,
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Predictions: JSONL of {"id", "text"}.
    #[arg(long)]
    pub pred: PathBuf,
    /// References: JSONL of {"id", "text"}.
    #[arg(long = "ref")]
    pub reference: PathBuf,
    /// Comma-separated: em,f1,rouge,bertscore.
    #[arg(long, default_value = "em,f1,rouge,bertscore")]
    pub metrics: String,
    /// Porter-stem tokens for ROUGE, as rouge-score's use_stemmer=True.
    #[arg(long)]
    pub stemmer: bool,
    /// BERT-architecture HF directory for BERTScore (default: the bootstrap's all-MiniLM-L6-v2).
    #[arg(long)]
    pub bertscore_model: Option<PathBuf>,
    /// BERTScore encoder layer (1-based; default the last).
    #[arg(long, default_value_t = 0)]
    pub bertscore_layer: usize,
    /// idf-weight BERTScore tokens (idf from the references).
    #[arg(long)]
    pub idf: bool,
    /// Bootstrap resamples for the 95% intervals.
    #[arg(long, default_value_t = 1000)]
    pub resamples: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// HF-format T5 directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// PEFT-format LoRA adapter directory.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// cpu, cuda, or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// JSONL with an "input" field per line, instead of TEXT arguments.
    #[arg(long)]
    pub input: Option<PathBuf>,
    pub text: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// BERT-architecture HF directory (default: the bootstrap's all-MiniLM-L6-v2).
    #[arg(long)]
    pub model: Option<PathBuf>,
    pub text: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub train: PathBuf,
    #[arg(long)]
    pub val: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// LoRA rank (alpha stays 2 × r as in the seed's 16/32 unless --lora-alpha is given).
    #[arg(long, default_value_t = 16)]
    pub lora_r: usize,
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// cpu, cuda, or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Longest input / target in tokens (longer ones are truncated, keeping </s>).
    #[arg(long, default_value_t = 512)]
    pub max_input_tokens: usize,
    #[arg(long, default_value_t = 64)]
    pub max_target_tokens: usize,
    /// Also write the adapter merged into the base weights as an HF directory under OUT/merged.
    #[arg(long)]
    pub merge: bool,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download the official CosmosQA files (train.csv, valid.csv) and check their hashes.
    Fetch {
        /// Target directory.
        #[arg(long, default_value = "data/cosmosqa")]
        dir: PathBuf,
        /// Files to fetch.
        #[arg(long, value_delimiter = ',', default_value = "train.csv,valid.csv")]
        files: Vec<String>,
        /// Where to download from (default: the authors' repository at a pinned commit).
        #[arg(long, default_value = hsx::data::fetch::OFFICIAL_BASE_URL)]
        base_url: String,
    },
    /// Print statistics (examples, unique questions/contexts, word lengths) of CosmosQA files.
    Stats {
        /// Skip invalid rows (and count them) instead of failing on the first.
        #[arg(long)]
        skip_invalid: bool,
        /// .csv or .jsonl files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// An error that carries its exit code.
#[derive(Debug)]
pub struct Exit(pub u8, pub String);
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}
impl std::error::Error for Exit {}


pub fn init_logging(cli: &Cli) {
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HSX_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Runs one command; returns the process exit code.
pub fn run(cli: Cli) -> Result<u8> {
    match &cli.command {
        Command::Run(a) => cmd_run(&cli, a),
        Command::Verify(a) => cmd_verify(&cli, a),
        Command::Keygen(a) => cmd_keygen(&cli, a),
        Command::Data(d) => cmd_data(&cli, d),
        Command::Reproduce(a) => cmd_reproduce(&cli, a),
        Command::Report(a) => cmd_report(&cli, a),
        Command::Score(a) => cmd_score(&cli, a),
        Command::Generate(a) => cmd_generate(&cli, a),
        Command::Embed(a) => cmd_embed(&cli, a),
        Command::Train(a) => cmd_train(&cli, a),
        Command::Bench(b) => cmd_bench(b),
    }
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

struct CliProgress {
    json: bool,
    quiet: bool,
}

impl Progress for CliProgress {
    fn stage_started(&self, stage: &str) {
        if self.json {
            print_json(&json!({"event": "stage_started", "stage": stage}));
        } else if !self.quiet {
            eprintln!("[{stage}] running");
        }
    }
    fn stage_skipped(&self, stage: &str, reason: &str) {
        if self.json {
            print_json(&json!({"event": "stage_skipped", "stage": stage, "reason": reason}));
        } else if !self.quiet {
            eprintln!("[{stage}] skipped: {reason}");
        }
    }
    fn stage_finished(&self, stage: &str, entry: &hsx::ledger::Entry) {
        if self.json {
            print_json(&json!({"event": "stage_finished", "stage": stage, "seq": entry.seq, "hash": entry.hash}));
        } else if !self.quiet {
            eprintln!("[{stage}] recorded as entry {} ({})", entry.seq, &entry.hash[..12]);
        }
    }
    fn note(&self, message: &str) {
        if self.json {
            print_json(&json!({"event": "note", "message": message}));
        } else if !self.quiet {
            eprintln!("{message}");
        }
    }
    fn trainer(&self, _stage: &str) -> Box<dyn hsx::model::train::TrainProgress + '_> {
        let bar = if self.quiet || self.json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(0) };
        bar.set_style(
            indicatif::ProgressStyle::with_template("  {bar:30} {pos}/{len}  {msg}  ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Box::new(BarProgress { bar, json: self.json })
    }
}

fn cwd() -> Result<PathBuf> {
    std::env::current_dir().context("cannot read the current directory")
}

fn cmd_run(cli: &Cli, a: &RunArgs) -> Result<u8> {
    let opts = RunOptions {
        config_path: a.config.clone(),
        ledger_path: a.ledger.clone(),
        key_path: a.key.clone().unwrap_or_else(keys::default_key_path),
        workspace: cwd()?,
        data_mirror: a.data_mirror.clone(),
        only: a.only.clone(),
        from: a.from.clone(),
    };
    let progress = CliProgress { json: cli.json, quiet: cli.quiet };
    let summary = pipeline::run(&opts, &progress).map_err(|e| Exit(2, format!("{e:#}")))?;
    if cli.json {
        print_json(&json!({"event": "summary", "summary": summary}));
    } else if !cli.quiet {
        let pending: Vec<&str> =
            summary.stages.iter().filter(|s| s.status == "pending").map(|s| s.stage.as_str()).collect();
        let done: Vec<String> = summary
            .stages
            .iter()
            .filter(|s| s.status != "pending")
            .map(|s| format!("{} ({})", s.stage, s.status))
            .collect();
        println!("ledger {}: {}", summary.ledger, done.join(", "));
        println!("run directory: {}", summary.run_dir);
        if !pending.is_empty() {
            println!("stages not built yet in this hsx: {}", pending.join(", "));
        }
    }
    Ok(0)
}

/// Roots for verifying a ledger found at `ledger_path`, run from the current directory.
fn verify_roots(ledger_path: &Path, mirror: Option<&Path>) -> Result<Roots> {
    let ws = cwd()?;
    // Only what is needed to place the roots: the header's run_dir and the last entry's data.dir.
    let raw = hsx::ledger::store::read_raw(ledger_path).map_err(|e| Exit(2, e.to_string()))?;
    let run_dir = raw.pointer("/header/run_dir").and_then(|v| v.as_str()).map(str::to_owned);
    let data_dir = raw
        .pointer("/entries")
        .and_then(|e| e.as_array())
        .and_then(|e| e.last())
        .and_then(|e| e.pointer("/config/data/dir"))
        .and_then(|v| v.as_str())
        .unwrap_or("data/cosmosqa")
        .to_owned();
    let safe = |p: &str| hsx::ledger::files::check_relative(p).is_ok();
    Ok(Roots {
        run: run_dir.filter(|r| safe(r)).map(|r| ws.join(r)),
        data: if safe(&data_dir) || mirror.is_some() { Some(pipeline::data_root(&ws, mirror, &data_dir)) } else { None },
        workspace: Some(ws),
    })
}

fn cmd_verify(cli: &Cli, a: &VerifyArgs) -> Result<u8> {
    let trusted = match &a.trusted_keys {
        Some(p) => Some(TrustedKeys::load(p).map_err(|e| Exit(2, e.to_string()))?),
        None => None,
    };
    let roots = verify_roots(&a.ledger, a.data_mirror.as_deref())?;
    let opts = VerifyOptions { trusted, require_artifacts: a.require_artifacts };
    let mut report = verify_file(&a.ledger, &roots, &opts).map_err(|e| Exit(2, e.to_string()))?;
    // The report's figures must match the entries they came from: re-render and compare.
    if let Some(f) = check_report(&a.ledger, roots.workspace.as_deref().unwrap_or(Path::new("."))) {
        match &mut report.first_failure {
            // The file's hash already failed: add which line and number differ from the ledger.
            Some(first) if first.entry == f.entry => first.message = format!("{}; {}", f.message, first.message),
            Some(_) => {}
            None => report.first_failure = Some(f.clone()),
        }
        if let Some(v) = f.entry.and_then(|i| report.entries.get_mut(i)) {
            v.verdict = "failed".into();
            v.failure.get_or_insert(f);
        }
        report.ok = false;
    }
    if cli.json {
        print_json(&serde_json::to_value(&report)?);
    } else {
        for e in &report.entries {
            let seq = e.seq.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
            let stage = e.stage.clone().unwrap_or_else(|| "?".into());
            let detail = match (&e.failure, e.missing.len()) {
                (Some(f), _) => format!("FAILED {f}"),
                (None, 0) => "ok".into(),
                (None, n) => format!("ok, {n} artifact(s) missing: {}", e.missing.join(", ")),
            };
            println!("{seq:>4}  {stage:<14} {detail}");
        }
        match &report.first_failure {
            None => println!(
                "verified {} entries of {}: format, chain, signatures{}, config hashes, {} recorded files ({} missing)",
                report.entries.len(),
                report.ledger,
                if a.trusted_keys.is_some() { ", trusted signer" } else { "" },
                report.checked_artifacts,
                report.missing_artifacts
            ),
            Some(f) => println!("verification FAILED: {f}"),
        }
    }
    Ok(if report.ok { 0 } else { 1 })
}

fn cmd_keygen(cli: &Cli, a: &KeygenArgs) -> Result<u8> {
    let path = a.out.clone().unwrap_or_else(keys::default_key_path);
    let (key, created) = if a.if_missing && path.exists() {
        (SigningKeyFile::load(&path).map_err(|e| Exit(2, e.to_string()))?, false)
    } else {
        (SigningKeyFile::generate(&path, a.force).map_err(|e| Exit(2, e.to_string()))?, true)
    };
    let s = key.signer();
    if cli.json {
        print_json(&json!({"path": path, "created": created, "key_id": s.key_id, "public_key": s.public_key,
                           "trusted_keys_line": TrustedKeys::line_for(&s)}));
    } else if !cli.quiet {
        println!("{} signing key {}", if created { "created" } else { "existing" }, path.display());
        println!("key id:     {}", s.key_id);
        println!("public key: {}", s.public_key);
        println!("trusted_keys line:\n{}", TrustedKeys::line_for(&s));
    }
    Ok(0)
}

fn cmd_data(cli: &Cli, d: &DataCommand) -> Result<u8> {
    match d {
        DataCommand::Fetch { dir, files, base_url } => {
            let got = hsx::data::fetch::fetch(base_url, files, dir).map_err(|e| Exit(2, e.to_string()))?;
            if cli.json {
                print_json(&serde_json::to_value(&got)?);
            } else {
                for f in got {
                    let check = if f.verified_known_hash { "matches the official hash" } else { "no known hash to check" };
                    println!("{}: {} bytes, sha256 {} ({check})", f.path.display(), f.bytes, f.sha256);
                }
            }
            Ok(0)
        }
        DataCommand::Stats { skip_invalid, files } => {
            let opts = hsx::data::ReadOptions { skip_invalid: *skip_invalid, ..Default::default() };
            let mut out = serde_json::Map::new();
            for f in files {
                let r = hsx::data::read_file(f, &opts).map_err(|e| Exit(2, e.to_string()))?;
                let st = hsx::data::stats::split_stats(&r.examples);
                out.insert(f.display().to_string(), json!({"rows": r.rows, "skipped": r.skipped, "stats": st}));
            }
            if cli.json {
                print_json(&serde_json::Value::Object(out));
            } else {
                println!("{}", serde_json::to_string_pretty(&serde_json::Value::Object(out))?);
            }
            Ok(0)
        }
    }
}

#[derive(serde::Deserialize)]
struct InputLine {
    input: String,
}

fn cmd_generate(cli: &Cli, a: &GenerateArgs) -> Result<u8> {
    use hsx::model::{generate, load_t5, parse_device, GenerateOptions};
    if !(a.temperature >= 0.0 && a.temperature.is_finite()) {
        return Err(Exit(2, format!("--temperature must be 0 (greedy) or positive, got {}", a.temperature)).into());
    }
    if !(a.top_p > 0.0 && a.top_p <= 1.0) {
        return Err(Exit(2, format!("--top-p must be in (0, 1], got {}", a.top_p)).into());
    }
    let texts: Vec<String> = match &a.input {
        Some(path) => hsx::data::read_jsonl_as::<InputLine>(path)
            .map_err(|e| Exit(2, format!("{e} (each line must be {{\"input\": \"...\"}})")))?
            .into_iter()
            .map(|l| l.input)
            .collect(),
        None => a.text.clone(),
    };
    if texts.is_empty() {
        return Err(Exit(2, "nothing to generate: give TEXT arguments or --input FILE.jsonl".into()).into());
    }
    let device = parse_device(&a.device).map_err(|e| Exit(2, e.to_string()))?;
    let m = match &a.adapter {
        Some(ad) => hsx::model::adapter::load_with_adapter(&a.model, ad, device).map(|(m, _)| m),
        None => load_t5(&a.model, device),
    }
    .map_err(|e| Exit(2, e.to_string()))?;
    let ids: Vec<Vec<i64>> = texts
        .iter()
        .map(|t| m.tokenizer.encode(t, None))
        .collect::<Result<_, _>>()
        .map_err(|e| Exit(2, e.to_string()))?;
    const BATCH: usize = 32;
    for (k, chunk) in ids.chunks(BATCH).enumerate() {
        // Each batch samples from its own stream: seed + batch index.
        let opts = GenerateOptions {
            max_new_tokens: a.max_new_tokens,
            min_new_tokens: 0,
            temperature: a.temperature,
            top_p: a.top_p,
            seed: a.seed.wrapping_add(k as u64),
        };
        let outs = generate(&m.model, chunk, &opts);
        for (j, out) in outs.iter().enumerate() {
            let i = k * BATCH + j;
            let text = m.tokenizer.decode(out).map_err(|e| Exit(2, e.to_string()))?;
            if cli.json {
                print_json(&json!({"input": texts[i], "input_ids": ids[i], "output_ids": out, "text": text}));
            } else {
                println!("{text}");
            }
        }
    }
    Ok(0)
}

fn cmd_bench(b: &BenchCommand) -> Result<u8> {
    use hsx::model::{generate, load_t5, GenerateOptions};
    match b {
        BenchCommand::Filters { data } => {
            #[derive(serde::Deserialize)]
            struct D {
                seeds: Vec<String>,
                candidates: Vec<String>,
            }
            let d: D = serde_json::from_str(&std::fs::read_to_string(data)?).map_err(|e| Exit(2, format!("{}: {e}", data.display())))?;
            let cfg = hsx::config::Filters::default();
            let t = std::time::Instant::now();
            let mut state = hsx::synth::filters::FilterState::new(&cfg, &d.seeds, 42);
            let index_secs = t.elapsed().as_secs_f64();
            let mut accepted = 0usize;
            let mut rejected: std::collections::BTreeMap<&str, usize> = Default::default();
            for c in &d.candidates {
                let checked = state.check(c, 0.0);
                match checked.failures(&cfg).first() {
                    None => {
                        state.accept(c);
                        accepted += 1;
                    }
                    Some((f, _)) => *rejected.entry(f.name()).or_default() += 1,
                }
            }
            let secs = t.elapsed().as_secs_f64();
            print_json(&json!({"impl": "hsx", "seeds": d.seeds.len(), "candidates": d.candidates.len(), "seconds": secs,
                               "index_seconds": index_secs, "accepted": accepted, "rejected": rejected}));
            Ok(0)
        }
        BenchCommand::Embed { data, threads, batch } => {
            hsx::runtime::set_threads(*threads);
            let v: Vec<String> = serde_json::from_str(&std::fs::read_to_string(data)?).map_err(|e| Exit(2, format!("{}: {e}", data.display())))?;
            let bert = hsx::model::bert::load_minilm(None, tch::Device::Cpu).map_err(|e| Exit(2, e.to_string()))?;
            let _ = bert.embed(&v[..v.len().min(32)], *batch, 256);
            let t = std::time::Instant::now();
            let e = bert.embed(&v, *batch, 256).map_err(|e| Exit(2, e.to_string()))?;
            let secs = t.elapsed().as_secs_f64();
            print_json(&json!({"impl": "hsx", "sentences": e.size()[0], "seconds": secs, "sentences_per_s": v.len() as f64 / secs}));
            Ok(0)
        }
        BenchCommand::Metrics { pairs, reps } => {
            let v: Vec<(String, String)> = serde_json::from_str(&std::fs::read_to_string(pairs)?).map_err(|e| Exit(2, format!("{}: {e}", pairs.display())))?;
            let (p, r): (Vec<String>, Vec<String>) = v.into_iter().unzip();
            let all = [hsx::metrics::Metric::Em, hsx::metrics::Metric::F1, hsx::metrics::Metric::Rouge];
            let mut times = Vec::new();
            let mut checksum = 0.0;
            for _ in 0..*reps {
                let t = std::time::Instant::now();
                let s = hsx::metrics::lexical(&p, &r, &all, true);
                times.push(t.elapsed().as_secs_f64());
                checksum = s.f1.iter().sum::<f64>() + s.rouge_l.iter().sum::<f64>();
            }
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let median = times[times.len() / 2];
            print_json(&json!({"impl": "hsx", "pairs": p.len(), "seconds_median": median, "checksum": checksum}));
            Ok(0)
        }
        BenchCommand::Train { model, data, batch, threads } => {
            use hsx::model::train::{parameter_count, train, Example, NoProgress, Recipe};
            hsx::runtime::set_threads(*threads);
            #[derive(serde::Deserialize)]
            struct D {
                inputs: Vec<Vec<i64>>,
                labels: Vec<Vec<i64>>,
            }
            let d: D = serde_json::from_str(&std::fs::read_to_string(data)?).map_err(|e| Exit(2, format!("{}: {e}", data.display())))?;
            let lora = hsx::model::lora::LoraConfig { r: 16, alpha: 32.0, dropout: 0.1, targets: vec!["q".into(), "v".into()] };
            tch::manual_seed(0);
            let (m, lora_vs) = hsx::model::adapter::load_t5_lora(model, tch::Device::Cpu, &lora, None).map_err(|e| Exit(2, e.to_string()))?;
            let ex: Vec<Example> = d.inputs.into_iter().zip(d.labels).map(|(i, l)| Example { input_ids: i, labels: l }).collect();
            let real: usize = ex.iter().map(|e| e.input_ids.len() + e.labels.len()).sum();
            let mut recipe = Recipe::from_config(&hsx::config::Train::default(), 0, false);
            recipe.epochs = 1;
            recipe.batch_size = *batch;
            recipe.grad_accum = 1;
            let total = parameter_count(&m.vs) + parameter_count(&lora_vs);
            let t = std::time::Instant::now();
            let rep = train(&m.model, &lora_vs, total, &ex, &[], &recipe, 0, &NoProgress).map_err(|e| Exit(2, e.to_string()))?;
            let secs = t.elapsed().as_secs_f64();
            print_json(&json!({"impl": "hsx", "examples": ex.len(), "steps": rep.optimizer_steps, "seconds": secs,
                               "real_tokens_per_s": real as f64 / secs, "padding_share": rep.padding_share,
                               "trainable_parameters": rep.trainable_parameters, "total_parameters": rep.total_parameters}));
            Ok(0)
        }
        BenchCommand::Generate { model, ids, new_tokens, threads, reps } => {
            hsx::runtime::set_threads(*threads);
            let m = load_t5(model, tch::Device::Cpu).map_err(|e| Exit(2, e.to_string()))?;
            let text = std::fs::read_to_string(ids).with_context(|| format!("reading {}", ids.display()))?;
            let rows: Vec<Vec<i64>> = serde_json::from_str(&text).map_err(|e| Exit(2, format!("{}: {e}", ids.display())))?;
            // Exactly `new_tokens` per row, as the Python peer does with min_new_tokens = max_new_tokens.
            let opts = GenerateOptions { max_new_tokens: *new_tokens, min_new_tokens: *new_tokens, ..Default::default() };
            let _ = generate(&m.model, &rows, &opts);
            let mut times = Vec::new();
            for _ in 0..*reps {
                let t = std::time::Instant::now();
                let out = generate(&m.model, &rows, &opts);
                times.push(t.elapsed().as_secs_f64());
                debug_assert!(out.iter().all(|r| r.len() == *new_tokens));
            }
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let median = times[times.len() / 2];
            let tokens = rows.len() * new_tokens;
            print_json(&json!({"impl": "hsx", "batch": rows.len(), "new_tokens": new_tokens, "threads": threads,
                               "seconds_median": median, "tokens_per_s": tokens as f64 / median, "times": times}));
            Ok(0)
        }
    }
}

#[derive(serde::Deserialize)]
struct PairLine {
    input: String,
    target: String,
}

struct BarProgress {
    bar: indicatif::ProgressBar,
    json: bool,
}

impl hsx::model::train::TrainProgress for BarProgress {
    fn start(&self, total: usize) {
        self.bar.set_length(total as u64);
    }
    fn step(&self, step: usize, loss: f64, tps: f64) {
        self.bar.set_position(step as u64);
        self.bar.set_message(format!("loss {loss:.4}, {tps:.0} tok/s"));
        if self.json {
            print_json(&json!({"event": "train_step", "step": step, "loss": loss, "tokens_per_s": tps}));
        }
    }
    fn items(&self, done: usize, total: usize, what: &str) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        self.bar.set_message(what.to_owned());
        if self.json {
            print_json(&json!({"event": "progress", "done": done, "total": total, "what": what}));
        }
    }
    fn epoch(&self, epoch: usize, val: Option<f64>) {
        self.bar.println(format!("epoch {epoch}: val loss {}", val.map(|v| format!("{v:.4}")).unwrap_or("-".into())));
        if self.json {
            print_json(&json!({"event": "epoch", "epoch": epoch, "val_loss": val}));
        }
    }
}

fn progress_bar(cli: &Cli) -> indicatif::ProgressBar {
    if cli.quiet || cli.json {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn cmd_train(cli: &Cli, a: &TrainArgs) -> Result<u8> {
    use hsx::model::adapter::{load_t5_lora, merge_and_save, save_adapter};
    use hsx::model::lora::LoraConfig;
    use hsx::model::train::{parameter_count, train, Example, Recipe};
    let read = |p: &Path| -> Result<Vec<PairLine>> {
        let rows = hsx::data::read_jsonl_as::<PairLine>(p)
            .map_err(|e| Exit(2, format!("{e} (each line must be {{\"input\": ..., \"target\": ...}})")))?;
        if rows.is_empty() {
            return Err(Exit(2, format!("{} holds no examples", p.display())).into());
        }
        Ok(rows)
    };
    let train_rows = read(&a.train)?;
    let val_rows = match &a.val {
        Some(v) => read(v)?,
        None => Vec::new(),
    };
    hsx::runtime::set_threads(a.threads);
    hsx::runtime::set_deterministic(true).map_err(|m| Exit(2, m))?;
    let device = hsx::model::parse_device(&a.device).map_err(|e| Exit(2, e.to_string()))?;
    let defaults = hsx::config::Train::default();
    let lora = LoraConfig {
        r: a.lora_r,
        alpha: a.lora_alpha.unwrap_or(2.0 * a.lora_r as f64),
        dropout: hsx::config::Lora::default().dropout,
        targets: vec!["q".into(), "v".into()],
    };
    tch::manual_seed(a.seed as i64);
    let (m, lora_vs) = load_t5_lora(&a.model, device, &lora, None).map_err(|e| Exit(2, e.to_string()))?;
    let tok = |rows: &[PairLine]| -> Result<Vec<Example>> {
        rows.iter()
            .map(|r| {
                Ok(Example {
                    input_ids: m.tokenizer.encode(&r.input, Some(a.max_input_tokens))?,
                    labels: m.tokenizer.encode(&r.target, Some(a.max_target_tokens))?,
                })
            })
            .collect::<std::result::Result<Vec<_>, hsx::model::ModelError>>()
            .map_err(|e| Exit(2, e.to_string()).into())
    };
    let (train_ex, val_ex) = (tok(&train_rows)?, tok(&val_rows)?);
    let mut recipe = Recipe::from_config(&defaults, a.seed, device.is_cuda());
    if let Some(e) = a.epochs {
        recipe.epochs = e;
    }
    if let Some(lr) = a.lr {
        recipe.lr = lr;
    }
    let total = parameter_count(&m.vs) + parameter_count(&lora_vs);
    let progress = BarProgress { bar: progress_bar(cli), json: cli.json };
    let report = train(&m.model, &lora_vs, total, &train_ex, &val_ex, &recipe, m.tokenizer.pad_id, &progress)
        .map_err(|e| Exit(2, e.to_string()))?;
    progress.bar.finish_and_clear();
    save_adapter(&lora_vs, &lora, &a.model.display().to_string(), &a.out).map_err(|e| Exit(2, e.to_string()))?;
    let metrics = serde_json::to_value(&report)?;
    std::fs::write(a.out.join("train_metrics.json"), format!("{}\n", serde_json::to_string_pretty(&metrics)?))
        .with_context(|| format!("writing {}", a.out.display()))?;
    if a.merge {
        merge_and_save(&a.model, &m, &a.out.join("merged")).map_err(|e| Exit(2, e.to_string()))?;
    }
    if cli.json {
        print_json(&json!({"event": "done", "out": a.out, "metrics": metrics}));
    } else if !cli.quiet {
        println!(
            "trainable parameters: {} of {} ({:.3}%)",
            report.trainable_parameters,
            report.total_parameters,
            100.0 * report.trainable_share
        );
        println!(
            "{} steps in {:.1} s; best epoch {} (val loss {:?}); adapter in {}",
            report.optimizer_steps,
            report.wall_seconds,
            report.best_epoch,
            report.val_loss_per_epoch,
            a.out.display()
        );
    }
    Ok(0)
}

#[derive(serde::Deserialize)]
struct IdText {
    id: serde_json::Value,
    text: String,
}

/// Reads {"id", "text"} lines keyed by id (string or number), refusing duplicates and empty files.
fn read_id_text(path: &Path) -> Result<std::collections::BTreeMap<String, String>> {
    let rows = hsx::data::read_jsonl_as::<IdText>(path)
        .map_err(|e| Exit(2, format!("{e} (each line must be {{\"id\": ..., \"text\": \"...\"}})")))?;
    if rows.is_empty() {
        return Err(Exit(2, format!("{} holds no rows", path.display())).into());
    }
    let mut m = std::collections::BTreeMap::new();
    for r in rows {
        let id = match &r.id {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if m.insert(id.clone(), r.text).is_some() {
            return Err(Exit(2, format!("{}: id {id:?} appears twice", path.display())).into());
        }
    }
    Ok(m)
}

fn cmd_score(cli: &Cli, a: &ScoreArgs) -> Result<u8> {
    use hsx::metrics::{estimate, lexical, Metric};
    let metrics: Vec<Metric> = a
        .metrics
        .split(',')
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e: String| Exit(2, format!("--metrics: {e}")))?;
    if a.resamples < 1000 {
        return Err(Exit(2, "--resamples must be at least 1000".into()).into());
    }
    let preds = read_id_text(&a.pred)?;
    let refs = read_id_text(&a.reference)?;
    let only_pred: Vec<&String> = preds.keys().filter(|k| !refs.contains_key(*k)).collect();
    let only_ref: Vec<&String> = refs.keys().filter(|k| !preds.contains_key(*k)).collect();
    if !only_pred.is_empty() || !only_ref.is_empty() {
        let show = |v: &[&String]| v.iter().take(10).map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        return Err(Exit(
            2,
            format!(
                "ids do not match: {} only in {} [{}], {} only in {} [{}]",
                only_pred.len(),
                a.pred.display(),
                show(&only_pred),
                only_ref.len(),
                a.reference.display(),
                show(&only_ref)
            ),
        )
        .into());
    }
    let ids: Vec<&String> = refs.keys().collect();
    let p: Vec<String> = ids.iter().map(|i| preds[*i].clone()).collect();
    let r: Vec<String> = ids.iter().map(|i| refs[*i].clone()).collect();
    let mut per = lexical(&p, &r, &metrics, a.stemmer);
    let mut out = serde_json::Map::new();
    out.insert("n".into(), json!(ids.len()));
    let mut ci = serde_json::Map::new();
    if metrics.contains(&Metric::BertScore) {
        let bert = hsx::model::bert::load_minilm(a.bertscore_model.as_deref(), tch::Device::Cpu).map_err(|e| Exit(2, e.to_string()))?;
        let opts = hsx::metrics::bertscore::BertScoreOptions { layer: a.bertscore_layer, idf: a.idf, ..Default::default() };
        let bs = hsx::metrics::bertscore::bertscore(&bert, &p, &r, &opts).map_err(|e| Exit(2, e.to_string()))?;
        out.insert("bertscore_model".into(), json!(bs.model));
        out.insert("bertscore_layer".into(), json!(bs.layer));
        out.insert("bertscore_idf".into(), json!(bs.idf));
        per.bertscore_precision = bs.precision;
        per.bertscore_recall = bs.recall;
        per.bertscore_f1 = bs.f1;
    }
    let named: [(&str, &Vec<f64>); 8] = [
        ("em", &per.em),
        ("f1", &per.f1),
        ("rouge1", &per.rouge1),
        ("rouge2", &per.rouge2),
        ("rougeL", &per.rouge_l),
        ("bertscore_precision", &per.bertscore_precision),
        ("bertscore_recall", &per.bertscore_recall),
        ("bertscore_f1", &per.bertscore_f1),
    ];
    for (k, (name, v)) in named.iter().enumerate() {
        if v.is_empty() {
            continue;
        }
        let e = estimate(v, a.resamples, a.seed.wrapping_add(k as u64));
        out.insert((*name).into(), json!(e.mean));
        ci.insert((*name).into(), json!([e.ci95.0, e.ci95.1]));
    }
    if metrics.contains(&Metric::Rouge) {
        out.insert("rouge_stemmer".into(), json!(a.stemmer));
    }
    out.insert("ci95".into(), serde_json::Value::Object(ci));
    let v = serde_json::Value::Object(out);
    if cli.json {
        print_json(&v);
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(0)
}

fn cmd_embed(cli: &Cli, a: &EmbedArgs) -> Result<u8> {
    if a.text.is_empty() {
        return Err(Exit(2, "nothing to embed: give TEXT arguments".into()).into());
    }
    let bert = hsx::model::bert::load_minilm(a.model.as_deref(), tch::Device::Cpu).map_err(|e| Exit(2, e.to_string()))?;
    let e = bert.embed(&a.text, 64, 256).map_err(|e| Exit(2, e.to_string()))?;
    for (i, t) in a.text.iter().enumerate() {
        let v: Vec<f32> = Vec::<f32>::try_from(e.get(i as i64)).map_err(|e| Exit(2, e.to_string()))?;
        if cli.json {
            print_json(&json!({"text": t, "embedding": v}));
        } else {
            println!("{}", v.iter().map(|x| format!("{x:.6}")).collect::<Vec<_>>().join(" "));
        }
    }
    Ok(0)
}

/// Re-renders REPORT.md from the ledger for the latest `report` entry and compares it with the file on
/// disk. `None` when there is no report entry, the file is absent (reported missing elsewhere), or it
/// matches.
fn check_report(ledger_path: &Path, workspace: &Path) -> Option<hsx::ledger::verify::Failure> {
    let ledger = hsx::ledger::store::read(ledger_path).ok()?;
    let (idx, e) = ledger.entries.iter().enumerate().rev().find(|(_, e)| e.stage == "report")?;
    let dir = e.params.get("report_dir")?.as_str()?;
    if hsx::ledger::files::check_relative(dir).is_err() {
        return None;
    }
    let fail = |field: &str, message: String| hsx::ledger::verify::Failure {
        entry: Some(idx),
        stage: Some("report".into()),
        field: field.into(),
        message,
    };
    let template_sha = hsx::canonical::sha256_hex(hsx::report::DEFAULT_TEMPLATE.as_bytes());
    if e.params.get("template_sha256").and_then(|v| v.as_str()) != Some(template_sha.as_str()) {
        return Some(fail("params.template_sha256", "the report was rendered with a different template than this hsx carries; cannot re-render it".into()));
    }
    let path = workspace.join(dir).join("REPORT.md");
    let on_disk = std::fs::read_to_string(&path).ok()?;
    match hsx::report::check_rendered(&ledger, &on_disk, hsx::report::DEFAULT_TEMPLATE) {
        Ok(None) => None,
        Ok(Some((line, expected, found))) => Some(fail(
            "outputs",
            format!("{}/REPORT.md line {line} does not match the ledger: expected {expected:?}, found {found:?}", dir),
        )),
        Err(err) => Some(fail("outputs", format!("cannot re-render the report: {err}"))),
    }
}

fn cmd_report(cli: &Cli, a: &ReportArgs) -> Result<u8> {
    let ledger = hsx::ledger::store::read(&a.ledger).map_err(|e| Exit(2, e.to_string()))?;
    let template = match &a.template {
        Some(t) => std::fs::read_to_string(t).map_err(|e| Exit(2, format!("{}: {e}", t.display())))?,
        None => hsx::report::DEFAULT_TEMPLATE.to_owned(),
    };
    let run_dir = cwd()?.join(&ledger.header.run_dir);
    let out_dir = a.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
    let written = hsx::report::write_report(&ledger, &run_dir, &out_dir, &template).map_err(|e| Exit(2, e.to_string()))?;
    let md = out_dir.join("REPORT.md");
    if md != a.out {
        std::fs::rename(&md, &a.out).with_context(|| format!("moving the report to {}", a.out.display()))?;
    }
    if cli.json {
        print_json(&json!({"report": a.out, "files": written}));
    } else if !cli.quiet {
        println!("wrote {} and {} other file(s) in {}", a.out.display(), written.len() - 1, out_dir.display());
    }
    Ok(0)
}

fn cmd_reproduce(cli: &Cli, a: &ReproduceArgs) -> Result<u8> {
    let ledger = hsx::ledger::store::read(&a.ledger).map_err(|e| Exit(2, e.to_string()))?;
    // Apply the recording's CPU pins: re-execute with them when this process runs with others.
    if let Some(first) = ledger.entries.first() {
        let pins = hsx::runtime::recorded_pins(&first.env["torch"]).map_err(|e| Exit(2, format!("{}: entry 0: {e}", a.ledger.display())))?;
        if let hsx::runtime::RecordedPins::Restart { env, differences } = pins {
            tracing::info!("applying the recorded CPU settings: {}", differences.join("; "));
            let err = hsx::runtime::restart_with(&env);
            return Err(Exit(2, format!("cannot restart hsx with the recorded CPU settings ({}): {err}", differences.join("; "))).into());
        }
    }
    let out = a.out.clone().unwrap_or_else(|| {
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        PathBuf::from(format!("{}-reproduce-{stamp}", ledger.header.run_dir.trim_end_matches('/')))
    });
    let opts = hsx::reproduce::ReproduceOptions {
        ledger: a.ledger.clone(),
        out,
        from: a.from.clone(),
        key: a.key.clone().unwrap_or_else(keys::default_key_path),
        workspace: cwd()?,
        data_mirror: a.data_mirror.clone(),
        threads: a.threads,
        seed: a.seed,
    };
    let progress = CliProgress { json: cli.json, quiet: cli.quiet };
    let rep = hsx::reproduce::reproduce(&opts, &progress).map_err(|e| Exit(2, format!("{e:#}")))?;
    if cli.json {
        print_json(&serde_json::to_value(&rep)?);
    } else {
        for s in &rep.stages {
            let extra = if s.differing.is_empty() { String::new() } else { format!(" — {}{}", s.differing[0], s.detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default()) };
            let time = s.time.as_ref().map(|t| format!("  [{t}]")).unwrap_or_default();
            println!("{:>4}  {:<12} {}{}{}", s.seq, s.stage, s.verdict, extra, time);
            for line in s.stats.iter().flat_map(|st| st.moved.iter().chain(&st.items)) {
                println!("{:>18} {line}", "");
            }
        }
        if !rep.env_differences.is_empty() {
            println!("environment differs from the recording: {}", rep.env_differences.join("; "));
        }
        if let Some(t) = &rep.time {
            println!("reproduce time, all re-run stages: {t}");
        }
        if rep.verdict != hsx::repro_stats::IDENTICAL && !rep.largest_deviations.is_empty() {
            println!("largest deviation of each metric (re-run vs recorded):");
            for (m, d) in &rep.largest_deviations {
                println!("  {m:<13} {d}");
            }
        }
        match rep.verdict.as_str() {
            hsx::repro_stats::IDENTICAL => println!("identical: reproduced {} stages into {}, every output byte-identical", rep.stages.len(), rep.out),
            hsx::repro_stats::WITHIN_TOLERANCE => println!(
                "reproduced within tolerance into {}: bytes differ from {}, but every metric, gap and hypothesis verdict is within the recorded intervals",
                rep.out,
                rep.first_difference.as_deref().unwrap_or("?")
            ),
            _ => {
                println!("DIVERGED: {}", rep.moved.join("; "));
                if let Some(d) = &rep.first_difference {
                    println!("first difference at {d}");
                }
            }
        }
    }
    Ok(if rep.ok { 0 } else { 1 })
}
