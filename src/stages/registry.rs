//! The experiment's stages, by name and in order: the one list that the executor, reproduce, the
//! report and the CLI iterate. It imports nothing from the rest of hsx, so every room may use it.
//!
//! Adding a stage: one variant here (and its place in [`Stage::ALL`]), one file in `src/stages/`, and
//! one arm in each `match` the compiler then points at (`stages::spec` and `stages::run`).
use std::fmt;

/// The three models of the experiment, one per training set.
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
    Evaluate(Arm),
    Compare,
    Report,
}

impl Stage {
    /// Every stage in execution order (each reads only what earlier ones wrote).
    pub const ALL: [Stage; 14] = [
        Stage::Prepare,
        Stage::Preregister,
        Stage::BaseModel,
        Stage::Contaminate,
        Stage::Generator,
        Stage::Synthesize,
        Stage::Train(Arm::A),
        Stage::Train(Arm::B),
        Stage::Train(Arm::C),
        Stage::Evaluate(Arm::A),
        Stage::Evaluate(Arm::B),
        Stage::Evaluate(Arm::C),
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
            Stage::Evaluate(Arm::A) => "evaluate-A",
            Stage::Evaluate(Arm::B) => "evaluate-B",
            Stage::Evaluate(Arm::C) => "evaluate-C",
            Stage::Compare => "compare",
            Stage::Report => "report",
        }
    }

    /// The stage's key in the report template's context (`stages.train_A`): the name with `_` for `-`.
    pub fn template_key(self) -> String {
        self.name().replace('-', "_")
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

/// `(name, stage)` for every stage, in order.
pub const fn table() -> [(&'static str, Stage); 14] {
    let mut out = [("", Stage::Prepare); 14];
    let mut i = 0;
    while i < 14 {
        out[i] = (Stage::ALL[i].name(), Stage::ALL[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert!(Stage::ALL.contains(&Stage::Train(a)) && Stage::ALL.contains(&Stage::Evaluate(a)));
            assert!(Stage::Train(a).index() < Stage::Evaluate(a).index());
            assert_eq!(Arm::from_letter(a.letter()), Some(a));
        }
    }
}
