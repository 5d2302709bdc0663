//! A client for the few MLflow REST endpoints the export uses (REST API 2.0, as `mlflow server` serves it):
//! `experiments/get-by-name|create`, `runs/search|create|update|delete|log-batch|log-inputs`, and the
//! artifact proxy `mlflow-artifacts/artifacts/<path>` (PUT). Requests and responses are typed records;
//! an error response (`{"error_code", "message"}`) becomes an error naming the endpoint. A bearer token in
//! `MLFLOW_TRACKING_TOKEN` is sent as MLflow's own client sends it.
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::export::ExportError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Param {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub step: i64,
}

#[derive(Debug, Serialize)]
pub struct CreateRun<'a> {
    pub experiment_id: &'a str,
    pub run_name: &'a str,
    pub start_time: i64,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Default, Serialize)]
pub struct LogBatch<'a> {
    pub run_id: &'a str,
    pub metrics: Vec<Metric>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Serialize)]
pub struct LogInputs<'a> {
    pub run_id: &'a str,
    pub datasets: Vec<DatasetInput>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetInput {
    pub tags: Vec<Tag>,
    pub dataset: Dataset,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dataset {
    pub name: String,
    pub digest: String,
    pub source_type: String,
    /// JSON text.
    pub source: String,
    /// JSON text.
    pub profile: String,
}

#[derive(Debug, Serialize)]
struct UpdateRun<'a> {
    run_id: &'a str,
    status: &'a str,
    end_time: i64,
}

#[derive(Debug, Serialize)]
struct RunId<'a> {
    run_id: &'a str,
}

#[derive(Debug, Serialize)]
struct SearchRuns<'a> {
    experiment_ids: [&'a str; 1],
    filter: &'a str,
    max_results: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    page_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct SearchRunsResponse {
    #[serde(default)]
    runs: Vec<Run>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub artifact_uri: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunData {
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl Run {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.data.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }
}

#[derive(Debug, Deserialize)]
struct CreateRunResponse {
    run: Run,
}

#[derive(Debug, Deserialize)]
struct ExperimentResponse {
    experiment: Experiment,
}

#[derive(Debug, Deserialize)]
struct Experiment {
    experiment_id: String,
    #[serde(default)]
    lifecycle_stage: String,
}

#[derive(Debug, Serialize)]
struct CreateExperiment<'a> {
    name: &'a str,
}

#[derive(Debug, Deserialize)]
struct CreateExperimentResponse {
    experiment_id: String,
}

#[derive(Debug, Deserialize)]
struct Empty {}

/// A request that reached the server and was answered with an error status.
struct Refused {
    status: u16,
    code: String,
    message: String,
}

pub struct Client {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

/// `base` (an http(s) tracking URI) with any trailing slash removed, or why it cannot be used.
pub fn check_uri(uri: &str) -> Result<String, String> {
    let lower = uri.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!(
            "{uri:?} is not an http(s) URI; the export talks to a tracking server's REST API (start one with \
             `mlflow server --backend-store-uri sqlite:///mlflow.db`)"
        ));
    }
    Ok(uri.trim_end_matches('/').to_owned())
}

/// Percent-encodes what is not an unreserved character or `/` in an artifact path.
pub fn encode_path(p: &str) -> String {
    let mut s = String::new();
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

impl Client {
    pub fn new(uri: &str) -> Result<Self, ExportError> {
        let base =
            check_uri(uri).map_err(|message| ExportError::Mlflow { endpoint: "tracking URI".into(), message })?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(20))
            .timeout(Duration::from_secs(300))
            .build();
        let token = std::env::var("MLFLOW_TRACKING_TOKEN").ok().filter(|t| !t.is_empty());
        Ok(Client { base, agent, token })
    }

    fn err(endpoint: &str, message: impl Into<String>) -> ExportError {
        ExportError::Mlflow { endpoint: endpoint.to_owned(), message: message.into() }
    }

    fn auth(&self, req: ureq::Request) -> ureq::Request {
        match &self.token {
            Some(t) => req.set("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    /// Sends a request; a transport failure is an error, an error status is `Ok(Err(Refused))`.
    fn send(
        &self,
        endpoint: &str,
        req: ureq::Request,
        body: Option<&[u8]>,
    ) -> Result<Result<String, Refused>, ExportError> {
        let req = self.auth(req);
        let resp = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        match resp {
            Ok(r) => r.into_string().map(Ok).map_err(|e| Self::err(endpoint, format!("reading the response: {e}"))),
            Err(ureq::Error::Status(status, r)) => {
                let text = r.into_string().unwrap_or_default();
                #[derive(Deserialize)]
                struct ErrorBody {
                    #[serde(default)]
                    error_code: String,
                    #[serde(default)]
                    message: String,
                }
                let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
                    Ok(b) => (b.error_code, b.message),
                    Err(_) => (String::new(), text.chars().take(500).collect()),
                };
                Ok(Err(Refused { status, code, message }))
            }
            Err(e) => Err(Self::err(endpoint, format!("cannot reach {}: {e}", self.base))),
        }
    }

    fn refused(endpoint: &str, r: Refused) -> ExportError {
        let code = if r.code.is_empty() { String::new() } else { format!(" {}", r.code) };
        Self::err(endpoint, format!("HTTP {}{code}: {}", r.status, r.message))
    }

    fn parse<T: DeserializeOwned>(endpoint: &str, text: &str) -> Result<T, ExportError> {
        serde_json::from_str(text).map_err(|e| Self::err(endpoint, format!("unexpected response ({e}): {text:.300}")))
    }

    fn post<B: Serialize, T: DeserializeOwned>(&self, endpoint: &str, body: &B) -> Result<T, ExportError> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let bytes = serde_json::to_vec(body).map_err(|e| Self::err(endpoint, e.to_string()))?;
        let req = self.agent.post(&url).set("Content-Type", "application/json");
        match self.send(endpoint, req, Some(&bytes))? {
            Ok(text) => Self::parse(endpoint, &text),
            Err(r) => Err(Self::refused(endpoint, r)),
        }
    }

    /// The id of experiment `name`, created when it does not exist.
    pub fn experiment_id(&self, name: &str) -> Result<String, ExportError> {
        let endpoint = "experiments/get-by-name";
        let req = self.agent.get(&format!("{}/api/2.0/mlflow/{endpoint}", self.base)).query("experiment_name", name);
        match self.send(endpoint, req, None)? {
            Ok(text) => {
                let e: ExperimentResponse = Self::parse(endpoint, &text)?;
                if e.experiment.lifecycle_stage == "deleted" {
                    return Err(Self::err(
                        endpoint,
                        format!("experiment {name:?} is deleted; restore it (`mlflow experiments restore`) or export to another name"),
                    ));
                }
                Ok(e.experiment.experiment_id)
            }
            Err(r) if r.code == "RESOURCE_DOES_NOT_EXIST" || r.status == 404 => {
                let c: CreateExperimentResponse = self.post("experiments/create", &CreateExperiment { name })?;
                Ok(c.experiment_id)
            }
            Err(r) => Err(Self::refused(endpoint, r)),
        }
    }

    /// Every active run of the experiment matching `filter` (MLflow's search syntax).
    pub fn search_runs(&self, experiment_id: &str, filter: &str) -> Result<Vec<Run>, ExportError> {
        let mut runs = Vec::new();
        let mut page_token = None;
        loop {
            let req = SearchRuns { experiment_ids: [experiment_id], filter, max_results: 1000, page_token };
            let resp: SearchRunsResponse = self.post("runs/search", &req)?;
            runs.extend(resp.runs);
            match resp.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => page_token = Some(t),
                None => return Ok(runs),
            }
        }
    }

    pub fn create_run(&self, req: &CreateRun<'_>) -> Result<Run, ExportError> {
        let r: CreateRunResponse = self.post("runs/create", req)?;
        Ok(r.run)
    }

    pub fn log_batch(&self, req: &LogBatch<'_>) -> Result<(), ExportError> {
        self.post::<_, Empty>("runs/log-batch", req).map(drop)
    }

    pub fn log_inputs(&self, req: &LogInputs<'_>) -> Result<(), ExportError> {
        self.post::<_, Empty>("runs/log-inputs", req).map(drop)
    }

    pub fn finish_run(&self, run_id: &str, end_time: i64) -> Result<(), ExportError> {
        self.post::<_, Empty>("runs/update", &UpdateRun { run_id, status: "FINISHED", end_time }).map(drop)
    }

    pub fn delete_run(&self, run_id: &str) -> Result<(), ExportError> {
        self.post::<_, Empty>("runs/delete", &RunId { run_id }).map(drop)
    }

    /// Uploads `bytes` as artifact `rel` of a run whose artifacts the server proxies (`artifact_root`:
    /// the path below `mlflow-artifacts:/`, see [`proxied_root`]).
    pub fn upload_artifact(&self, artifact_root: &str, rel: &str, bytes: &[u8]) -> Result<(), ExportError> {
        let endpoint = "mlflow-artifacts/artifacts";
        let path = encode_path(&format!("{}/{rel}", artifact_root.trim_matches('/')));
        let url = format!("{}/api/2.0/{endpoint}/{path}", self.base);
        let req = self.agent.put(&url).set("Content-Type", "application/octet-stream");
        match self.send(endpoint, req, Some(bytes))? {
            Ok(_) => Ok(()),
            Err(r) => Err(Self::refused(&format!("{endpoint} ({rel})"), r)),
        }
    }
}

/// The artifact path of a run whose artifacts the server proxies: the path of an `mlflow-artifacts:`
/// URI (`mlflow-artifacts:/1/<run>/artifacts`, or with a host), or what follows the proxy route of an
/// http(s) one. `None` when the server stores the run's artifacts where the REST API cannot write.
pub fn proxied_root(artifact_uri: &str) -> Option<String> {
    if let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") {
        let path = match rest.strip_prefix("//") {
            Some(with_host) => with_host.find('/').map(|i| &with_host[i..]).unwrap_or(""),
            None => rest,
        };
        return Some(path.trim_matches('/').to_owned());
    }
    let anchor = "/api/2.0/mlflow-artifacts/artifacts/";
    if artifact_uri.starts_with("http://") || artifact_uri.starts_with("https://") {
        return artifact_uri.split_once(anchor).map(|(_, p)| p.trim_matches('/').to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_uris_and_artifact_roots() {
        assert_eq!(check_uri("http://127.0.0.1:5000/").unwrap(), "http://127.0.0.1:5000");
        assert!(check_uri("file:///tmp/mlruns").unwrap_err().contains("not an http(s) URI"));
        assert!(check_uri("databricks").is_err());
        assert_eq!(proxied_root("mlflow-artifacts:/1/abc/artifacts").as_deref(), Some("1/abc/artifacts"));
        assert_eq!(proxied_root("mlflow-artifacts://host:5000/1/abc/artifacts").as_deref(), Some("1/abc/artifacts"));
        assert_eq!(
            proxied_root("http://h:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(proxied_root("/tmp/mlruns/1/abc/artifacts"), None);
        assert_eq!(proxied_root("s3://bucket/1/abc/artifacts"), None);
        assert_eq!(encode_path("report/plots/a b%.png"), "report/plots/a%20b%25.png");
    }

    #[test]
    fn request_bodies_have_mlflows_field_names() {
        let b = LogBatch {
            run_id: "r",
            metrics: vec![Metric { key: "loss".into(), value: 0.5, timestamp: 7, step: 2 }],
            params: vec![Param { key: "lr".into(), value: "0.001".into() }],
            tags: vec![Tag { key: "k".into(), value: "v".into() }],
        };
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            serde_json::json!({"run_id": "r", "metrics": [{"key": "loss", "value": 0.5, "timestamp": 7, "step": 2}],
                               "params": [{"key": "lr", "value": "0.001"}], "tags": [{"key": "k", "value": "v"}]})
        );
        let s = SearchRuns { experiment_ids: ["1"], filter: "f", max_results: 1000, page_token: None };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"experiment_ids": ["1"], "filter": "f", "max_results": 1000})
        );
        let r: SearchRunsResponse = serde_json::from_str(
            r#"{"runs": [{"info": {"run_id": "x", "status": "FINISHED", "artifact_uri": "mlflow-artifacts:/1/x/artifacts"},
                          "data": {"tags": [{"key": "hsx.entry.hash", "value": "h"}], "metrics": [], "params": []}}]}"#,
        )
        .unwrap();
        assert_eq!(r.runs[0].tag("hsx.entry.hash"), Some("h"));
        assert_eq!(r.next_page_token, None);
        // An empty search answers `{}`.
        let empty: SearchRunsResponse = serde_json::from_str("{}").unwrap();
        assert!(empty.runs.is_empty());
    }
}
