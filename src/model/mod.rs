//! Models on libtorch: T5 (flan-t5) with LoRA, HF-format loading, tokenizers, generation.
//!
//! ```text
//! hsx generate --model tests/fixtures/t5/model --json "some text"
//! ```
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

pub mod adamw;
pub mod adapter;
pub mod batching;
pub mod bert;
pub mod checkpoint;
pub mod choice;
pub mod gemm;
pub mod generate;
pub mod hub;
pub mod lora;
pub mod pretrain;
pub mod t5;
pub mod tokenizer;
pub mod train;
pub mod usage;

pub use generate::{
    dataset_keys, generate, generate_keyed, generate_rows, generate_texts, generate_texts_capped, GenerateOptions,
    SAMPLER, SAMPLER_HOST_V1,
};
pub use t5::{T5Config, T5};
pub use tokenizer::TextTokenizer;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Config(String),
    #[error("{path}: tensor `{name}` has shape {found:?}, the model expects {expected:?}")]
    Shape { path: PathBuf, name: String, expected: Vec<i64>, found: Vec<i64> },
    #[error("{path}: tensor `{name}` is not part of this model (an extra or misnamed tensor)")]
    Extra { path: PathBuf, name: String },
    #[error("{dir}: {count} tensor(s) missing from the checkpoint, e.g. `{first}`")]
    Missing { dir: PathBuf, count: usize, first: String },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A file that could not be written or read safely (see `crate::fsx`).
    #[error(transparent)]
    Fs(#[from] crate::fsx::FsError),
}

fn file_err(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::File { path: path.to_owned(), message: message.into() }
}

/// Reads a JSON file of a model directory (a config, an index) through [`crate::fsx`]: a regular file,
/// at most [`crate::fsx::Limit::JSON`].
pub(crate) fn read_json_text(p: &Path) -> Result<String, ModelError> {
    crate::fsx::read_file_string(p, crate::fsx::Limit::JSON)
        .map_err(|e| file_err(p, format!("cannot read: {}", std::io::Error::from(e))))
}

/// Reads a tokenizer (`tokenizer.json`) through [`crate::fsx`], as [`read_json_text`] does.
pub(crate) fn read_tokenizer(p: &Path) -> Result<tokenizers::Tokenizer, ModelError> {
    let bytes = crate::fsx::read_file(p, crate::fsx::Limit::JSON)
        .map_err(|e| file_err(p, format!("cannot read: {}", std::io::Error::from(e))))?;
    tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| file_err(p, format!("not a readable tokenizer.json: {e}")))
}

/// Reads a safetensors file through [`crate::fsx`] (a regular file, at most
/// [`crate::fsx::Limit::WEIGHTS`]; libtorch reads the file that was checked).
pub fn read_safetensors(p: &Path) -> Result<Vec<(String, Tensor)>, ModelError> {
    let f = crate::fsx::open_file(p, crate::fsx::Limit::WEIGHTS)
        .map_err(|e| file_err(p, format!("cannot read: {}", std::io::Error::from(e))))?;
    Tensor::read_safetensors(f.reopen_path())
        .map_err(|e| file_err(p, format!("not a readable safetensors file (truncated or corrupt?): {e}")))
}

/// Reads and validates `config.json` of an HF-format T5 directory.
pub fn read_t5_config(dir: &Path) -> Result<T5Config, ModelError> {
    let p = dir.join("config.json");
    let text = read_json_text(&p)?;
    let cfg: T5Config = serde_json::from_str(&text).map_err(|e| file_err(&p, format!("not a T5 config: {e}")))?;
    cfg.validate().map_err(|e| file_err(&p, e.to_string()))?;
    Ok(cfg)
}

/// The safetensors files of a checkpoint: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` names.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(file_err(
            dir,
            "no model.safetensors or model.safetensors.index.json (an HF-format directory is expected)",
        ));
    }
    let text = read_json_text(&index)?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_err(&index, format!("not JSON: {e}")))?;
    let map =
        v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| file_err(&index, "no weight_map object"))?;
    let mut files = BTreeSet::new();
    for (name, f) in map {
        let f = f.as_str().ok_or_else(|| file_err(&index, format!("weight_map[{name}] is not a file name")))?;
        if f.contains('/') || f.contains("..") {
            return Err(file_err(&index, format!("shard {f:?} is not a plain file name")));
        }
        files.insert(f.to_owned());
    }
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Copies checkpoint tensors into the variables of `vs`, by name. A missing, extra or wrongly shaped
/// tensor is an error naming it; `ignore` lists names a checkpoint may carry redundantly.
pub fn load_weights(vs: &nn::VarStore, files: &[PathBuf], dir: &Path, ignore: &[&str]) -> Result<(), ModelError> {
    let vars: HashMap<String, Tensor> = vs.variables();
    let mut seen = BTreeSet::new();
    for f in files {
        let tensors = read_safetensors(f)?;
        for (name, t) in tensors {
            match vars.get(&name) {
                Some(var) => {
                    if var.size() != t.size() {
                        return Err(ModelError::Shape { path: f.clone(), name, expected: var.size(), found: t.size() });
                    }
                    if !matches!(t.kind(), Kind::Float | Kind::BFloat16 | Kind::Half | Kind::Double) {
                        return Err(file_err(
                            f,
                            format!("tensor `{name}` has dtype {:?}, expected a float type", t.kind()),
                        ));
                    }
                    tch::no_grad(|| var.shallow_clone().copy_(&t.to_kind(var.kind()).to_device(var.device())));
                    seen.insert(name);
                }
                None if ignore.contains(&name.as_str()) => {}
                None => return Err(ModelError::Extra { path: f.clone(), name }),
            }
        }
    }
    let mut missing: Vec<&String> = vars.keys().filter(|k| !seen.contains(*k)).collect();
    missing.sort();
    if let Some(first) = missing.first() {
        return Err(ModelError::Missing { dir: dir.to_owned(), count: missing.len(), first: (*first).clone() });
    }
    Ok(())
}

/// A T5 loaded from an HF-format directory, with its tokenizer.
pub struct LoadedT5 {
    pub vs: nn::VarStore,
    pub model: T5,
    pub tokenizer: TextTokenizer,
}

/// Loads `config.json`, the safetensors weights and `tokenizer.json` from `dir`.
pub fn load_t5(dir: &Path, device: Device) -> Result<LoadedT5, ModelError> {
    if !dir.is_dir() {
        return Err(file_err(dir, "is not a directory (expected config.json, model.safetensors, tokenizer.json)"));
    }
    let cfg = read_t5_config(dir)?;
    let tokenizer = TextTokenizer::load(&dir.join("tokenizer.json"))?;
    let files = weight_files(dir)?;
    let mut vs = nn::VarStore::new(device);
    let model = T5::new(&vs.root(), &cfg, None)?;
    // The hub's flan-t5 files hold `shared.weight` only; some T5 checkpoints repeat it per stack, and
    // tied checkpoints may carry `lm_head.weight` as a copy of it.
    let mut ignore = vec!["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"];
    if cfg.tie_word_embeddings {
        ignore.push("lm_head.weight");
    }
    load_weights(&vs, &files, dir, &ignore)?;
    vs.freeze();
    Ok(LoadedT5 { vs, model, tokenizer })
}

/// `auto` → CUDA when available; `cpu`; `cuda` / `cuda:N`. Asking for CUDA loads libtorch's CUDA
/// library first ([`crate::runtime::load_cuda`]).
pub fn parse_device(s: &str) -> Result<Device, ModelError> {
    let cuda = || -> Result<bool, ModelError> {
        match crate::runtime::load_cuda() {
            Ok(true) => Ok(tch::Cuda::is_available()),
            Ok(false) => Ok(false),
            Err(e) if s == "auto" => {
                eprintln!("hsx: {e}; using the CPU");
                Ok(false)
            }
            Err(e) => Err(ModelError::Config(format!("--device {s}: {e}"))),
        }
    };
    match s {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(if cuda()? { Device::Cuda(0) } else { Device::Cpu }),
        "cuda" => {
            if cuda()? {
                Ok(Device::Cuda(0))
            } else {
                Err(ModelError::Config(
                    "--device cuda: no CUDA device is available (libtorch without its CUDA library, or no GPU visible)"
                        .into(),
                ))
            }
        }
        s if s.starts_with("cuda:") => {
            let n: usize = s[5..].parse().map_err(|_| ModelError::Config(format!("bad device {s:?}")))?;
            if cuda()? && (n as i64) < tch::Cuda::device_count() {
                Ok(Device::Cuda(n))
            } else {
                Err(ModelError::Config(format!("--device {s}: no such CUDA device")))
            }
        }
        other => Err(ModelError::Config(format!("unknown device {other:?} (cpu, cuda, cuda:N, auto)"))),
    }
}
