//! The Slurm executor: `hsx run --executor slurm` submits each stage instance that has to run as one
//! Slurm job, with `afterok` dependencies from the stage graph, waits for the jobs, and joins the
//! entries they wrote ([`crate::ledger::fragment`]) into the ledger in the plan's order. Slurm does the
//! scheduling; hsx only describes the graph, so independent instances (train-A/B/C and the replicates)
//! run at the same time wherever Slurm places them.
//!
//! - **The graph.** An instance depends on the instances whose folders of the run directory it reads
//!   (its spec's inputs), and every evaluation also on every training (no model reads the test split
//!   before all training is done, as in the local order). The report renders the ledger, so it is
//!   submitted after every other fragment has been joined.
//! - **A job** runs `hsx stage --instance NAME` with the run's config, ledger, key and directory; it
//!   writes `slurm/fragments/<instance>.json` and its log `slurm/logs/<instance>.<jobid>.log`, and
//!   never opens the ledger for writing. The driver holds the ledger's lock throughout.
//! - **Failure.** A job that ends in any state but COMPLETED stops its dependents (Slurm cancels them:
//!   `--kill-on-invalid-dep=yes`, and the driver cancels them too); the driver lets independent jobs
//!   finish, joins what completed, and reports the failed job with its log. Re-running resumes: joined
//!   instances are skipped, and a fragment that a job finished after its driver stopped is joined when
//!   it still matches the run (same checks as resuming, and every run-directory input recorded by a
//!   ledger entry).
//! - **Evidence.** Each entry's `env.slurm` records its job id, job name and node; `slurm/jobs.json` the
//!   jobs of the latest driver with their dependencies.
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::Config;
use crate::error::PipelineError;
use crate::ledger::fragment::{self, read_checked, FragmentWriter};
use crate::ledger::{Entry, LedgerError, LedgerWriter, Root, SigningKeyFile};
use crate::pipeline::{self, Progress, RunOptions, RunSummary, Setup};
use crate::stages::{self, Instance, Stage};

/// The driver's record of its jobs, under the run directory.
pub const JOBS_FILE: &str = "slurm/jobs.json";
const LOGS_DIR: &str = "slurm/logs";

fn err(message: impl Into<String>) -> PipelineError {
    PipelineError::Slurm(message.into())
}

/// The stage family a `[slurm.stages]` key may name: `train`, `evaluate`, or the stage's own name.
pub fn family(stage: Stage) -> &'static str {
    match stage {
        Stage::Train(_) => "train",
        Stage::Evaluate(_) => "evaluate",
        s => s.name(),
    }
}

/// The instances `instance` waits for among `plan`: the producers of its run-directory inputs (the
/// first path component names the instance that wrote it) and, for an evaluation, every training.
pub fn dependencies(instance: Instance, cfg: &Config, plan: &[Instance]) -> Vec<Instance> {
    let spec = stages::spec(instance, cfg);
    let names: BTreeSet<String> = spec
        .inputs
        .iter()
        .filter(|(root, _)| *root == Root::Run)
        .filter_map(|(_, rel)| rel.split('/').next().map(str::to_owned))
        .collect();
    plan.iter()
        .filter(|p| **p != instance)
        .filter(|p| {
            names.contains(&p.name())
                || (matches!(instance.stage, Stage::Evaluate(_)) && matches!(p.stage, Stage::Train(_)))
        })
        .filter(|p| instance.stage != Stage::Report || p.stage != Stage::Report)
        .copied()
        .collect()
}

/// What Slurm says about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum JobState {
    Queued,
    Running,
    /// Ended: the Slurm state (COMPLETED, FAILED, CANCELLED, TIMEOUT, …) and the exit code.
    Ended {
        state: String,
        exit: String,
    },
}

fn run_cmd(program: &str, args: &[String]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        format!("cannot run {program} ({e}); is Slurm installed and on PATH? (a one-node test cluster: scripts/slurm-local.sh start)")
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// `scontrol -o show job ID`; a job Slurm no longer knows has ended (its state is then unknown).
fn job_state(id: &str) -> Result<JobState, String> {
    let text = match run_cmd("scontrol", &["-o".into(), "show".into(), "job".into(), id.into()]) {
        Ok(t) => t,
        Err(e) if e.contains("Invalid job id") => {
            return Ok(JobState::Ended { state: "UNKNOWN (no longer in Slurm's memory)".into(), exit: "?".into() })
        }
        Err(e) => return Err(e),
    };
    let field =
        |k: &str| text.split_whitespace().find_map(|w| w.strip_prefix(&format!("{k}="))).unwrap_or("").to_owned();
    Ok(match field("JobState").as_str() {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "RESV_DEL_HOLD" | "REQUEUE_FED" | "REQUEUE_HOLD" | "SUSPENDED" => {
            JobState::Queued
        }
        "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" | "RESIZING" => JobState::Running,
        s => JobState::Ended { state: s.to_owned(), exit: field("ExitCode") },
    })
}

/// A shell word for `sbatch --wrap`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[derive(Debug, Clone, Serialize)]
struct Job {
    instance: String,
    job_id: String,
    depends_on: Vec<String>,
    log: String,
    #[serde(skip)]
    started: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended: Option<String>,
    /// Ended COMPLETED (or ended in a state Slurm no longer remembers, with its fragment written).
    #[serde(skip)]
    completed: bool,
}

struct Driver<'a> {
    opts: &'a RunOptions,
    progress: &'a dyn Progress,
    setup: Setup,
    run_dir: PathBuf,
    slurm: crate::config::slurm::SlurmCfg,
    /// Every job this driver submitted, in submission order.
    jobs: Vec<Job>,
}

impl Driver<'_> {
    fn sbatch(&mut self, instance: Instance, deps: &[String]) -> Result<String, PipelineError> {
        let name = instance.name();
        let exe =
            std::env::current_exe().map_err(|e| err(format!("cannot find the hsx binary to run in the jobs: {e}")))?;
        let abs = |p: &Path| if p.is_absolute() { p.to_owned() } else { self.opts.workspace.join(p) };
        let mut cmd = vec![
            quote(&exe.display().to_string()),
            "-q".into(),
            "stage".into(),
            "--instance".into(),
            quote(&name),
            "--config".into(),
            quote(&abs(&self.opts.config_path).display().to_string()),
            "--ledger".into(),
            quote(&abs(&self.opts.ledger_path).display().to_string()),
            "--key".into(),
            quote(&abs(&self.opts.key_path).display().to_string()),
        ];
        if let Some(out) = &self.opts.out {
            cmd.extend(["--out".into(), quote(&abs(out).display().to_string())]);
        }
        if let Some(m) = &self.opts.data_mirror {
            cmd.extend(["--data-mirror".into(), quote(&abs(m).display().to_string())]);
        }
        let r = self.slurm.resources(family(instance.stage), instance.stage.name(), &name);
        let log = self.run_dir.join(LOGS_DIR).join(format!("{name}.%j.log"));
        let mut args: Vec<String> = vec![
            "--parsable".into(),
            format!("--job-name=hsx:{}:{name}", self.setup.cfg.experiment.id),
            format!("--output={}", log.display()),
            format!("--chdir={}", self.opts.workspace.display()),
            format!("--cpus-per-task={}", r.cpus.unwrap_or(self.setup.cfg.runtime.threads as u32)),
            "--ntasks=1".into(),
            "--kill-on-invalid-dep=yes".into(),
        ];
        if let Some(m) = r.mem_mb {
            args.push(format!("--mem={m}M"));
        }
        if let Some(t) = r.time_minutes {
            args.push(format!("--time={t}"));
        }
        if let Some(g) = r.gpus.filter(|g| *g > 0) {
            args.push(format!("--gres=gpu:{g}"));
        }
        if let Some(p) = &self.slurm.partition {
            args.push(format!("--partition={p}"));
        }
        if let Some(a) = &self.slurm.account {
            args.push(format!("--account={a}"));
        }
        if !deps.is_empty() {
            args.push(format!("--dependency=afterok:{}", deps.join(":")));
        }
        args.push(format!("--wrap=exec {}", cmd.join(" ")));
        let out = run_cmd("sbatch", &args).map_err(|e| err(format!("submitting {name}: {e}")))?;
        let id = out.trim().split(';').next().unwrap_or("").to_owned();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(err(format!("sbatch answered {out:?} for {name}, not a job id")));
        }
        Ok(id)
    }

    fn write_jobs_file(&self) -> Result<(), PipelineError> {
        let path = self.run_dir.join(JOBS_FILE);
        let v = json!({ "ledger": self.opts.ledger_path.display().to_string(), "jobs": self.jobs });
        let bytes = serde_json::to_vec_pretty(&v).expect("jobs serialise");
        crate::fsx::write(&self.run_dir, &path, &bytes).map_err(LedgerError::from)?;
        Ok(())
    }

    /// Submits `wave` (instances in plan order), waits for every job to end, and returns the instances
    /// whose job completed, with the first failure.
    fn submit_and_wait(
        &mut self,
        wave: &[Instance],
        plan: &[Instance],
    ) -> Result<(Vec<Instance>, Option<String>), PipelineError> {
        let mut ids: BTreeMap<Instance, String> = BTreeMap::new();
        let first_job = self.jobs.len();
        for &inst in wave {
            let deps: Vec<Instance> =
                dependencies(inst, &self.setup.cfg, plan).into_iter().filter(|d| ids.contains_key(d)).collect();
            let dep_ids: Vec<String> = deps.iter().map(|d| ids[d].clone()).collect();
            // A fragment left from an earlier attempt must not be taken for this job's.
            let frag = self.run_dir.join(fragment::fragment_rel(&inst.name()));
            crate::fsx::remove_file(&self.run_dir, &frag).map_err(LedgerError::from)?;
            let id = self.sbatch(inst, &dep_ids)?;
            let log = self.run_dir.join(LOGS_DIR).join(format!("{}.{id}.log", inst.name()));
            let after = if deps.is_empty() {
                String::new()
            } else {
                format!(" after {}", deps.iter().map(Instance::name).collect::<Vec<_>>().join(", "))
            };
            self.progress.note(&format!("{}: submitted as Slurm job {id}{after}", inst.name()));
            ids.insert(inst, id.clone());
            self.jobs.push(Job {
                instance: inst.name(),
                job_id: id,
                depends_on: deps.iter().map(Instance::name).collect(),
                log: log.display().to_string(),
                started: false,
                ended: None,
                completed: false,
            });
            self.write_jobs_file()?;
        }
        let poll = std::time::Duration::from_secs_f64(self.slurm.poll_seconds);
        let mut failure: Option<String> = None;
        loop {
            let mut open = 0;
            for k in first_job..self.jobs.len() {
                if self.jobs[k].ended.is_some() {
                    continue;
                }
                let st = job_state(&self.jobs[k].job_id).map_err(err)?;
                match st {
                    JobState::Queued => open += 1,
                    JobState::Running => {
                        open += 1;
                        if !self.jobs[k].started {
                            self.jobs[k].started = true;
                            self.progress.stage_started(&format!(
                                "{} (Slurm job {})",
                                self.jobs[k].instance, self.jobs[k].job_id
                            ));
                        }
                    }
                    JobState::Ended { state, exit } => {
                        let job = &mut self.jobs[k];
                        job.ended = Some(state.clone());
                        let frag_ok = self.run_dir.join(fragment::fragment_rel(&job.instance)).is_file();
                        job.completed = state == "COMPLETED" || (state.starts_with("UNKNOWN") && frag_ok);
                        if job.completed {
                            self.progress.note(&format!("{}: Slurm job {} completed", job.instance, job.job_id));
                        } else {
                            let log = job.log.clone();
                            let line = format!(
                                "Slurm job {} ({}) ended {state} (exit code {exit}); its log: {log}",
                                job.job_id, job.instance
                            );
                            self.progress.note(&line);
                            let cancelled = self.cancel_dependents(k);
                            if failure.is_none() {
                                failure = Some(if cancelled.is_empty() {
                                    line
                                } else {
                                    format!("{line}; its dependents were stopped: {}", cancelled.join(", "))
                                });
                            }
                        }
                        self.write_jobs_file()?;
                    }
                }
            }
            if open == 0 {
                break;
            }
            std::thread::sleep(poll);
        }
        let done = self.jobs[first_job..]
            .iter()
            .filter(|j| j.completed)
            .filter_map(|j| Instance::parse(&j.instance).ok())
            .collect();
        Ok((done, failure))
    }

    /// Cancels every job that (transitively) waits for job `k`; returns their instances.
    fn cancel_dependents(&mut self, k: usize) -> Vec<String> {
        let mut stopped: BTreeSet<String> = BTreeSet::from([self.jobs[k].instance.clone()]);
        let mut out = Vec::new();
        let mut changed = true;
        while changed {
            changed = false;
            for j in &self.jobs {
                if !stopped.contains(&j.instance) && j.depends_on.iter().any(|d| stopped.contains(d)) {
                    stopped.insert(j.instance.clone());
                    changed = true;
                    if j.ended.is_none() {
                        let _ = run_cmd("scancel", std::slice::from_ref(&j.job_id));
                        out.push(format!("{} (job {})", j.instance, j.job_id));
                    }
                }
            }
        }
        out
    }
}

/// Joins the fragments of `done` (any order) into the ledger in the plan's order.
fn join(
    writer: &mut LedgerWriter,
    run_dir: &Path,
    plan: &[Instance],
    done: &[Instance],
    progress: &dyn Progress,
    summary: &mut RunSummary,
) -> Result<(), PipelineError> {
    for inst in plan.iter().filter(|i| done.contains(i)) {
        let entry = fragment::join_into(writer, run_dir, &inst.name())?;
        progress.stage_finished(&inst.name(), &entry);
        summary.ran(*inst, &entry);
    }
    Ok(())
}

/// A fragment left by a job whose driver stopped before joining it: joined if it is valid and would
/// resume (same parameters, seeds, code, inputs and outputs as now) and every run-directory file it
/// read was recorded by an entry already in the ledger.
fn adoptable(writer: &LedgerWriter, setup: &Setup, inst: Instance) -> Option<crate::ledger::fragment::CheckedFragment> {
    let header = writer.ledger().header.clone();
    let checked = read_checked(&setup.roots.run.clone()?, &inst.name(), &header).ok()?;
    let spec = stages::spec(inst, &setup.cfg);
    let e = checked.fragment.entry.clone();
    pipeline::resumable(std::slice::from_ref(&e), inst.stage, &spec, setup)?;
    let recorded: BTreeSet<(String, String)> = writer
        .ledger()
        .entries
        .iter()
        .flat_map(|x| x.outputs.iter().filter(|r| r.root == Root::Run).map(|r| (r.path.clone(), r.sha256.clone())))
        .collect();
    e.inputs
        .iter()
        .filter(|r| r.root == Root::Run)
        .all(|r| recorded.contains(&(r.path.clone(), r.sha256.clone())))
        .then_some(checked)
}

/// `hsx run --executor slurm`.
pub fn run(opts: &RunOptions, progress: &dyn Progress) -> Result<RunSummary, PipelineError> {
    let cfg = Config::load(&opts.config_path)?;
    let selected = pipeline::selected(&cfg, opts.only.as_deref(), opts.from.as_deref())?;
    let plan = Instance::plan(cfg.experiment.seed, &cfg.experiment.replicate_seeds());
    let key = SigningKeyFile::load(&opts.key_path).map_err(LedgerError::from)?;
    let run_dir = pipeline::run_dir_of(opts, &cfg);
    let mut writer = LedgerWriter::open(
        &opts.ledger_path,
        &cfg.experiment.id,
        &crate::ledger::Locations::new(run_dir.clone(), &opts.workspace),
        key,
    )?;
    let slurm = cfg.slurm.clone().unwrap_or_default();
    let mut setup = Setup::place(cfg, &opts.workspace, opts.data_mirror.as_deref(), run_dir.clone())?;
    setup.self_contained = opts.out.is_some();
    let _report_dir = setup.claim_report_dir(&writer)?;
    let mut summary = RunSummary {
        ledger: opts.ledger_path.display().to_string(),
        run_dir: run_dir.display().to_string(),
        stages: Vec::new(),
    };

    // Jobs of an earlier driver still in the queue would write the same fragments.
    // Read as untrusted input: a FIFO or a link in the state directory is refused, never waited on while
    // the ledger is locked.
    let jobs_file = match crate::fsx::read(&run_dir, &run_dir.join(JOBS_FILE), crate::fsx::Limit::SLURM_STATE) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(LedgerError::from(e).into()),
    };
    if let Some(bytes) = jobs_file {
        let old: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        for j in old["jobs"].as_array().into_iter().flatten() {
            let (Some(id), Some(inst)) = (j["job_id"].as_str(), j["instance"].as_str()) else { continue };
            if id.chars().all(|c| c.is_ascii_digit())
                && matches!(job_state(id), Ok(JobState::Queued | JobState::Running))
            {
                return Err(err(format!(
                    "Slurm job {id} ({inst}) of an earlier `hsx run` on this run directory is still queued or running; wait for it, or `scancel {id}`, then run again"
                )));
            }
        }
    }

    // Resume: what the ledger (or a fragment finished after its driver stopped) already holds. The
    // report is decided after the other entries are in.
    let mut wave: Vec<Instance> = Vec::new();
    for &(inst, forced) in selected.iter().filter(|(i, _)| i.stage != Stage::Report) {
        if !forced {
            let spec = stages::spec(inst, &setup.cfg);
            if let Some(e) = pipeline::resumable(writer.ledger().entries.as_slice(), inst.stage, &spec, &setup) {
                summary.skipped(progress, inst, e);
                continue;
            }
            if let Some(c) = adoptable(&writer, &setup, inst) {
                let entry = writer.append(fragment::joined_entry(c))?;
                progress.stage_skipped(
                    &inst.name(),
                    &format!(
                        "joined its job's fragment, finished after an earlier driver stopped, as entry {}",
                        entry.seq
                    ),
                );
                summary.ran(inst, &entry);
                continue;
            }
        }
        wave.push(inst);
    }
    let mut driver = Driver { opts, progress, setup, run_dir: run_dir.clone(), slurm, jobs: Vec::new() };
    crate::fsx::create_dirs(&run_dir, &run_dir.join(LOGS_DIR)).map_err(LedgerError::from)?;
    if !wave.is_empty() {
        let (done, failure) = driver.submit_and_wait(&wave, &plan)?;
        join(&mut writer, &run_dir, &plan, &done, progress, &mut summary)?;
        if let Some(f) = failure {
            return Err(err(format!(
                "{f}. The ledger holds the {} instances that completed; run the same command again to resume",
                done.len()
            )));
        }
    }
    // The report renders the ledger: it runs once every other entry is in, unless it still holds.
    let report_selected = selected.iter().find(|(i, _)| i.stage == Stage::Report);
    if let Some(&(inst, forced)) = report_selected {
        let spec = stages::spec(inst, &driver.setup.cfg);
        if !forced {
            if let Some(e) = pipeline::resumable(writer.ledger().entries.as_slice(), inst.stage, &spec, &driver.setup) {
                summary.skipped(progress, inst, e);
                return Ok(summary);
            }
        }
        let (done, failure) = driver.submit_and_wait(&[inst], &plan)?;
        join(&mut writer, &run_dir, &plan, &done, progress, &mut summary)?;
        if let Some(f) = failure {
            return Err(err(format!("{f}; run the same command again to resume")));
        }
    }
    Ok(summary)
}

/// `hsx stage --instance NAME`: what one Slurm job runs. Runs the instance and writes its entry into
/// its fragment, bound to the ledger at `opts.ledger_path` (read, never written).
pub fn run_job(opts: &RunOptions, instance: &str, progress: &dyn Progress) -> Result<Entry, PipelineError> {
    let _one_at_a_time = pipeline::PROCESS_RUN.lock().unwrap_or_else(|p| p.into_inner());
    let cfg = Config::load(&opts.config_path)?;
    let inst = Instance::parse(instance)?;
    if !Instance::plan(cfg.experiment.seed, &cfg.experiment.replicate_seeds()).contains(&inst) {
        return Err(PipelineError::Usage(format!("stage {inst} is not in this experiment's plan")));
    }
    let key = SigningKeyFile::load(&opts.key_path).map_err(LedgerError::from)?;
    let ledger = crate::ledger::store::read(&opts.ledger_path)?;
    let run_dir = pipeline::run_dir_of(opts, &cfg);
    let mut setup = Setup::new(cfg, &opts.workspace, opts.data_mirror.as_deref(), run_dir.clone())?;
    setup.self_contained = opts.out.is_some();
    let mut writer = FragmentWriter::new(&run_dir, &inst.name(), ledger.header, key)?;
    let spec = stages::spec(inst, &setup.cfg);
    setup.execute(inst, spec, &mut writer, &opts.ledger_path, progress, Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::Model;

    fn cfg(replicates: &[u64]) -> Config {
        let mut c = Config::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/smoke.toml"))).unwrap();
        c.experiment.replicates = Some(replicates.to_vec());
        c
    }

    #[test]
    fn the_graph_follows_the_inputs_and_keeps_the_test_split_for_after_training() {
        let c = cfg(&[42, 43]);
        let plan = Instance::plan(42, &[42, 43]);
        let names = |i: &str| -> Vec<String> {
            dependencies(Instance::parse(i).unwrap(), &c, &plan).iter().map(Instance::name).collect()
        };
        assert!(names("prepare").is_empty());
        assert_eq!(names("preregister"), ["prepare"]);
        assert_eq!(names("train-A@43"), ["prepare", "preregister", "base-model"]);
        assert_eq!(names("train-B"), ["prepare", "preregister", "base-model", "contaminate"]);
        assert!(names("evaluate-A@43").contains(&"train-A@43".to_owned()));
        // Every evaluation waits for every training, model 0's too.
        for ev in ["evaluate-0", "evaluate-B@43"] {
            let d = names(ev);
            for t in plan.iter().filter(|i| matches!(i.stage, Stage::Train(_))) {
                assert!(d.contains(&t.name()), "{ev} does not wait for {t}");
            }
        }
        let cmp = names("compare");
        for m in Model::ALL {
            assert!(cmp.contains(&Stage::Evaluate(m).name().to_owned()));
        }
        assert!(cmp.contains(&"evaluate-C@43".to_owned()));
        // Every dependency comes earlier in the plan: submission in plan order always knows its ids.
        for (k, i) in plan.iter().enumerate() {
            for d in dependencies(*i, &c, &plan) {
                assert!(plan.iter().position(|p| *p == d).unwrap() < k, "{i} depends on the later {d}");
            }
        }
    }

    #[test]
    fn job_arguments_are_quoted_for_the_shell() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
