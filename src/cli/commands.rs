//! One function per subcommand: turn its arguments into a library call and hand the result to
//! `print`. Errors go up with `?` (their causes intact) to the one place that maps them to exit codes.
use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::args::*;
use super::print::{self, json_or_pretty, print_json, BarProgress, CliProgress, Out};
use hsx::ledger::verify::VerifyOptions;
use hsx::ledger::{keys, SigningKeyFile, TrustedKeys};
use hsx::pipeline::RunOptions;

fn cwd() -> Result<PathBuf> {
    std::env::current_dir().context("cannot read the current directory")
}

pub fn run(out: Out, a: &RunArgs) -> Result<u8> {
    let ledger_path = match (&a.ledger, &a.out) {
        (Some(l), _) => l.clone(),
        (None, Some(dir)) => dir.join(hsx::pipeline::SELF_CONTAINED_LEDGER),
        (None, None) => anyhow::bail!("pass --out DIR (a self-contained run) or --ledger FILE"),
    };
    let opts = RunOptions {
        config_path: a.config.clone(),
        ledger_path: ledger_path.clone(),
        key_path: a.key.clone().unwrap_or_else(keys::default_key_path),
        workspace: cwd()?,
        data_mirror: a.data_mirror.clone(),
        only: a.only.clone(),
        from: a.from.clone(),
        out: a.out.clone(),
    };
    let summary = match a.executor {
        ExecutorArg::Local => hsx::pipeline::run(&opts, &CliProgress(out))?,
        ExecutorArg::Slurm => hsx::slurm::run(&opts, &CliProgress(out))?,
    };
    print::run_summary(out, &summary);
    if !out.json && !out.quiet {
        let report_dir =
            hsx::config::Config::load(&a.config).map(|c| c.experiment.report_dir).unwrap_or_else(|_| "report".into());
        let report =
            if a.out.is_some() { Path::new(&summary.run_dir).join(&report_dir) } else { PathBuf::from(&report_dir) };
        print::run_locations(&ledger_path, &report);
    }
    Ok(0)
}

pub fn stage(out: Out, a: &StageArgs) -> Result<u8> {
    let opts = RunOptions {
        config_path: a.config.clone(),
        ledger_path: a.ledger.clone(),
        key_path: a.key.clone().unwrap_or_else(keys::default_key_path),
        workspace: cwd()?,
        data_mirror: a.data_mirror.clone(),
        only: None,
        from: None,
        out: a.out.clone(),
    };
    let entry = hsx::slurm::run_job(&opts, &a.instance, &CliProgress(out))?;
    if out.json {
        println!("{}", serde_json::json!({"instance": entry.stage, "hash": entry.hash}));
    }
    Ok(0)
}

pub fn verify(out: Out, a: &VerifyArgs) -> Result<u8> {
    let trusted = a.trusted_keys.as_deref().map(TrustedKeys::load).transpose()?;
    let expect_head =
        a.expect_head.as_deref().map(hsx::ledger::head::parse_expected).transpose().map_err(|e| anyhow!(e))?;
    let opts = VerifyOptions { trusted, require_artifacts: a.require_artifacts, expect_head, structure_only: false };
    let report = hsx::audit::verify(&a.ledger, a.data_mirror.as_deref(), &opts)?;
    print::verify_report(out, &report, a.trusted_keys.is_some());
    Ok(if report.ok { 0 } else { 1 })
}

pub fn export(out: Out, a: &ExportArgs) -> Result<u8> {
    let trusted = a.trusted_keys.as_deref().map(TrustedKeys::load).transpose()?;
    let expect_head =
        a.expect_head.as_deref().map(hsx::ledger::head::parse_expected).transpose().map_err(|e| anyhow!(e))?;
    if a.expires.is_some() && a.format != hsx::export::Format::InToto {
        bail!("--expires applies to --format in-toto only (the layout's expiry)");
    }
    let expires = a
        .expires
        .as_deref()
        .map(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|e| anyhow!("--expires {s:?} is not an RFC 3339 time: {e}"))
        })
        .transpose()?;
    let mirror = a.data_mirror.as_deref();
    if !a.format.is_provenance() {
        return export_view(out, a, trusted.as_ref(), expect_head.as_deref());
    }
    let dir =
        a.out.as_deref().ok_or_else(|| anyhow!("--format {} needs --out DIR (a new or empty directory)", a.format))?;
    let key = a.key.clone().unwrap_or_else(keys::default_key_path);
    let summary = hsx::export::export(&hsx::export::ExportOptions {
        format: a.format,
        ledger: &a.ledger,
        out: dir,
        mirror,
        trusted: trusted.as_ref(),
        expect_head: expect_head.as_deref(),
        key: &key,
        expires,
    })?;
    print::export_summary(out, &summary);
    Ok(0)
}

/// `hsx export --format hf|mlflow`: the run shown where researchers look (docs/ecosystem.md).
fn export_view(out: Out, a: &ExportArgs, trusted: Option<&TrustedKeys>, expect_head: Option<&str>) -> Result<u8> {
    use hsx::export::Format;
    // Where the export goes, checked before the ledger is verified.
    let (dir, uri) = match a.format {
        Format::Mlflow if a.out.is_some() => bail!("--format mlflow writes to the tracking server, not to --out"),
        Format::Mlflow => (
            None,
            Some(a.tracking_uri.clone().ok_or_else(|| {
                anyhow!("--format mlflow needs --tracking-uri URI (or MLFLOW_TRACKING_URI), e.g. http://127.0.0.1:5000")
            })?),
        ),
        _ => (
            Some(
                a.out
                    .as_deref()
                    .ok_or_else(|| anyhow!("--format {} needs --out DIR (a new or empty directory)", a.format))?,
            ),
            None,
        ),
    };
    let mirror = a.data_mirror.as_deref();
    let verified = hsx::export::load_verified(&a.ledger, mirror, trusted, expect_head)?;
    let view = hsx::export::recorded::RunView::of(&verified, mirror)?;
    if let Some(dir) = dir {
        let opts = hsx::export::hf::HfOptions { base_model: a.base_model.clone() };
        print::export_hf(out, &hsx::export::hf::export(&view, dir, &opts)?);
    }
    if let Some(tracking_uri) = uri {
        let opts = hsx::export::mlflow::MlflowOptions { tracking_uri, experiment: a.experiment.clone() };
        print::export_mlflow(out, &hsx::export::mlflow::export(&view, &opts)?);
    }
    Ok(0)
}

pub fn keygen(out: Out, a: &KeygenArgs) -> Result<u8> {
    let path = a.out.clone().unwrap_or_else(keys::default_key_path);
    let (key, created) = if a.if_missing && path.exists() {
        (SigningKeyFile::load(&path)?, false)
    } else {
        (SigningKeyFile::generate(&path, a.force)?, true)
    };
    let s = key.signer();
    if out.json {
        print_json(&json!({"path": path, "created": created, "key_id": s.key_id, "public_key": s.public_key,
                           "trusted_keys_line": TrustedKeys::line_for(&s)}));
    } else if !out.quiet {
        println!("{} signing key {}", if created { "created" } else { "existing" }, path.display());
        println!("key id:     {}", s.key_id);
        println!("public key: {}", s.public_key);
        println!("trusted_keys line:\n{}", TrustedKeys::line_for(&s));
    }
    Ok(0)
}

pub fn data(out: Out, d: &DataCommand) -> Result<u8> {
    match d {
        DataCommand::Fetch { dir, files, base_url } => {
            let got = hsx::data::fetch::fetch(base_url, files, dir)?;
            if out.json {
                print_json(&serde_json::to_value(&got)?);
            } else {
                for f in got {
                    let check =
                        if f.verified_known_hash { "matches the official hash" } else { "no known hash to check" };
                    println!("{}: {} bytes, sha256 {} ({check})", f.path.display(), f.bytes, f.sha256);
                }
            }
        }
        DataCommand::Stats { skip_invalid, files } => {
            let opts = hsx::data::ReadOptions { skip_invalid: *skip_invalid, ..Default::default() };
            let mut m = serde_json::Map::new();
            for f in files {
                let r = hsx::data::read_file(f, &opts)?;
                let st = hsx::data::stats::split_stats(&r.examples);
                m.insert(f.display().to_string(), json!({"rows": r.rows, "skipped": r.skipped, "stats": st}));
            }
            json_or_pretty(out, &serde_json::Value::Object(m));
        }
    }
    Ok(0)
}

pub fn report(out: Out, a: &ReportArgs) -> Result<u8> {
    let trusted = a.trusted_keys.as_deref().map(TrustedKeys::load).transpose()?;
    let ledger = hsx::ledger::open_verified(&a.ledger, trusted.as_ref())?;
    let template = match &a.template {
        Some(t) => hsx::fsx::read_file_string(t, hsx::fsx::Limit::TEMPLATE)
            .with_context(|| format!("cannot read the template {}", t.display()))?,
        None => hsx::report::DEFAULT_TEMPLATE.to_owned(),
    };
    let run_dir = hsx::ledger::store::locate(&a.ledger, &ledger.header)?.run;
    let out_dir = hsx::fsx::dir_of(&a.out).to_owned();
    // Only the files --out names: the markdown file, and beside it the table and plots it links to.
    let target = hsx::report::ReportTarget {
        root: out_dir.clone(),
        markdown: a.out.clone(),
        ledger: hsx::ledger::store::resolve_ledger_path(&a.ledger)?,
        claimed: false,
        force: a.force,
    };
    let written = hsx::report::write_report(&ledger, &run_dir, &target, &template)?;
    if out.json {
        print_json(&json!({"report": a.out, "files": written}));
    } else if !out.quiet {
        println!("wrote {} and {} other file(s) in {}", a.out.display(), written.len() - 1, out_dir.display());
    }
    Ok(0)
}

pub fn reproduce(out: Out, a: &ReproduceArgs) -> Result<u8> {
    let trusted = a.trusted_keys.as_deref().map(TrustedKeys::load).transpose()?;
    let ledger = hsx::ledger::open_verified(&a.ledger, trusted.as_ref())?;
    // Apply the recording's CPU pins: re-execute with them when this process runs with others.
    if let Some(first) = ledger.entries.first() {
        let pins = hsx::runtime::recorded_pins(&first.env["torch"])
            .map_err(|e| anyhow!("{}: entry 0: {e}", a.ledger.display()))?;
        if let hsx::runtime::RecordedPins::Restart { env, differences } = pins {
            tracing::info!("applying the recorded CPU settings: {}", differences.join("; "));
            let err = hsx::runtime::restart_with(&env);
            bail!("cannot restart hsx with the recorded CPU settings ({}): {err}", differences.join("; "));
        }
    }
    let dir = a.out.clone().unwrap_or_else(|| {
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        hsx::ledger::store::default_reproduce_dir(&a.ledger, &ledger.header, stamp)
    });
    let opts = hsx::reproduce::ReproduceOptions {
        ledger: a.ledger.clone(),
        out: dir,
        from: a.from.clone(),
        key: a.key.clone().unwrap_or_else(keys::default_key_path),
        workspace: cwd()?,
        data_mirror: a.data_mirror.clone(),
        threads: a.threads,
        seed: a.seed,
    };
    let rep = hsx::reproduce::reproduce(&opts, &CliProgress(out))?;
    print::reproduce_report(out, &rep);
    Ok(if rep.ok { 0 } else { 1 })
}

#[derive(serde::Deserialize)]
struct PairLine {
    input: String,
    target: String,
}

pub fn train(out: Out, a: &TrainArgs) -> Result<u8> {
    use hsx::model::adapter::{load_t5_lora, merge_and_save, save_adapter};
    use hsx::model::lora::LoraConfig;
    use hsx::model::train::{parameter_count, train, Example, Recipe};
    let read = |p: &Path| -> Result<Vec<PairLine>> {
        let rows =
            hsx::data::read_jsonl_as::<PairLine>(p).context("each line must be {\"input\": ..., \"target\": ...}")?;
        if rows.is_empty() {
            bail!("{} holds no examples", p.display());
        }
        Ok(rows)
    };
    let train_rows = read(&a.train)?;
    let val_rows = match &a.val {
        Some(v) => read(v)?,
        None => Vec::new(),
    };
    hsx::runtime::set_threads(a.threads);
    hsx::runtime::set_deterministic(true).map_err(|m| anyhow!("cannot configure libtorch: {m}"))?;
    let device = hsx::model::parse_device(&a.device)?;
    let lora = LoraConfig {
        r: a.lora_r,
        alpha: a.lora_alpha.unwrap_or(2.0 * a.lora_r as f64),
        dropout: hsx::config::Lora::default().dropout,
        targets: vec!["q".into(), "v".into()],
    };
    tch::manual_seed(a.seed as i64);
    let (m, lora_vs) = load_t5_lora(&a.model, device, &lora, None)?;
    let tok = |rows: &[PairLine]| -> Result<Vec<Example>, hsx::model::ModelError> {
        rows.iter()
            .map(|r| {
                Ok(Example {
                    input_ids: m.tokenizer.encode(&r.input, Some(a.max_input_tokens))?,
                    labels: m.tokenizer.encode(&r.target, Some(a.max_target_tokens))?,
                })
            })
            .collect()
    };
    let (train_ex, val_ex) = (tok(&train_rows)?, tok(&val_rows)?);
    let mut recipe = Recipe::from_config(&hsx::config::Train::default(), a.seed, device.is_cuda());
    if let Some(e) = a.epochs {
        recipe.hyper.epochs = e;
    }
    if let Some(lr) = a.lr {
        recipe.hyper.lr = lr;
    }
    let total = parameter_count(&m.vs) + parameter_count(&lora_vs);
    let progress = BarProgress::new(out, "{bar:30} {pos}/{len} steps  {msg}  ETA {eta}");
    let report = train(&m.model, &lora_vs, total, &train_ex, &val_ex, &recipe, m.tokenizer.pad_id, &progress)?;
    progress.bar.finish_and_clear();
    // OUT is the directory the user named: everything is written below it, through hsx::fsx.
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    save_adapter(&lora_vs, &lora, &a.model.display().to_string(), &a.out, &a.out)?;
    let metrics = serde_json::to_value(&report)?;
    let text = format!("{}\n", serde_json::to_string_pretty(&metrics)?);
    hsx::fsx::write(&a.out, &a.out.join("train_metrics.json"), text.as_bytes())?;
    if a.merge {
        merge_and_save(&a.model, &m, &a.out, &a.out.join("merged"))?;
    }
    if out.json {
        print_json(&json!({"event": "done", "out": a.out, "metrics": metrics}));
    } else if !out.quiet {
        println!(
            "trainable parameters: {} of {} ({:.3}%)",
            report.trainable_parameters,
            report.total_parameters,
            100.0 * report.trainable_share
        );
        println!(
            "{} steps in {:.1} s; best epoch {} (val loss {:?}); adapter in {}",
            report.optimizer_steps,
            report.wall_seconds,
            report.best_epoch,
            report.val_loss_per_epoch,
            a.out.display()
        );
    }
    Ok(0)
}

#[derive(serde::Deserialize)]
struct IdText {
    id: serde_json::Value,
    text: String,
}

/// Reads {"id", "text"} lines keyed by id (string or number), refusing duplicates and empty files.
fn read_id_text(path: &Path) -> Result<BTreeMap<String, String>> {
    let rows =
        hsx::data::read_jsonl_as::<IdText>(path).context("each line must be {\"id\": ..., \"text\": \"...\"}")?;
    if rows.is_empty() {
        bail!("{} holds no rows", path.display());
    }
    let mut m = BTreeMap::new();
    for r in rows {
        let id = match &r.id {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if m.insert(id.clone(), r.text).is_some() {
            bail!("{}: id {id:?} appears twice", path.display());
        }
    }
    Ok(m)
}

pub fn score(out: Out, a: &ScoreArgs) -> Result<u8> {
    use hsx::metrics::registry::METRICS;
    use hsx::metrics::{estimate, lexical, Metric};
    let metrics: Vec<Metric> =
        a.metrics.split(',').map(str::parse).collect::<Result<_, String>>().map_err(|e| anyhow!("--metrics: {e}"))?;
    if a.resamples < 1000 {
        bail!("--resamples must be at least 1000");
    }
    let preds = read_id_text(&a.pred)?;
    let refs = read_id_text(&a.reference)?;
    let only_pred: Vec<&String> = preds.keys().filter(|k| !refs.contains_key(*k)).collect();
    let only_ref: Vec<&String> = refs.keys().filter(|k| !preds.contains_key(*k)).collect();
    if !only_pred.is_empty() || !only_ref.is_empty() {
        let show = |v: &[&String]| v.iter().take(10).map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        bail!(
            "ids do not match: {} only in {} [{}], {} only in {} [{}]",
            only_pred.len(),
            a.pred.display(),
            show(&only_pred),
            only_ref.len(),
            a.reference.display(),
            show(&only_ref)
        );
    }
    let ids: Vec<&String> = refs.keys().collect();
    let p: Vec<String> = ids.iter().map(|i| preds[*i].clone()).collect();
    let r: Vec<String> = ids.iter().map(|i| refs[*i].clone()).collect();
    let mut per = lexical(&p, &r, &metrics, a.stemmer);
    let mut res = serde_json::Map::new();
    res.insert("n".into(), json!(ids.len()));
    if metrics.contains(&Metric::BertScore) {
        let bert = hsx::model::bert::load_minilm(a.bertscore_model.as_deref(), tch::Device::Cpu)?;
        let opts =
            hsx::metrics::bertscore::BertScoreOptions { layer: a.bertscore_layer, idf: a.idf, ..Default::default() };
        let bs = hsx::metrics::bertscore::bertscore(&bert, &p, &r, &opts)?;
        res.insert("bertscore_model".into(), json!(bs.model));
        res.insert("bertscore_layer".into(), json!(bs.layer));
        res.insert("bertscore_idf".into(), json!(bs.idf));
        per.bertscore_precision = bs.precision;
        per.bertscore_recall = bs.recall;
        per.bertscore_f1 = bs.f1;
    }
    // Every registry metric that was computed; its position in the registry seeds its interval.
    let mut ci = serde_json::Map::new();
    for (k, def) in METRICS.iter().enumerate() {
        let v = (def.values)(&per);
        if !metrics.contains(&def.family) || v.is_empty() {
            continue;
        }
        let e = estimate(v, a.resamples, a.seed.wrapping_add(k as u64));
        res.insert(def.key.into(), json!(e.mean));
        ci.insert(def.key.into(), json!([e.ci95.0, e.ci95.1]));
    }
    if metrics.contains(&Metric::Rouge) {
        res.insert("rouge_stemmer".into(), json!(a.stemmer));
    }
    res.insert("ci95".into(), serde_json::Value::Object(ci));
    json_or_pretty(out, &serde_json::Value::Object(res));
    Ok(0)
}

pub fn embed(out: Out, a: &EmbedArgs) -> Result<u8> {
    if a.text.is_empty() {
        bail!("nothing to embed: give TEXT arguments");
    }
    let bert = hsx::model::bert::load_minilm(a.model.as_deref(), tch::Device::Cpu)?;
    let e = bert.embed(&a.text, 64, 256)?;
    for (i, t) in a.text.iter().enumerate() {
        let v: Vec<f32> = Vec::<f32>::try_from(e.get(i as i64))?;
        if out.json {
            print_json(&json!({"text": t, "embedding": v}));
        } else {
            println!("{}", v.iter().map(|x| format!("{x:.6}")).collect::<Vec<_>>().join(" "));
        }
    }
    Ok(0)
}

#[derive(serde::Deserialize)]
struct InputLine {
    input: String,
}

pub fn generate(out: Out, a: &GenerateArgs) -> Result<u8> {
    use hsx::model::{generate_keyed, load_t5, parse_device, GenerateOptions};
    if !(a.temperature >= 0.0 && a.temperature.is_finite()) {
        bail!("--temperature must be 0 (greedy) or positive, got {}", a.temperature);
    }
    if !(a.top_p > 0.0 && a.top_p <= 1.0) {
        bail!("--top-p must be in (0, 1], got {}", a.top_p);
    }
    let texts: Vec<String> = match &a.input {
        Some(path) => hsx::data::read_jsonl_as::<InputLine>(path)
            .context("each line must be {\"input\": \"...\"}")?
            .into_iter()
            .map(|l| l.input)
            .collect(),
        None => a.text.clone(),
    };
    if texts.is_empty() {
        bail!("nothing to generate: give TEXT arguments or --input FILE.jsonl");
    }
    // The pipeline's settings: deterministic algorithms (and cuBLAS's deterministic workspace) on, so two
    // identical generations give the same ids on CUDA too (scripts/gpu-check.sh checks it).
    hsx::runtime::set_deterministic(true).map_err(|m| anyhow!("cannot configure libtorch: {m}"))?;
    let device = parse_device(&a.device)?;
    let m = match &a.adapter {
        Some(ad) => hsx::model::adapter::load_with_adapter(&a.model, ad, device).map(|(m, _)| m),
        None => load_t5(&a.model, device),
    }?;
    let ids: Vec<Vec<i64>> = texts.iter().map(|t| m.tokenizer.encode(t, None)).collect::<Result<_, _>>()?;
    const BATCH: usize = 32;
    let opts = GenerateOptions {
        max_new_tokens: a.max_new_tokens,
        min_new_tokens: 0,
        temperature: a.temperature,
        top_p: a.top_p,
        seed: a.seed,
        bf16: a.bf16,
    };
    for (k, chunk) in ids.chunks(BATCH).enumerate() {
        // Input i samples from its own stream, keyed by i: the batching does not change the outputs.
        let keys: Vec<u64> = (k * BATCH..k * BATCH + chunk.len()).map(|i| i as u64).collect();
        let outs = generate_keyed(&m.model, chunk, &keys, &opts);
        for (j, o) in outs.iter().enumerate() {
            let i = k * BATCH + j;
            let text = m.tokenizer.decode(o)?;
            if out.json {
                print_json(&json!({"input": texts[i], "input_ids": ids[i], "output_ids": o, "text": text}));
            } else {
                println!("{text}");
            }
        }
    }
    Ok(0)
}

pub fn bench(b: &BenchCommand) -> Result<u8> {
    let record = match b {
        BenchCommand::Verify { dir, sizes, child } => {
            return hsx::ledger::bench::cli(dir.as_deref(), sizes, child.as_deref()).map_err(|e| anyhow!(e));
        }
        BenchCommand::Filters { data } => hsx::bench::filters(data)?,
        BenchCommand::Gemm { shapes, threads, reps } => {
            let parse = |s: &String| -> Result<(i64, i64, i64)> {
                let d: Vec<i64> = s
                    .split('x')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|_| anyhow!("--shapes: {s:?} is not MxKxN (three positive integers joined by 'x')"))?;
                match d[..] {
                    [m, k, n] if m > 0 && k > 0 && n > 0 => Ok((m, k, n)),
                    _ => bail!("--shapes: {s:?} is not MxKxN (three positive integers joined by 'x')"),
                }
            };
            let shapes = shapes.iter().map(parse).collect::<Result<Vec<_>>>()?;
            hsx::bench::gemm(&shapes, *threads, *reps)?
        }
        BenchCommand::Embed { data, threads, batch, reps, out } => {
            hsx::bench::embed(data, *threads, *batch, *reps, out.as_deref())?
        }
        BenchCommand::Metrics { pairs, reps } => hsx::bench::metrics(pairs, *reps)?,
        BenchCommand::Train { model, data, batch, threads, device, bf16 } => {
            hsx::bench::train(model, data, *batch, *threads, hsx::model::parse_device(device)?, *bf16)?
        }
        BenchCommand::Generate { model, ids, new_tokens, threads, reps, device, bf16, temperature, top_p } => {
            let valid = temperature.is_finite() && *temperature >= 0.0 && *top_p > 0.0 && *top_p <= 1.0;
            if !valid {
                bail!("--temperature must be 0 or positive and --top-p in (0, 1], got {temperature} and {top_p}");
            }
            let sampling = hsx::bench::Sampling { temperature: *temperature, top_p: *top_p };
            let device = hsx::model::parse_device(device)?;
            hsx::bench::generate(model, ids, *new_tokens, *threads, *reps, device, *bf16, sampling)?
        }
    };
    print_json(&record);
    Ok(0)
}
