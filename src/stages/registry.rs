//! The experiment's stages, by name and in order: the one list that the executor, reproduce, the
//! report and the CLI iterate. It imports nothing from the rest of hsx, so every room may use it.
//!
//! Adding a stage: one variant here (and its place in [`Stage::ALL`]), one file in `src/stages/`, and
//! one arm in each `match` the compiler then points at (`stages::spec` and `stages::run`).
//!
//! Two lists of models: [`Arm`], the three fine-tuned models (one per training set, each a `train-X`
//! stage), and [`Model`], every model scored on the test split — the arms and model 0, the base model
//! itself, zero-shot, with no adapter (the model that wrote the contaminated set's AI answers).
use std::fmt;

/// The three fine-tuned models of the experiment, one per training set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arm {
    /// Human CosmosQA answers.
    A,
    /// AI-contaminated answers.
    B,
    /// Filtered synthetic data generated from the human seed.
    C,
}

impl Arm {
    pub const ALL: [Arm; 3] = [Arm::A, Arm::B, Arm::C];

    /// The model's letter, as stage names, ledger metrics and the report write it.
    pub const fn letter(self) -> &'static str {
        match self {
            Arm::A => "A",
            Arm::B => "B",
            Arm::C => "C",
        }
    }

    /// What the model was trained on, for plot legends.
    pub const fn data(self) -> &'static str {
        match self {
            Arm::A => "human",
            Arm::B => "AI-contaminated",
            Arm::C => "synthetic",
        }
    }

    pub fn from_letter(s: &str) -> Option<Arm> {
        Arm::ALL.into_iter().find(|a| a.letter() == s)
    }
}

impl fmt::Display for Arm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.letter())
    }
}

/// A model scored on the human test split (an `evaluate-X` stage): the base model as it is, or one of
/// the fine-tuned arms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Model {
    /// Model 0: the base model, zero-shot, no LoRA adapter. It wrote the contaminated set's AI answers,
    /// and with a pretrained base (flan-t5-base) its score shows what the base already knows.
    Base,
    /// A LoRA fine-tune of the base model (A, B or C).
    Arm(Arm),
}

impl Model {
    /// Every evaluated model, in the order the report lists them (model 0 first).
    pub const ALL: [Model; 4] = [Model::Base, Model::Arm(Arm::A), Model::Arm(Arm::B), Model::Arm(Arm::C)];

    /// The model's label, as stage names, ledger metrics and the report write it: `0`, `A`, `B`, `C`.
    pub const fn label(self) -> &'static str {
        match self {
            Model::Base => "0",
            Model::Arm(a) => a.letter(),
        }
    }

    /// What the model was trained on beyond the base, for tables and plot legends.
    pub const fn data(self) -> &'static str {
        match self {
            Model::Base => "base model, zero-shot",
            Model::Arm(a) => a.data(),
        }
    }

    /// The stage whose adapter the model loads (`train-X`), or `None` for the base model.
    pub const fn adapter_stage(self) -> Option<Stage> {
        match self {
            Model::Base => None,
            Model::Arm(a) => Some(Stage::Train(a)),
        }
    }

    pub fn from_label(s: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.label() == s)
    }
}

impl From<Arm> for Model {
    fn from(a: Arm) -> Self {
        Model::Arm(a)
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One stage of the experiment. Each is one file in `src/stages/` and one signed ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    Prepare,
    Preregister,
    BaseModel,
    Contaminate,
    Generator,
    Synthesize,
    Train(Arm),
    Evaluate(Model),
    Compare,
    Report,
}

impl Stage {
    /// Every stage in execution order (each reads only what earlier ones wrote). `evaluate-0` needs only
    /// the base model, but runs with the other evaluations, after every model is trained: the test split
    /// is read by no model before all training is done, and `--from evaluate-0` re-scores every model.
    pub const ALL: [Stage; 15] = [
        Stage::Prepare,
        Stage::Preregister,
        Stage::BaseModel,
        Stage::Contaminate,
        Stage::Generator,
        Stage::Synthesize,
        Stage::Train(Arm::A),
        Stage::Train(Arm::B),
        Stage::Train(Arm::C),
        Stage::Evaluate(Model::Base),
        Stage::Evaluate(Model::Arm(Arm::A)),
        Stage::Evaluate(Model::Arm(Arm::B)),
        Stage::Evaluate(Model::Arm(Arm::C)),
        Stage::Compare,
        Stage::Report,
    ];

    /// The name in ledger entries, on the command line (`--only`, `--from`) and in the run directory.
    pub const fn name(self) -> &'static str {
        match self {
            Stage::Prepare => "prepare",
            Stage::Preregister => "preregister",
            Stage::BaseModel => "base-model",
            Stage::Contaminate => "contaminate",
            Stage::Generator => "generator",
            Stage::Synthesize => "synthesize",
            Stage::Train(Arm::A) => "train-A",
            Stage::Train(Arm::B) => "train-B",
            Stage::Train(Arm::C) => "train-C",
            Stage::Evaluate(Model::Base) => "evaluate-0",
            Stage::Evaluate(Model::Arm(Arm::A)) => "evaluate-A",
            Stage::Evaluate(Model::Arm(Arm::B)) => "evaluate-B",
            Stage::Evaluate(Model::Arm(Arm::C)) => "evaluate-C",
            Stage::Compare => "compare",
            Stage::Report => "report",
        }
    }

    /// The stage's key in the report template's context (`stages.train_A`): the name with `_` for `-`.
    pub fn template_key(self) -> String {
        self.name().replace('-', "_")
    }

    /// Whether the stage runs once per training seed (`experiment.replicates`): the trainings and the
    /// evaluations of the trained models. Model 0 (the base model, zero-shot) is not trained, so it is
    /// evaluated once.
    pub const fn replicated(self) -> bool {
        matches!(self, Stage::Train(_) | Stage::Evaluate(Model::Arm(_)))
    }

    /// Position in [`Stage::ALL`].
    pub fn index(self) -> usize {
        Stage::ALL.iter().position(|s| *s == self).expect("every stage is listed in Stage::ALL")
    }

    /// The stage called `name`, or an error listing the stages.
    pub fn parse(name: &str) -> Result<Stage, UnknownStage> {
        Stage::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| UnknownStage(name.to_owned()))
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Stage {
    type Err = UnknownStage;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::parse(s)
    }
}

/// A stage name that is not in [`Stage::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stage {0:?}; stages are: {names}", names = Stage::ALL.map(Stage::name).join(", "))]
pub struct UnknownStage(pub String);

/// One run of a stage in an experiment: the stage and, for the stages run once per training seed
/// (`train-X` and `evaluate-A/B/C`, see [`Stage::replicated`]), the replicate's seed when it is not the
/// master seed. Its [`name`](Instance::name) names its ledger entry, its folder of the run directory and
/// its Slurm job: `train-A` for the master seed's replicate (the name a one-seed run has always used),
/// `train-A@43` for seed 43.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Instance {
    pub stage: Stage,
    /// `Some(seed)`: a replicate whose training seed is not the master seed.
    pub replicate: Option<u64>,
}

impl From<Stage> for Instance {
    fn from(stage: Stage) -> Self {
        Instance { stage, replicate: None }
    }
}

impl Instance {
    /// The instance of `stage` for training seed `seed` in an experiment whose master seed is `master`.
    pub fn of(stage: Stage, seed: u64, master: u64) -> Instance {
        Instance { stage, replicate: (stage.replicated() && seed != master).then_some(seed) }
    }

    pub fn name(&self) -> String {
        match self.replicate {
            None => self.stage.name().to_owned(),
            Some(s) => format!("{}@{s}", self.stage.name()),
        }
    }

    /// The training seed of this instance: its replicate's, or the master seed.
    pub fn training_seed(&self, master: u64) -> u64 {
        self.replicate.unwrap_or(master)
    }

    /// `train-A`, `train-A@43`: a stage name, and for a replicated stage an optional `@seed`.
    pub fn parse(name: &str) -> Result<Instance, UnknownStage> {
        match name.split_once('@') {
            None => Stage::parse(name).map(Instance::from),
            Some((base, seed)) => {
                let stage = Stage::parse(base)?;
                let seed: u64 = seed.parse().map_err(|_| UnknownStage(name.to_owned()))?;
                if !stage.replicated() || seed.to_string() != name[base.len() + 1..] {
                    return Err(UnknownStage(name.to_owned()));
                }
                Ok(Instance { stage, replicate: Some(seed) })
            }
        }
    }

    /// Every instance an experiment runs, in the order the local executor runs them and the ledger
    /// records them: [`Stage::ALL`]'s order, each replicated stage once per seed in `seeds`' order.
    pub fn plan(master: u64, seeds: &[u64]) -> Vec<Instance> {
        let mut out = Vec::new();
        for stage in Stage::ALL {
            if stage.replicated() {
                out.extend(seeds.iter().map(|&s| Instance::of(stage, s, master)));
            } else {
                out.push(Instance::from(stage));
            }
        }
        out
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// `(name, stage)` for every stage, in order.
pub const fn table() -> [(&'static str, Stage); Stage::ALL.len()] {
    let mut out = [("", Stage::Prepare); Stage::ALL.len()];
    let mut i = 0;
    while i < Stage::ALL.len() {
        out[i] = (Stage::ALL[i].name(), Stage::ALL[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_name_their_replicate_and_parse_back() {
        let plan = Instance::plan(42, &[42, 43]);
        let names: Vec<String> = plan.iter().map(Instance::name).collect();
        assert_eq!(names.len(), Stage::ALL.len() + 6);
        assert!(names.contains(&"train-A".to_owned()) && names.contains(&"train-A@43".to_owned()));
        assert!(names.contains(&"evaluate-C@43".to_owned()) && !names.iter().any(|n| n.starts_with("evaluate-0@")));
        for i in &plan {
            assert_eq!(Instance::parse(&i.name()), Ok(*i));
        }
        // One seed, the master's: exactly the stages, with their plain names.
        assert_eq!(
            Instance::plan(42, &[42]).iter().map(Instance::name).collect::<Vec<_>>(),
            Stage::ALL.map(|s| s.name().to_owned())
        );
        // Seeds other than the master's only.
        let other = Instance::plan(42, &[1, 2]);
        assert!(other.iter().all(|i| i.stage.replicated() == i.replicate.is_some()));
        for bad in ["prepare@43", "evaluate-0@1", "train-A@", "train-A@x", "train-A@+4", "train-A@04", "train-D@4"] {
            assert!(Instance::parse(bad).is_err(), "{bad}");
        }
        // Every instance comes after the instances of the stages before it.
        for w in plan.windows(2) {
            assert!(w[0].stage.index() <= w[1].stage.index());
        }
    }

    #[test]
    fn names_round_trip_and_are_unique() {
        for s in Stage::ALL {
            assert_eq!(Stage::parse(s.name()), Ok(s));
            assert_eq!(Stage::ALL[s.index()], s);
        }
        let mut names: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Stage::ALL.len());
        let e = Stage::parse("train-D").unwrap_err().to_string();
        assert!(e.contains("train-D") && e.contains("evaluate-C"), "{e}");
    }

    #[test]
    fn every_arm_has_a_train_and_an_evaluate_stage() {
        for a in Arm::ALL {
            let e = Stage::Evaluate(Model::Arm(a));
            assert!(Stage::ALL.contains(&Stage::Train(a)) && Stage::ALL.contains(&e));
            assert!(Stage::Train(a).index() < e.index());
            assert_eq!(Arm::from_letter(a.letter()), Some(a));
            assert_eq!(Model::from(a).adapter_stage(), Some(Stage::Train(a)));
            assert_eq!(Model::from(a).label(), a.letter());
        }
    }

    #[test]
    fn model_0_is_the_base_model_evaluated_with_no_adapter_after_every_model_is_trained() {
        let e = Stage::Evaluate(Model::Base);
        assert_eq!(e.name(), "evaluate-0");
        assert_eq!(Stage::parse("evaluate-0"), Ok(e));
        assert_eq!(e.template_key(), "evaluate_0");
        assert_eq!(Model::Base.adapter_stage(), None);
        assert_eq!(Model::from_label("0"), Some(Model::Base));
        // After the base model and the pre-registration, and after every training stage: no model
        // reads the test split before all training is done.
        assert!(Stage::BaseModel.index() < e.index() && Stage::Preregister.index() < e.index());
        assert!(Arm::ALL.iter().all(|&a| Stage::Train(a).index() < e.index()));
        // First of the evaluations, all of which precede compare.
        let evals: Vec<Stage> = Stage::ALL.into_iter().filter(|s| matches!(s, Stage::Evaluate(_))).collect();
        assert_eq!(evals, Model::ALL.map(Stage::Evaluate));
        assert!(evals.iter().all(|s| s.index() < Stage::Compare.index()));
        // Every evaluated model has exactly one evaluate stage, and the labels are distinct.
        let mut labels: Vec<&str> = Model::ALL.iter().map(|m| m.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), Model::ALL.len());
    }
}
