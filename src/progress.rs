//! Progress reporting, so stages never print. The CLI implements it with indicatif / JSON lines.
use crate::ledger::Entry;
use crate::model::train::{NoProgress, TrainProgress};

pub trait Progress {
    fn stage_started(&self, stage: &str);
    fn stage_skipped(&self, stage: &str, reason: &str);
    fn stage_finished(&self, stage: &str, entry: &Entry);
    fn note(&self, message: &str);
    /// Progress of a training or generation loop inside `stage`.
    fn trainer(&self, _stage: &str) -> Box<dyn TrainProgress + '_> {
        Box::new(NoProgress)
    }
}

/// A `Progress` that discards everything (tests, library callers).
pub struct Quiet;
impl Progress for Quiet {
    fn stage_started(&self, _: &str) {}
    fn stage_skipped(&self, _: &str, _: &str) {}
    fn stage_finished(&self, _: &str, _: &Entry) {}
    fn note(&self, _: &str) {}
}
