//! Timings for `hsx bench` (benches/*.py run the Python peer in the same run and report ratios). Each
//! function reads its fixed input, warms up where the peer does, times, and returns one JSON record.
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

use crate::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{path}: not the expected JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A file that could not be written or read safely (see `crate::fsx`).
    #[error(transparent)]
    Fs(#[from] crate::fsx::FsError),
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, BenchError> {
    let text = crate::fsx::read_file_string(path, crate::fsx::Limit::JSON)?;
    serde_json::from_str(&text).map_err(|source| BenchError::Json { path: path.to_owned(), source })
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Filters 1, 2, 4 and 5 over candidates against a seed set (`{"seeds": [..], "candidates": [..]}`), each
/// string read as a whole example (`scope = "full"`).
pub fn filters(data: &Path) -> Result<Value, BenchError> {
    #[derive(serde::Deserialize)]
    struct D {
        seeds: Vec<String>,
        candidates: Vec<String>,
    }
    let d: D = read_json(data)?;
    let cfg = crate::config::Filters::default();
    let t = std::time::Instant::now();
    use crate::synth::filters::{FilterState, Scope};
    fn whole(t: &str) -> (&str, &str, &str) {
        ("", t, "")
    }
    let strategy = crate::synth::Strategy::QuestionVariants;
    let seeds: Vec<(&str, &str, &str)> = d.seeds.iter().map(|t| whole(t)).collect();
    let mut state = FilterState::new(&cfg, Scope::Full, &seeds, 42);
    let index_secs = t.elapsed().as_secs_f64();
    let mut accepted = 0usize;
    let mut rejected: std::collections::BTreeMap<&str, usize> = Default::default();
    for c in &d.candidates {
        let checked = state.check(strategy, whole(c), &[]);
        match checked.failures(&cfg).first() {
            None => {
                state.accept(strategy, whole(c));
                accepted += 1;
            }
            Some((f, _)) => *rejected.entry(f.name()).or_default() += 1,
        }
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(json!({"impl": "hsx", "seeds": d.seeds.len(), "candidates": d.candidates.len(), "seconds": secs,
              "index_seconds": index_secs, "accepted": accepted, "rejected": rejected}))
}

/// MiniLM sentence embeddings of a list of sentences (`benches/embed.py` runs sentence-transformers on
/// the same list). Reports the CPU pin variables as this process has them, so the peer can run under the
/// same ones; `out` receives the embeddings (n × hidden little-endian f32, input order) for parity checks.
pub fn embed(data: &Path, threads: usize, batch: usize, reps: usize, out: Option<&Path>) -> Result<Value, BenchError> {
    crate::runtime::set_threads(threads);
    let v: Vec<String> = read_json(data)?;
    let bert = crate::model::bert::load_minilm(None, tch::Device::Cpu)?;
    let _ = bert.embed(&v[..v.len().min(32)], batch, 256)?;
    let mut times = Vec::new();
    let mut e = None;
    for _ in 0..reps.max(1) {
        let t = std::time::Instant::now();
        e = Some(bert.embed(&v, batch, 256)?);
        times.push(t.elapsed().as_secs_f64());
    }
    let e = e.ok_or_else(|| ModelError::Config("no repetition ran".into()))?;
    if let Some(path) = out {
        let flat: Vec<f32> =
            Vec::<f32>::try_from(e.flatten(0, -1)).map_err(|err| ModelError::Config(format!("embeddings: {err}")))?;
        let bytes: Vec<u8> = flat.iter().flat_map(|x| x.to_le_bytes()).collect();
        crate::fsx::write(crate::fsx::dir_of(path), path, &bytes)?;
    }
    let pins: serde_json::Map<String, Value> = crate::runtime::PORTABLE_PINS
        .iter()
        .map(|(k, _)| (k.to_string(), std::env::var(k).map(Value::from).unwrap_or(Value::Null)))
        .collect();
    let secs = median(times.clone());
    Ok(json!({"impl": "hsx", "sentences": e.size()[0], "hidden": e.size().get(1).copied().unwrap_or(0), "batch": batch,
              "threads": threads, "seconds": secs, "seconds_each": times, "sentences_per_s": v.len() as f64 / secs, "pins": pins}))
}

/// EM + F1 + ROUGE-1/2/L (stemmed) over `[prediction, reference]` pairs.
pub fn metrics(pairs: &Path, reps: usize) -> Result<Value, BenchError> {
    let v: Vec<(String, String)> = read_json(pairs)?;
    let (p, r): (Vec<String>, Vec<String>) = v.into_iter().unzip();
    let all = [crate::metrics::Metric::Em, crate::metrics::Metric::F1, crate::metrics::Metric::Rouge];
    let mut times = Vec::new();
    let mut checksum = 0.0;
    for _ in 0..reps.max(1) {
        let t = std::time::Instant::now();
        let s = crate::metrics::lexical(&p, &r, &all, true);
        times.push(t.elapsed().as_secs_f64());
        checksum = s.f1.iter().sum::<f64>() + s.rouge_l.iter().sum::<f64>();
    }
    Ok(json!({"impl": "hsx", "pairs": p.len(), "seconds_median": median(times), "checksum": checksum}))
}

/// One epoch of LoRA training (r 16, q and v) over fixed token ids (`{"inputs": [[..]], "labels": [[..]]}`).
pub fn train(
    model: &Path,
    data: &Path,
    batch: usize,
    threads: usize,
    device: tch::Device,
    bf16: bool,
) -> Result<Value, BenchError> {
    use crate::model::train::{parameter_count, train, Example, NoProgress, Recipe};
    crate::runtime::set_threads(threads);
    #[derive(serde::Deserialize)]
    struct D {
        inputs: Vec<Vec<i64>>,
        labels: Vec<Vec<i64>>,
    }
    let d: D = read_json(data)?;
    let lora =
        crate::model::lora::LoraConfig { r: 16, alpha: 32.0, dropout: 0.1, targets: vec!["q".into(), "v".into()] };
    tch::manual_seed(0);
    let (m, lora_vs) = crate::model::adapter::load_t5_lora(model, device, &lora, None)?;
    let ex: Vec<Example> =
        d.inputs.into_iter().zip(d.labels).map(|(i, l)| Example { input_ids: i, labels: l }).collect();
    let real: usize = ex.iter().map(|e| e.input_ids.len() + e.labels.len()).sum();
    let mut recipe = Recipe::from_config(&crate::config::Train::default(), 0, bf16);
    recipe.hyper.epochs = 1;
    recipe.hyper.batch_size = batch;
    recipe.hyper.grad_accum = 1;
    let total = parameter_count(&m.vs) + parameter_count(&lora_vs);
    let t = std::time::Instant::now();
    let rep = train(&m.model, &lora_vs, total, &ex, &[], &recipe, 0, &NoProgress)?;
    let secs = t.elapsed().as_secs_f64();
    Ok(json!({"impl": "hsx", "examples": ex.len(), "steps": rep.optimizer_steps, "seconds": secs,
              "real_tokens_per_s": real as f64 / secs, "device": format!("{device:?}"), "bf16": bf16, "padding_share": rep.padding_share,
              "trainable_parameters": rep.trainable_parameters, "total_parameters": rep.total_parameters}))
}

/// How [`generate`] chooses tokens: temperature 0 is greedy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub temperature: f64,
    pub top_p: f64,
}

/// Generation of exactly `new_tokens` per row over one batch of token ids: greedy, or sampled with the
/// stages' sampler ([`crate::model::SAMPLER`]).
#[allow(clippy::too_many_arguments)] // one per command-line option of `hsx bench generate`
pub fn generate(
    model: &Path,
    ids: &Path,
    new_tokens: usize,
    threads: usize,
    reps: usize,
    device: tch::Device,
    bf16: bool,
    sampling: Sampling,
) -> Result<Value, BenchError> {
    use crate::model::{generate, load_t5, GenerateOptions};
    crate::runtime::set_threads(threads);
    let m = load_t5(model, device)?;
    let rows: Vec<Vec<i64>> = read_json(ids)?;
    // Exactly `new_tokens` per row, as the Python peer does with min_new_tokens = max_new_tokens.
    let opts = GenerateOptions {
        max_new_tokens: new_tokens,
        min_new_tokens: new_tokens,
        bf16,
        temperature: sampling.temperature,
        top_p: sampling.top_p,
        ..Default::default()
    };
    let _ = generate(&m.model, &rows, &opts);
    let mut times = Vec::new();
    for _ in 0..reps.max(1) {
        let t = std::time::Instant::now();
        let out = generate(&m.model, &rows, &opts);
        times.push(t.elapsed().as_secs_f64());
        debug_assert!(out.iter().all(|r| r.len() == new_tokens));
    }
    let tokens = rows.len() * new_tokens;
    times.sort_by(f64::total_cmp);
    let med = median(times.clone());
    Ok(
        json!({"impl": "hsx", "batch": rows.len(), "new_tokens": new_tokens, "threads": threads, "device": format!("{device:?}"), "bf16": bf16,
              "temperature": sampling.temperature, "top_p": sampling.top_p, "sampler": crate::model::SAMPLER,
              "seconds_median": med, "tokens_per_s": tokens as f64 / med, "times": times}),
    )
}

/// One shape of [`gemm`]: GFLOP/s of each side (median of the repetitions), forward alone and forward
/// plus both gradients, and how far apart the two sides' products are.
#[derive(Debug, serde::Serialize)]
pub struct GemmShape {
    /// Rows (tokens), inner dimension, output features: `x [m, k] · wᵀ`, `w [n, k]`.
    pub m: i64,
    pub k: i64,
    pub n: i64,
    pub forward_gflops_hsx: f64,
    pub forward_gflops_libtorch: f64,
    pub forward_backward_gflops_hsx: f64,
    pub forward_backward_gflops_libtorch: f64,
    /// hsx ÷ libtorch throughput, forward and forward + backward.
    pub forward_ratio: f64,
    pub forward_backward_ratio: f64,
    /// Largest absolute difference between the two sides' forward products (rounding only).
    pub max_abs_difference: f64,
}

/// T5's linear-layer products at the given shapes: hsx's portable multiply (`gemm::matmul_t`, the path
/// every float32 CPU linear layer of T5 takes) against libtorch's `matmul` (MKL, under whatever pins this
/// process runs with), alternating repetition by repetition in one process, `threads` intra-op threads.
/// Forward + backward computes `y = x · wᵀ`, then the input and the weight gradient of `sum(y)`.
pub fn gemm(shapes: &[(i64, i64, i64)], threads: usize, reps: usize) -> Result<Value, BenchError> {
    use tch::{Device, Kind, Tensor};
    crate::runtime::set_threads(threads);
    let mut rows = Vec::new();
    for &(m, k, n) in shapes {
        if m <= 0 || k <= 0 || n <= 0 {
            return Err(ModelError::Config(format!("bench gemm: shape {m}x{k}x{n} must be positive")).into());
        }
        let x = Tensor::randn([m, k], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([n, k], (Kind::Float, Device::Cpu));
        let forward = |hsx: bool| {
            let t = std::time::Instant::now();
            let y = tch::no_grad(|| if hsx { crate::model::gemm::matmul_t(&x, &w) } else { x.matmul(&w.tr()) });
            (t.elapsed().as_secs_f64(), y)
        };
        let both = |hsx: bool| {
            let (xg, wg) = (x.detach().set_requires_grad(true), w.detach().set_requires_grad(true));
            let t = std::time::Instant::now();
            let y = if hsx { crate::model::gemm::matmul_t(&xg, &wg) } else { xg.matmul(&wg.tr()) };
            y.sum(Kind::Float).backward();
            t.elapsed().as_secs_f64()
        };
        let (_, a) = forward(true);
        let (_, b) = forward(false);
        let diff = (&a - &b).abs().max().double_value(&[]);
        let (_, _) = (both(true), both(false));
        let (mut fh, mut fl, mut bh, mut bl) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps.max(1) {
            fh.push(forward(true).0);
            fl.push(forward(false).0);
            bh.push(both(true));
            bl.push(both(false));
        }
        let flop = 2.0 * (m * k * n) as f64 / 1e9;
        let (fh, fl, bh, bl) = (flop / median(fh), flop / median(fl), 3.0 * flop / median(bh), 3.0 * flop / median(bl));
        rows.push(GemmShape {
            m,
            k,
            n,
            forward_gflops_hsx: fh,
            forward_gflops_libtorch: fl,
            forward_backward_gflops_hsx: bh,
            forward_backward_gflops_libtorch: bl,
            forward_ratio: fh / fl,
            forward_backward_ratio: bh / bl,
            max_abs_difference: diff,
        });
    }
    let gemm = crate::model::gemm::facts();
    Ok(json!({"impl": "hsx", "threads": threads, "reps": reps, "gemm": gemm, "shapes": rows}))
}
