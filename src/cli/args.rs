//! The command line: every subcommand's arguments, as clap parses them. Nothing runs here.
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// `--from` / `--only` / `--instance` accept the stage registry's names, and a replicate's `NAME@SEED`.
fn stage_names(s: &str) -> Result<String, String> {
    hsx::stages::Instance::parse(s).map(|i| i.name()).map_err(|e| e.to_string())
}

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
    /// Run one stage instance into its ledger fragment: what each job of `hsx run --executor slurm` runs.
    #[command(hide = true)]
    Stage(StageArgs),
    /// Re-run every recorded stage from a ledger into a fresh directory and compare the outputs.
    Reproduce(ReproduceArgs),
    /// Audit a ledger: format, hash chain, signatures, trusted signers, config hashes, recorded files.
    Verify(VerifyArgs),
    /// Render REPORT.md from the ledger's entries alone.
    Report(ReportArgs),
    /// Write a verified ledger for other tools: another ecosystem's provenance format (DSSE, Sigstore,
    /// in-toto, SLSA; docs/interop.md), a Hugging Face dataset with model cards (hf), or runs in an MLflow
    /// tracking server (mlflow; docs/ecosystem.md). A view of the ledger, never a second record.
    Export(ExportArgs),
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
    /// `hsx verify` time and peak memory on generated ledgers (default 1k, 10k, 100k entries), each in a fresh process.
    Verify {
        /// Where to write the generated ledgers (default: $HSX_CACHE/bench/verify).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Entry counts, comma separated.
        #[arg(long, value_delimiter = ',', default_values_t = [1000usize, 10000, 100000])]
        sizes: Vec<usize>,
        /// Internal: verify this one ledger in this process and print the measurement.
        #[arg(long, hide = true)]
        child: Option<PathBuf>,
    },
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
        /// cpu, cuda, or auto.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Under bf16 autocast (the base profile's precision).
        #[arg(long)]
        bf16: bool,
        /// 0 = greedy; above 0, sampled with the stages' sampler (seed 42, row i keyed by i).
        #[arg(long, default_value_t = 0.0)]
        temperature: f64,
        /// Nucleus sampling's top-p (with --temperature above 0).
        #[arg(long, default_value_t = 1.0)]
        top_p: f64,
    },
    /// T5's linear-layer products: the portable multiply against libtorch's matmul (MKL), forward and
    /// forward + backward, in one process under the same pins; GFLOP/s and ratios.
    Gemm {
        /// Shapes `MxKxN` (x [M, K] · wᵀ, w [N, K]), comma separated; the default covers the tiny profile's
        /// and flan-t5-base's projections and vocabulary heads.
        #[arg(
            long,
            value_delimiter = ',',
            default_values_t = ["4096x128x512".to_string(), "4096x512x128".to_string(), "2048x128x8000".to_string(),
                "64x128x8000".to_string(), "512x768x2048".to_string(), "512x2048x768".to_string(),
                "64x768x32128".to_string()]
        )]
        shapes: Vec<String>,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Timed repetitions of each side (alternating, after one warm-up); the median is reported.
        #[arg(long, default_value_t = 5)]
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
        /// Timed repetitions (after one warm-up); the median is reported.
        #[arg(long, default_value_t = 1)]
        reps: usize,
        /// Also write the embeddings here: n × hidden little-endian f32, rows in input order.
        #[arg(long)]
        out: Option<PathBuf>,
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
        /// cpu, cuda, or auto.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Under bf16 autocast (the base profile's precision).
        #[arg(long)]
        bf16: bool,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Experiment config (TOML), e.g. configs/tiny.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Ledger file to create or resume in the workspace layout (artifacts in `<runs_dir>/<id>`, the
    /// report in `experiment.report_dir`), as the shipped ledger/exp-42.json was made.
    #[arg(long, required_unless_present = "out", conflicts_with = "out")]
    pub ledger: Option<PathBuf>,
    /// A self-contained run directory to create or resume: DIR/ledger.json, the artifacts, DIR/<report_dir>/.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Signing key (default: $HSX_SIGNING_KEY, else the key `hsx keygen` writes).
    #[arg(long, env = "HSX_SIGNING_KEY")]
    pub key: Option<PathBuf>,
    /// Directory holding cosmosqa/valid.csv etc., read in place (an offline mirror).
    #[arg(long, env = "HSX_DATA_MIRROR")]
    pub data_mirror: Option<PathBuf>,
    /// Force re-running from this stage on (a replicate: NAME@SEED, e.g. train-A@43).
    #[arg(long, value_parser = stage_names)]
    pub from: Option<String>,
    /// Run only this stage (a replicate: NAME@SEED).
    #[arg(long, value_parser = stage_names)]
    pub only: Option<String>,
    /// Where the stages run: `local` (this process, one after another) or `slurm` (each stage instance a
    /// Slurm job, independent ones at the same time; docs/slurm.md).
    #[arg(long, value_enum, default_value = "local")]
    pub executor: ExecutorArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExecutorArg {
    Local,
    Slurm,
}

/// What one Slurm job of `hsx run --executor slurm` runs; the driver writes this command line.
#[derive(Debug, Args)]
pub struct StageArgs {
    /// The stage instance (e.g. train-A, train-A@43).
    #[arg(long, value_parser = stage_names)]
    pub instance: String,
    #[arg(long)]
    pub config: PathBuf,
    /// The run's ledger: read to bind the fragment to it, never written.
    #[arg(long)]
    pub ledger: PathBuf,
    /// The self-contained run directory, when the run has one.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[arg(long, env = "HSX_SIGNING_KEY")]
    pub key: Option<PathBuf>,
    #[arg(long, env = "HSX_DATA_MIRROR")]
    pub data_mirror: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// The ledger to reproduce.
    #[arg(long)]
    pub ledger: PathBuf,
    /// Refuse the ledger unless its signer is listed here (format of ledger/trusted_keys).
    #[arg(long)]
    pub trusted_keys: Option<PathBuf>,
    /// Fresh run directory for the re-run (never the original).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Re-run from this stage on (earlier outputs are copied from the original run).
    #[arg(long, value_parser = stage_names)]
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
    /// Fail unless the ledger contains the entry with this hash (the head you pinned, e.g. from REPORT.md).
    #[arg(long)]
    pub expect_head: Option<String>,
}

/// `--format`: the names of `hsx::export::Format` (one list, in the library).
fn export_format(s: &str) -> Result<hsx::export::Format, String> {
    hsx::export::Format::parse(s)
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// dsse (entry and head envelopes, JSONL), sigstore (bundles v0.3 with a public-key hint), in-toto
    /// (layout and links for in-toto-verify), slsa (SLSA Provenance v1 statements for train and evaluate),
    /// hf (a Hugging Face dataset and a model card per adapter, to push to the Hub as it is), mlflow (a
    /// parent run and a child run per stage instance in an MLflow tracking server).
    #[arg(long, value_parser = export_format)]
    pub format: hsx::export::Format,
    /// The ledger to export; it must pass `hsx verify` first.
    #[arg(long)]
    pub ledger: PathBuf,
    /// A new or empty directory for the export, outside the recorded run directory (every format but
    /// mlflow).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Refuse the ledger unless its signer is listed here (format of ledger/trusted_keys).
    #[arg(long)]
    pub trusted_keys: Option<PathBuf>,
    /// Refuse the ledger unless it contains the entry with this hash (the head you pinned).
    #[arg(long)]
    pub expect_head: Option<String>,
    /// Directory holding cosmosqa/<files>, to check recorded data inputs.
    #[arg(long, env = "HSX_DATA_MIRROR")]
    pub data_mirror: Option<PathBuf>,
    /// in-toto and slsa sign new documents with this key, the export signer's (default: $HSX_SIGNING_KEY,
    /// else `hsx keygen`'s); dsse and sigstore re-wrap the ledger's own signatures and need no key.
    #[arg(long, env = "HSX_SIGNING_KEY")]
    pub key: Option<PathBuf>,
    /// in-toto: when the layout expires (RFC 3339; default one year from now).
    #[arg(long)]
    pub expires: Option<String>,
    /// hf: the base model's Hub id, for a run whose base model is a local directory (e.g. google/flan-t5-base).
    #[arg(long)]
    pub base_model: Option<String>,
    /// mlflow: the tracking server, http(s)://host:port (default: $MLFLOW_TRACKING_URI).
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    pub tracking_uri: Option<String>,
    /// mlflow: the experiment to write to (default: the ledger's experiment id).
    #[arg(long)]
    pub experiment: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(long)]
    pub ledger: PathBuf,
    /// Refuse the ledger unless its signer is listed here (format of ledger/trusted_keys).
    #[arg(long)]
    pub trusted_keys: Option<PathBuf>,
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// The markdown file to write. Beside it go the files it links to, and nothing else:
    /// metrics_table.csv and plots/*.png (the compare stage's figures) in the same directory.
    #[arg(long, default_value = "report/REPORT.md")]
    pub out: PathBuf,
    /// Replace existing files that this ledger did not write (by default a file there with other
    /// contents is refused, unless the directory is this ledger's report directory).
    #[arg(long)]
    pub force: bool,
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
    /// Run under bf16 autocast (matrix products in bf16, as the base profile does), on CPU or CUDA.
    #[arg(long)]
    pub bf16: bool,
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
