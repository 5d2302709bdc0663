//! PEFT-format LoRA adapters: `adapter_config.json` + `adapter_model.safetensors`, interchangeable with
//! `peft` (`PeftModel.from_pretrained` loads what hsx saves, and hsx loads what peft saves), and merging an
//! adapter into the base weights as an HF directory.
//!
//! ```text
//! hsx generate --model models/flan-t5-base --adapter runs/exp-42/train-A/adapter "question: ..."
//! ```
use serde_json::{json, Value};
use std::path::Path;
use tch::{nn, Device, Tensor};

use super::lora::LoraConfig;
use super::{file_err, load_weights, read_t5_config, weight_files, LoadedT5, ModelError, TextTokenizer, T5};

pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// Reads a peft `adapter_config.json`, refusing the options hsx does not implement.
pub fn read_adapter_config(dir: &Path) -> Result<LoraConfig, ModelError> {
    let p = dir.join(ADAPTER_CONFIG);
    let text = crate::fsx::read_file_string(&p, crate::fsx::Limit::JSON)?;
    let v: Value = serde_json::from_str(&text).map_err(|e| file_err(&p, format!("not JSON: {e}")))?;
    let get = |k: &str| v.get(k).filter(|x| !x.is_null());
    let bad = |k: &str, m: &str| Err(file_err(&p, format!("`{k}` {m}")));
    if get("peft_type").and_then(Value::as_str).is_some_and(|t| t != "LORA") {
        return bad("peft_type", "is not LORA");
    }
    let r = get("r").and_then(Value::as_u64).ok_or_else(|| file_err(&p, "`r` is missing or not a positive integer"))?
        as usize;
    let alpha = get("lora_alpha").and_then(Value::as_f64).unwrap_or(8.0);
    let dropout = get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0);
    let targets: Vec<String> = match get("target_modules") {
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
        Some(Value::String(s)) => {
            return bad("target_modules", &format!("is a regex {s:?}; hsx supports a list of module names"))
        }
        _ => return bad("target_modules", "is missing"),
    };
    for (k, ok) in [
        ("use_rslora", get("use_rslora").is_none_or(|x| x == &Value::Bool(false))),
        ("use_dora", get("use_dora").is_none_or(|x| x == &Value::Bool(false))),
        ("fan_in_fan_out", get("fan_in_fan_out").is_none_or(|x| x == &Value::Bool(false))),
        ("bias", get("bias").is_none_or(|x| x == "none")),
        ("layers_to_transform", get("layers_to_transform").is_none()),
        ("rank_pattern", get("rank_pattern").is_none_or(|x| x.as_object().is_some_and(|m| m.is_empty()))),
        ("alpha_pattern", get("alpha_pattern").is_none_or(|x| x.as_object().is_some_and(|m| m.is_empty()))),
        ("modules_to_save", get("modules_to_save").is_none()),
    ] {
        if !ok {
            return bad(k, "uses an option hsx does not implement");
        }
    }
    if r == 0 || targets.is_empty() {
        return bad("r/target_modules", "must be positive / non-empty");
    }
    Ok(LoraConfig { r, alpha, dropout, targets })
}

/// Writes the adapter in peft's format into `dir`, below `root` (the run directory, or the directory a
/// user named), through [`crate::fsx`].
pub fn save_adapter(
    lora_vs: &nn::VarStore,
    cfg: &LoraConfig,
    base_model: &str,
    root: &Path,
    dir: &Path,
) -> Result<(), ModelError> {
    crate::fsx::create_dirs(root, dir)?;
    let mut vars: Vec<(String, Tensor)> = lora_vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let cpu: Vec<(String, Tensor)> =
        vars.into_iter().map(|(k, t)| (k, t.detach().to_device(Device::Cpu).contiguous())).collect();
    crate::fsx::place_file(root, &dir.join(ADAPTER_WEIGHTS), |at| {
        Ok::<_, ModelError>(Tensor::write_safetensors(&cpu, at)?)
    })?;
    let conf = json!({
        "peft_type": "LORA",
        "task_type": "SEQ_2_SEQ_LM",
        "base_model_name_or_path": base_model,
        "r": cfg.r,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": cfg.targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null,
    });
    let mut text = serde_json::to_string_pretty(&conf).expect("json");
    text.push('\n');
    crate::fsx::write(root, &dir.join(ADAPTER_CONFIG), text.as_bytes())?;
    Ok(())
}

/// Loads an HF-format T5 with LoRA adapters for `lora` (fresh, initialised as peft does from the torch
/// RNG, which the caller seeds), or — with `adapter_dir` — the adapter saved there.
pub fn load_t5_lora(
    dir: &Path,
    device: Device,
    lora: &LoraConfig,
    adapter_dir: Option<&Path>,
) -> Result<(LoadedT5, nn::VarStore), ModelError> {
    let cfg = read_t5_config(dir)?;
    let tokenizer = TextTokenizer::load(&dir.join("tokenizer.json"))?;
    let files = weight_files(dir)?;
    let mut vs = nn::VarStore::new(device);
    let lora_vs = nn::VarStore::new(device);
    let ctx = super::t5::LoraCtx { cfg: lora, root: lora_vs.root() };
    let model = T5::new(&vs.root(), &cfg, Some(&ctx))?;
    let mut ignore = vec!["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"];
    if cfg.tie_word_embeddings {
        ignore.push("lm_head.weight");
    }
    load_weights(&vs, &files, dir, &ignore)?;
    vs.freeze();
    if let Some(a) = adapter_dir {
        let w = a.join(ADAPTER_WEIGHTS);
        if !w.is_file() {
            return Err(file_err(
                &w,
                "missing (a peft adapter directory holds adapter_config.json and adapter_model.safetensors)",
            ));
        }
        load_weights(&lora_vs, &[w], a, &[])?;
    }
    Ok((LoadedT5 { vs, model, tokenizer }, lora_vs))
}

/// Loads a base model with the adapter in `adapter_dir`, configured by its `adapter_config.json`.
pub fn load_with_adapter(
    dir: &Path,
    adapter_dir: &Path,
    device: Device,
) -> Result<(LoadedT5, nn::VarStore), ModelError> {
    let cfg = read_adapter_config(adapter_dir)?;
    load_t5_lora(dir, device, &cfg, Some(adapter_dir))
}

/// Folds the adapter into the base weights (`W += B A · alpha/r`) and saves an HF directory `out`
/// below `root`.
pub fn merge_and_save(base_dir: &Path, loaded: &LoadedT5, root: &Path, out: &Path) -> Result<(), ModelError> {
    crate::fsx::create_dirs(root, out)?;
    let mut weights: std::collections::BTreeMap<String, Tensor> =
        loaded.vs.variables().into_iter().map(|(k, t)| (k, t.detach().to_device(Device::Cpu))).collect();
    for lin in loaded.model.linears() {
        if lin.lora.is_some() {
            weights.insert(lin.name.clone(), lin.merged().to_device(Device::Cpu));
        }
    }
    let merged: Vec<(String, Tensor)> = weights.into_iter().collect();
    crate::fsx::place_file(root, &out.join("model.safetensors"), |at| {
        Ok::<_, ModelError>(Tensor::write_safetensors(&merged, at)?)
    })?;
    for f in ["config.json", "tokenizer.json"] {
        crate::fsx::copy(base_dir, &base_dir.join(f), crate::fsx::Limit::JSON, root, &out.join(f))?;
    }
    Ok(())
}
