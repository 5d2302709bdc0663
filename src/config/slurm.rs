//! Replicates (`experiment.replicates`) and the Slurm executor's settings (`[slurm]`).
//!
//! Replicates: the training seeds. Each fine-tuned model is trained and evaluated once per seed; the
//! shared stages (prepare, pre-registration, base model, contamination, generator, synthesis, model 0's
//! evaluation) run once. The replicate whose seed is the master seed keeps the plain stage names
//! (`train-A`); seed `s` runs as `train-A@s`, with the stage seed `train-A` would have under master
//! seed `s`.
//!
//! `[slurm]`: what each stage instance's job asks for. Every key is optional; a missing one is not
//! passed to `sbatch`, so the cluster's defaults apply (CPUs default to `runtime.threads`).
//!
//! ```toml
//! [slurm]
//! partition = "gpu"          # sbatch --partition
//! account = "my-lab"         # sbatch --account
//! poll_seconds = 2.0         # how often the driver asks Slurm about its jobs
//! [slurm.default]            # every stage instance
//! cpus = 2                   # --cpus-per-task
//! mem_mb = 8000              # --mem
//! time_minutes = 60          # --time
//! gpus = 0                   # --gres=gpu:N (when > 0)
//! [slurm.stages.train]       # by family (train, evaluate), stage (train-A) or instance (train-A@43)
//! gpus = 1
//! time_minutes = 240
//! ```
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::Experiment;

impl Experiment {
    /// The training seeds in the configured order (the master seed alone when none are configured).
    pub fn replicate_seeds(&self) -> Vec<u64> {
        self.replicates.clone().unwrap_or_else(|| vec![self.seed])
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmCfg {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default = "default_poll")]
    pub poll_seconds: f64,
    #[serde(default)]
    pub default: Resources,
    /// Per family (`train`, `evaluate`), stage (`train-A`) or instance (`train-A@43`); the most specific wins,
    /// key by key, over `default`.
    #[serde(default)]
    pub stages: BTreeMap<String, Resources>,
}

impl Default for SlurmCfg {
    fn default() -> Self {
        SlurmCfg {
            partition: None,
            account: None,
            poll_seconds: default_poll(),
            default: Resources::default(),
            stages: BTreeMap::new(),
        }
    }
}

fn default_poll() -> f64 {
    2.0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_minutes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
}

impl Resources {
    fn over(&self, base: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.or(base.cpus),
            mem_mb: self.mem_mb.or(base.mem_mb),
            time_minutes: self.time_minutes.or(base.time_minutes),
            gpus: self.gpus.or(base.gpus),
        }
    }
}

impl SlurmCfg {
    /// The resources of the instance named `instance` of stage `stage` in family `family`.
    pub fn resources(&self, family: &str, stage: &str, instance: &str) -> Resources {
        let mut r = self.default.clone();
        for key in [family, stage, instance] {
            if let Some(s) = self.stages.get(key) {
                r = s.over(&r);
            }
        }
        r
    }

    /// Checks values; on failure the dotted key and what is allowed.
    pub fn validate(&self, known: &dyn Fn(&str) -> bool) -> Result<(), (String, String)> {
        if !(self.poll_seconds.is_finite() && (0.1..=600.0).contains(&self.poll_seconds)) {
            return Err((
                "slurm.poll_seconds".into(),
                format!("must be between 0.1 and 600, got {}", self.poll_seconds),
            ));
        }
        for (k, v) in [("partition", &self.partition), ("account", &self.account)] {
            if let Some(v) = v {
                if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                    return Err((format!("slurm.{k}"), format!("must be letters, digits, - _ . only, got {v:?}")));
                }
            }
        }
        for (name, r) in std::iter::once(("default".to_owned(), &self.default))
            .chain(self.stages.iter().map(|(k, v)| (format!("stages.\"{k}\""), v)))
        {
            if name != "default" && !known(&name["stages.\"".len()..name.len() - 1]) {
                return Err((
                    format!("slurm.{name}"),
                    "is not a stage family (train, evaluate), stage or stage instance of this experiment".into(),
                ));
            }
            if r.cpus == Some(0) {
                return Err((format!("slurm.{name}.cpus"), "must be at least 1".into()));
            }
            if r.mem_mb == Some(0) || r.time_minutes == Some(0) {
                return Err((format!("slurm.{name}"), "mem_mb and time_minutes must be at least 1 when given".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smoke_with(experiment_extra: &str, tail: &str) -> Result<crate::config::Config, String> {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/smoke.toml")).unwrap();
        let text = text.replacen("seed = 42\n", &format!("seed = 42\n{experiment_extra}\n"), 1) + tail;
        crate::config::Config::from_toml_str(&text, std::path::Path::new("x.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn replicates_are_checked_and_named_by_their_key() {
        assert_eq!(smoke_with("", "").unwrap().experiment.replicate_seeds(), [42]);
        assert_eq!(smoke_with("replicates = [42, 7]", "").unwrap().experiment.replicate_seeds(), [42, 7]);
        for (bad, why) in
            [("replicates = []", "1 to"), ("replicates = [42, 7, 7]", "twice"), ("replicates = [1, 2]", "master seed")]
        {
            let e = smoke_with(bad, "").unwrap_err();
            assert!(e.contains("experiment.replicates") && e.contains(why), "{bad}: {e}");
        }
        let e = smoke_with("", "\n[slurm.stages.trian]\ncpus = 1\n").unwrap_err();
        assert!(e.contains("slurm.stages.\"trian\""), "{e}");
        assert!(smoke_with("replicates = [42, 7]", "\n[slurm.stages.\"train-A@7\"]\ngpus = 1\n").is_ok());
        let e = smoke_with("", "\n[slurm.stages.\"train-A@7\"]\ngpus = 1\n").unwrap_err();
        assert!(e.contains("train-A@7"), "an instance of a seed the experiment does not have: {e}");
    }

    #[test]
    fn the_most_specific_resources_win_key_by_key() {
        let cfg: SlurmCfg = toml::from_str(
            "[default]\ncpus = 2\nmem_mb = 1000\n[stages.train]\ngpus = 1\n[stages.\"train-A@43\"]\nmem_mb = 3000\n",
        )
        .unwrap();
        assert_eq!(
            cfg.resources("train", "train-A", "train-A@43"),
            Resources { cpus: Some(2), mem_mb: Some(3000), time_minutes: None, gpus: Some(1) }
        );
        assert_eq!(
            cfg.resources("train", "train-B", "train-B"),
            Resources { cpus: Some(2), mem_mb: Some(1000), time_minutes: None, gpus: Some(1) }
        );
        assert_eq!(cfg.resources("prepare", "prepare", "prepare").gpus, None);
        assert!(cfg.validate(&|k| ["train", "train-A@43"].contains(&k)).is_ok());
        let e = cfg.validate(&|k| k == "train").unwrap_err();
        assert_eq!(e.0, "slurm.stages.\"train-A@43\"");
        let bad: SlurmCfg = toml::from_str("partition = \"a b\"").unwrap();
        assert_eq!(bad.validate(&|_| true).unwrap_err().0, "slurm.partition");
    }
}
