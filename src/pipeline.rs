//! The graph executor: runs the stages of [`Stage::ALL`] in order, resumes from the ledger, honours
//! `--from` / `--only`, and records each stage as one signed ledger entry. Stage bodies live in
//! `crate::stages`, one file each; this file only decides what runs and records it.
//!
//! Resuming: a stage is skipped when its latest entry has the same parameters (its own slice of the
//! config, see each stage's `spec`), master seed, input hashes and code identity (the hash of the source
//! files that stage may run, [`stages::code`]; not the git commit, so a template edit re-renders the
//! report and retrains nothing), and its outputs still verify on disk; the report, which renders the
//! ledger, also re-runs when any entry was recorded after it. The whole config's hash is not part of the
//! key: a setting re-runs the stages whose parameters hold it, and the stages whose inputs then change.
//!
//! ```text
//! hsx run --config configs/smoke.toml --ledger ledger/smoke.json
//! ```
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::data::DataError;
use crate::ledger::files::{hash_file, record_path};
use crate::ledger::store::{claim_dir, Claimed, DirClaim};
use crate::ledger::{
    Append, Entry, GitState, LedgerError, LedgerWriter, Recorder, Root, Roots, SigningKeyFile, StageOutcome, StageSpec,
};
use crate::model::usage::Resources;
use crate::stages::{self, Instance, Stage, StageCtx};

pub use crate::error::PipelineError;
pub use crate::progress::{Progress, Quiet};

/// Every stage of the experiment, in order, with its name.
pub const STAGES: [(&str, Stage); Stage::ALL.len()] = crate::stages::registry::table();

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config_path: PathBuf,
    pub ledger_path: PathBuf,
    pub key_path: PathBuf,
    /// The directory hsx runs in; `runs/`, `data/`, `models/` are relative to it.
    pub workspace: PathBuf,
    /// `HSX_DATA_MIRROR`: a directory holding `cosmosqa/<files>`, read in place.
    pub data_mirror: Option<PathBuf>,
    pub only: Option<String>,
    pub from: Option<String>,
    /// A self-contained run (`hsx run --out DIR`): the artifacts, the report (`DIR/<report_dir>`) and,
    /// unless `ledger_path` says otherwise, the ledger (`DIR/ledger.json`) all live in `DIR`, and the
    /// ledger's header records its run directory as `.` (the ledger's own directory). `None`: the
    /// workspace layout of the shipped exp-42 (`<runs_dir>/<id>` and `report_dir` under the workspace).
    pub out: Option<PathBuf>,
}

/// What happened to a stage in one `hsx run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ran,
    /// Resumed: its recorded entry still holds.
    Skipped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Ran => "ran",
            Status::Skipped => "skipped",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    pub stage: String,
    pub status: Status,
    pub seq: u64,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub ledger: String,
    pub run_dir: String,
    pub stages: Vec<StageResult>,
}

impl RunSummary {
    /// Records `instance` as resumed from its entry `e`, and says so.
    pub fn skipped(&mut self, progress: &dyn Progress, instance: Instance, e: &Entry) {
        progress.stage_skipped(&instance.name(), &format!("already recorded as entry {} ({})", e.seq, &e.hash[..12]));
        self.stages.push(StageResult {
            stage: instance.name(),
            status: Status::Skipped,
            seq: e.seq,
            hash: e.hash.clone(),
        });
    }

    /// Records `instance` as run, recorded as entry `e`.
    pub fn ran(&mut self, instance: Instance, e: &Entry) {
        self.stages.push(StageResult { stage: instance.name(), status: Status::Ran, seq: e.seq, hash: e.hash.clone() });
    }
}

/// The CosmosQA data directory: `<mirror>/cosmosqa` when a mirror is set, else the config's `data.dir`.
pub fn data_root(workspace: &Path, mirror: Option<&Path>, data_dir: &str) -> PathBuf {
    match mirror {
        Some(m) => m.join("cosmosqa"),
        None => workspace.join(data_dir),
    }
}

pub fn run_dir_rel(cfg: &Config) -> String {
    format!("{}/{}", cfg.experiment.runs_dir.trim_end_matches('/'), cfg.experiment.id)
}

/// The file name of a self-contained run's ledger inside its directory.
pub const SELF_CONTAINED_LEDGER: &str = "ledger.json";

/// libtorch's seed, thread count and determinism switches are process-wide: two runs in one process
/// (tests, a library caller) must not interleave, or their random streams mix.
pub(crate) static PROCESS_RUN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The environment an entry records: OS, CPU, libtorch, threads, hsx version.
pub fn environment_now() -> Value {
    let mut env = crate::provenance::environment(serde_json::to_value(crate::runtime::facts()).unwrap_or(Value::Null));
    // The CPU matrix multiply T5 and MiniLM run (library, version, the kernel this CPU selects).
    if let Some(m) = env.as_object_mut() {
        m.insert("gemm".into(), serde_json::to_value(crate::model::gemm::facts()).unwrap_or(Value::Null));
    }
    env
}

/// The environment a stage's entry records: [`environment_now`] and the stage's code identity
/// ([`stages::code`]), which the resume key compares.
pub fn stage_environment(stage: Stage) -> Value {
    let mut env = environment_now();
    let code = stages::code::identity(stage);
    if let Some(m) = env.as_object_mut() {
        m.insert("stage_code_sha256".into(), Value::String(code.sha256));
        m.insert("stage_code_files".into(), Value::from(code.files));
        if let Some(job) = crate::provenance::slurm_job() {
            m.insert("slurm".into(), job);
        }
    }
    env
}

/// What every execution of stages needs, set up once: by `run` and by `reproduce`.
pub struct Setup {
    pub cfg: Config,
    pub roots: Roots,
    pub config_value: Value,
    pub git: GitState,
    /// A self-contained run keeps its report under the run directory instead of the workspace.
    pub self_contained: bool,
}

impl Setup {
    /// Configures libtorch from `[runtime]` (process-wide: hold [`PROCESS_RUN`]), then [`Setup::place`].
    pub fn new(
        cfg: Config,
        workspace: &Path,
        data_mirror: Option<&Path>,
        run_dir: PathBuf,
    ) -> Result<Setup, PipelineError> {
        crate::runtime::set_threads(cfg.runtime.threads);
        crate::runtime::set_deterministic(cfg.runtime.deterministic).map_err(PipelineError::Runtime)?;
        let device = crate::model::parse_device(cfg.runtime.device.name())?;
        if cfg.runtime.bf16() && !device.is_cuda() {
            crate::runtime::check_cpu_bf16().map_err(PipelineError::Runtime)?;
        }
        Setup::place(cfg, workspace, data_mirror, run_dir)
    }

    /// Creates the run directory and places the roots, touching nothing process-wide.
    pub fn place(
        cfg: Config,
        workspace: &Path,
        data_mirror: Option<&Path>,
        run_dir: PathBuf,
    ) -> Result<Setup, PipelineError> {
        std::fs::create_dir_all(&run_dir).map_err(|source| DataError::Io { path: run_dir.clone(), source })?;
        let roots = Roots {
            run: Some(run_dir),
            data: Some(data_root(workspace, data_mirror, &cfg.data.dir)),
            workspace: Some(workspace.to_owned()),
        };
        let config_value = serde_json::to_value(&cfg).expect("a config serialises");
        Ok(Setup { git: crate::provenance::git_state(workspace), cfg, roots, config_value, self_contained: false })
    }

    /// The directory the report directory is relative to: the run directory of a self-contained run,
    /// else the workspace.
    pub fn report_base(&self) -> PathBuf {
        let base = if self.self_contained { &self.roots.run } else { &self.roots.workspace };
        base.clone().unwrap_or_default()
    }

    /// Claims the report directory (`experiment.report_dir` under [`Setup::report_base`]) for the ledger
    /// of `writer` until the claim is dropped, before any stage runs: a second ledger's report there is
    /// refused, naming both. A directory with no claim is adopted when everything in it is something
    /// this ledger recorded (a report rendered before directories were claimed), and refused otherwise.
    pub fn claim_report_dir(&self, writer: &LedgerWriter) -> Result<DirClaim, PipelineError> {
        let dir = self.report_base().join(&self.cfg.experiment.report_dir);
        let recorded: Vec<PathBuf> = writer
            .ledger()
            .entries
            .iter()
            .flat_map(|e| &e.outputs)
            .filter_map(|r| self.roots.get(r.root).and_then(|b| b.canonicalize().ok()).map(|b| b.join(&r.path)))
            .collect();
        let header = writer.ledger().header.sha256();
        let may_hold = |p: &Path| recorded.iter().any(|r| r.starts_with(p));
        Ok(claim_dir(Claimed::Report, &dir, &header, writer.path(), &may_hold)?)
    }

    /// Runs `instance` as a signed entry of `writer` (the ledger, or a Slurm job's fragment). `finish`
    /// sees the outcome before it is recorded (reproduce compares it there); `source_ledger` is the
    /// ledger the report renders.
    pub fn execute(
        &self,
        instance: impl Into<Instance>,
        spec: StageSpec,
        writer: &mut dyn Append,
        source_ledger: &Path,
        progress: &dyn Progress,
        finish: impl FnOnce(StageOutcome) -> Result<StageOutcome, PipelineError>,
    ) -> Result<Entry, PipelineError> {
        let instance: Instance = instance.into();
        let stage = instance.stage;
        preflight(&spec, &self.roots, &self.cfg)?;
        progress.stage_started(&instance.name());
        let mut recorder = Recorder {
            writer,
            roots: self.roots.clone(),
            config: self.config_value.clone(),
            master_seed: self.cfg.experiment.seed,
            git: self.git.clone(),
            env: Box::new(move || stage_environment(stage)),
        };
        let entry = recorder.record(spec, |rc| {
            let mut ctx = StageCtx::new(instance, &self.cfg, &self.roots, rc.seed, source_ledger, progress)?;
            ctx.self_contained = self.self_contained;
            let meter = Meter::start();
            let mut outcome = stages::run(&ctx)?;
            if let Some(m) = outcome.metrics.as_object_mut() {
                m.insert("resources".into(), serde_json::to_value(meter.finish()).map_err(PipelineError::Record)?);
            }
            finish(outcome)
        })??;
        progress.stage_finished(&instance.name(), &entry);
        Ok(entry)
    }
}

/// What one stage cost, recorded in its entry as `metrics.resources`: wall time, the process's peak
/// resident memory during the stage (Linux: the high-water mark is reset when the stage starts), and the
/// token positions it pushed through the models ([`crate::model::usage`]). Measurements of this machine,
/// never compared by `reproduce`.
struct Meter {
    start: std::time::Instant,
    hwm_reset: bool,
}

impl Meter {
    fn start() -> Meter {
        crate::model::usage::reset();
        // Writing 5 to clear_refs resets the peak resident set size (VmHWM) to the current one.
        let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        Meter { start: std::time::Instant::now(), hwm_reset }
    }

    fn finish(self) -> Resources {
        let peak = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
        let scope =
            if self.hwm_reset { "this stage" } else { "the process so far (the high-water mark could not be reset)" };
        Resources {
            wall_seconds: (self.start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            peak_rss_bytes: peak.map(|kb| kb * 1024),
            peak_rss_scope: scope.into(),
            tokens: crate::model::usage::now(),
        }
    }
}

/// The run directory of `opts`: `--out`, or the config's `<runs_dir>/<id>` under the workspace.
pub fn run_dir_of(opts: &RunOptions, cfg: &Config) -> PathBuf {
    match &opts.out {
        Some(out) => opts.workspace.join(out),
        None => opts.workspace.join(run_dir_rel(cfg)),
    }
}

/// The instances `hsx run` would run, in the plan's order, with `--only` / `--from` applied: `Some(true)`
/// forced (named by `--only`, or at or after `--from`), `Some(false)` run unless it resumes.
pub fn selected(cfg: &Config, only: Option<&str>, from: Option<&str>) -> Result<Vec<(Instance, bool)>, PipelineError> {
    let only = only.map(Instance::parse).transpose()?;
    let from = from.map(Instance::parse).transpose()?;
    let plan = Instance::plan(cfg.experiment.seed, &cfg.experiment.replicate_seeds());
    for named in only.iter().chain(from.iter()) {
        if !plan.contains(named) {
            return Err(PipelineError::Usage(format!(
                "stage {named} is not in this experiment's plan (experiment.replicates lists its training seeds)"
            )));
        }
    }
    let from_pos = from.map(|f| plan.iter().position(|i| *i == f).expect("checked above"));
    Ok(plan
        .iter()
        .enumerate()
        .filter(|(_, i)| only.is_none_or(|o| o == **i))
        .map(|(k, i)| (*i, only == Some(*i) || from_pos.is_some_and(|f| k >= f)))
        .collect())
}

/// Runs the pipeline in this process, one stage instance after another, resuming from the ledger (the
/// local executor; `crate::slurm::run` is the Slurm executor, over the same options).
pub fn run(opts: &RunOptions, progress: &dyn Progress) -> Result<RunSummary, PipelineError> {
    let _one_at_a_time = PROCESS_RUN.lock().unwrap_or_else(|p| p.into_inner());
    let cfg = Config::load(&opts.config_path)?;
    let selected = selected(&cfg, opts.only.as_deref(), opts.from.as_deref())?;
    let key = SigningKeyFile::load(&opts.key_path).map_err(LedgerError::from)?;
    let run_dir = run_dir_of(opts, &cfg);
    // The writer refuses a ledger whose recorded run directory is not this one (resume it the way it
    // was started: with the same --out, or with --ledger and the config's runs_dir).
    let mut writer = LedgerWriter::open(
        &opts.ledger_path,
        &cfg.experiment.id,
        &crate::ledger::Locations::new(run_dir.clone(), &opts.workspace),
        key,
    )?;
    let mut setup = Setup::new(cfg, &opts.workspace, opts.data_mirror.as_deref(), run_dir.clone())?;
    setup.self_contained = opts.out.is_some();
    let _report_dir = setup.claim_report_dir(&writer)?;
    let mut summary = RunSummary {
        ledger: opts.ledger_path.display().to_string(),
        run_dir: run_dir.display().to_string(),
        stages: Vec::new(),
    };

    for (instance, forced) in selected {
        let spec = stages::spec(instance, &setup.cfg);
        if !forced {
            if let Some(e) = resumable(writer.ledger().entries.as_slice(), instance.stage, &spec, &setup) {
                summary.skipped(progress, instance, e);
                continue;
            }
        }
        let entry = setup.execute(instance, spec, &mut writer, &opts.ledger_path, progress, Ok)?;
        summary.ran(instance, &entry);
    }
    Ok(summary)
}

/// Every input of a stage must exist before it runs; a missing one is named with where to get it.
pub fn preflight(spec: &StageSpec, roots: &Roots, cfg: &Config) -> Result<(), PipelineError> {
    for (root, rel) in &spec.inputs {
        let Some(base) = roots.get(*root) else { continue };
        let path = base.join(rel);
        if path.exists() {
            continue;
        }
        let hint = match root {
            Root::Data => format!(
                "run `hsx data fetch` to download the official CosmosQA files into {}, or set HSX_DATA_MIRROR \
                 to a directory holding cosmosqa/{rel}",
                cfg.data.dir
            ),
            Root::Workspace => "see the README for where this file comes from".to_owned(),
            Root::Run => "an earlier stage should have written it; re-run with --from that stage".to_owned(),
        };
        return Err(
            DataError::Missing(format!("stage {}: {} does not exist; {hint}", spec.stage, path.display())).into()
        );
    }
    Ok(())
}

/// The latest entry of `stage`, if re-running it would change nothing: same parameters, master seed,
/// code identity and input hashes, outputs intact on disk (and, for the report, no entry after it). An
/// entry without a recorded code identity (written before hsx recorded one) never resumes.
pub fn resumable<'a>(entries: &'a [Entry], stage: Stage, spec: &StageSpec, setup: &Setup) -> Option<&'a Entry> {
    let pos = entries.iter().rposition(|e| e.stage == spec.stage)?;
    let e = &entries[pos];
    if !crate::canonical::same_value(&e.params, &spec.params) || e.seeds.master != setup.cfg.experiment.seed {
        return None;
    }
    if e.env.get("stage_code_sha256").and_then(Value::as_str) != Some(stages::code::identity(stage).sha256.as_str()) {
        return None;
    }
    // The report renders the ledger itself: any entry recorded after it makes it stale.
    if stage == Stage::Report && entries[pos + 1..].iter().any(|later| later.stage != spec.stage) {
        return None;
    }
    let mut current = Vec::new();
    for (root, rel) in &spec.inputs {
        current.extend(record_path(&setup.roots, *root, rel).ok()?);
    }
    if current != e.inputs {
        return None;
    }
    let all_present = e.outputs.iter().all(|r| {
        setup
            .roots
            .get(r.root)
            .and_then(|b| hash_file(&b.join(&r.path)).ok())
            .is_some_and(|(bytes, sha)| bytes == r.bytes && sha == r.sha256)
    });
    all_present.then_some(e)
}
