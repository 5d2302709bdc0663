//! Each ledger entry's metrics read as its stage's typed record (and written back as the JSON the
//! template reads): a renamed or mistyped key is a read error naming the entry and the key, never a blank.
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ReportError;
use crate::ledger::Entry;
use crate::model::usage::Resources;
use crate::stages::base_model::BaseModelMetrics;
use crate::stages::compare::Comparison;
use crate::stages::contaminate::ContaminateMetrics;
use crate::stages::evaluate::EvaluateMetrics;
use crate::stages::generator::GeneratorMetrics;
use crate::stages::prepare::PrepareMetrics;
use crate::stages::preregister::PreregisterMetrics;
use crate::stages::registry::{Instance, Stage};
use crate::stages::synthesize::SynthesizeMetrics;
use crate::stages::train::TrainMetrics;

/// The report stage's entry metrics: how many files it wrote, and where REPORT.md is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportMetrics {
    pub files: usize,
    pub report: String,
}

/// An entry's metrics read as its stage's typed record `T`, with the executor's `resources` (absent from
/// older entries) split off first. An error names the entry and the key that does not read.
pub fn read_record<T: DeserializeOwned>(e: &Entry) -> Result<(T, Option<Resources>), ReportError> {
    let err = |at: String, message: String| ReportError::Record {
        seq: e.seq,
        stage: e.stage.clone(),
        message: format!("at `{at}`: {message}"),
    };
    let mut metrics = e.metrics.clone();
    let resources = metrics.as_object_mut().and_then(|m| m.remove("resources"));
    let record =
        serde_path_to_error::deserialize(metrics).map_err(|x| err(x.path().to_string(), x.inner().to_string()))?;
    let resources = resources
        .map(serde_path_to_error::deserialize)
        .transpose()
        .map_err(|x| err(format!("resources.{}", x.path()), x.inner().to_string()))?;
    Ok((record, resources))
}

/// `record` (and `resources`) as the JSON the template reads: exactly the fields the record declares, so
/// a key the template names and the record lacks is a render error, never a blank.
fn record_value<T: Serialize>(e: &Entry, record: &T, resources: Option<Resources>) -> Result<Value, ReportError> {
    let err = |x: serde_json::Error| ReportError::Record { seq: e.seq, stage: e.stage.clone(), message: x.to_string() };
    let mut v = serde_json::to_value(record).map_err(err)?;
    if let (Some(r), Some(m)) = (resources, v.as_object_mut()) {
        m.insert("resources".into(), serde_json::to_value(r).map_err(err)?);
    }
    Ok(v)
}

fn typed<T: DeserializeOwned + Serialize>(e: &Entry) -> Result<Value, ReportError> {
    let (record, resources) = read_record::<T>(e)?;
    record_value(e, &record, resources)
}

/// An entry's metrics read as the typed record of its stage, and written back as JSON: what the report
/// renders from. Every entry of a ledger hsx wrote reads back unchanged (older entries included: the
/// fields they lack are options).
pub fn entry_record(e: &Entry) -> Result<Value, ReportError> {
    let stage = Instance::parse(&e.stage)
        .map_err(|x| ReportError::Record { seq: e.seq, stage: e.stage.clone(), message: x.to_string() })?
        .stage;
    match stage {
        Stage::Prepare => typed::<PrepareMetrics>(e),
        Stage::Preregister => typed::<PreregisterMetrics>(e),
        Stage::BaseModel => typed::<BaseModelMetrics>(e),
        Stage::Contaminate => typed::<ContaminateMetrics>(e),
        Stage::Generator => typed::<GeneratorMetrics>(e),
        Stage::Synthesize => typed::<SynthesizeMetrics>(e),
        Stage::Train(_) => typed::<TrainMetrics>(e),
        Stage::Evaluate(_) => typed::<EvaluateMetrics>(e),
        Stage::Compare => typed::<Comparison>(e),
        Stage::Report => typed::<ReportMetrics>(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SAMPLER, SAMPLER_HOST_V1};

    /// A sampling entry names its sampler; one written before the field reads as the host sampler.
    #[test]
    fn entries_name_their_sampler_and_old_ones_read_as_the_host_sampler() {
        let old = serde_json::json!({
            "rows": 2, "ai": 1, "paraphrase": 1, "answer_difference_rate": 0.5, "answer_difference_rate_ai": 1.0,
            "answer_difference_rate_paraphrase": 0.0, "mean_answer_words_before": 3.0,
            "mean_answer_words_after": 4.0, "empty_outputs": 0, "retried": 0, "temperature": 0.7
        });
        let read = |v: &Value| serde_json::from_value::<ContaminateMetrics>(v.clone()).unwrap();
        assert_eq!(read(&old).sampler(), SAMPLER_HOST_V1);
        let mut new = old.clone();
        new["sampler"] = SAMPLER.into();
        let m = read(&new);
        assert_eq!(m.sampler(), SAMPLER);
        // Written back as it was read: the old entry without the field, the new one with it.
        assert_eq!(serde_json::to_value(read(&old)).unwrap(), old);
        assert_eq!(serde_json::to_value(m).unwrap(), new);
    }
}
