//! `REPORT.md`, rendered with minijinja (strict undefined: a missing value is an error, never a blank)
//! from ledger entries only. Every figure comes from an entry's metrics or parameters, and every number
//! the template prints cites its entry as `[#seq hash]`. The plots are artifacts the `compare` entry
//! records; they are copied into the report folder only after their hashes check out.
//!
//! ```text
//! hsx report --ledger ledger/exp-42.json --out report/REPORT.md
//! ```
use minijinja::{Environment, UndefinedBehavior, Value as MjValue};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ledger::verify::Failure;
use crate::ledger::{Entry, Ledger};
use crate::metrics::registry;
use crate::stages::compare::Comparison;
use crate::stages::registry::{Arm, Model, Stage};
use crate::stages::synthesize::SynthesizeMetrics;
use crate::synth::{filters, Strategy};

pub mod markdown;

pub const DEFAULT_TEMPLATE: &str = include_str!("../templates/REPORT.md.j2");

pub(crate) mod error;
pub use error::ReportError;

mod records;
pub use records::{entry_record, read_record, ReportMetrics};

fn seconds_between(a: &str, b: &str) -> Option<f64> {
    use time::format_description::well_known::Rfc3339;
    let a = time::OffsetDateTime::parse(a, &Rfc3339).ok()?;
    let b = time::OffsetDateTime::parse(b, &Rfc3339).ok()?;
    Some(((b - a).as_seconds_f64() * 10.0).round() / 10.0)
}

/// The first `n` characters of a hash (all of it when shorter: a ledger read without verifying may hold
/// anything there).
fn prefix(hash: &str, n: usize) -> &str {
    hash.char_indices().nth(n).map(|(i, _)| &hash[..i]).unwrap_or(hash)
}

/// The latest entry of each stage.
pub fn latest_by_stage(entries: &[Entry]) -> BTreeMap<String, &Entry> {
    let mut m = BTreeMap::new();
    for e in entries {
        m.insert(e.stage.clone(), e);
    }
    m
}

/// The stages a report needs: every stage before `report`.
fn reported_stages() -> impl Iterator<Item = Stage> {
    Stage::ALL.into_iter().filter(|s| *s != Stage::Report)
}

/// The template context: the ledger's facts, nothing else, plus the registries' labels (metrics, filters,
/// stages, arms) so the template loops over data instead of naming them.
pub fn context(ledger: &Ledger, entries: &[Entry]) -> Result<Value, ReportError> {
    let by = latest_by_stage(entries);
    for s in reported_stages() {
        if !by.contains_key(s.name()) {
            return Err(ReportError::MissingStage(s.name().into()));
        }
    }
    let mut stages = serde_json::Map::new();
    let mut total = 0.0;
    for s in reported_stages() {
        let e = by[s.name()];
        let wall = seconds_between(&e.started, &e.finished).unwrap_or(0.0);
        total += wall;
        stages.insert(
            s.template_key(),
            json!({
                "seq": e.seq, "hash": e.hash, "short": prefix(&e.hash, 10), "cite": format!("[#{} {}]", e.seq, prefix(&e.hash, 8)),
                "started": e.started, "finished": e.finished, "wall_seconds": wall,
                "metrics": entry_record(e)?, "params": e.params, "seed": e.seeds.stage,
                "determinism": e.determinism,
            }),
        );
    }
    let last = by[Stage::Compare.name()];
    let env = &last.env;
    // The compared metrics the compare entry recorded, in registry order.
    let (comparison, _) = read_record::<Comparison>(last)?;
    let recorded = |key: &str| comparison.table.get(Arm::A.letter()).is_some_and(|row| row.contains_key(key));
    let metrics: Vec<Value> = registry::compared()
        .filter(|m| recorded(m.key))
        .map(|m| json!({"key": m.key, "label": m.label, "title": m.title}))
        .collect();
    Ok(json!({
        "experiment": ledger.header.experiment,
        "signer": ledger.header.signer.key_id,
        "config_sha256": last.config_sha256,
        "config": last.config,
        // Every setting departing from the seed's specification, with the config's reason (config::seed).
        "deviations": crate::config::seed::deviations(&last.config),
        "git": last.git,
        "date": last.finished.get(..10).unwrap_or(&last.finished),
        "env": env,
        "master_seed": last.seeds.master,
        "stages": stages,
        "stage_order": reported_stages().map(Stage::template_key).collect::<Vec<_>>(),
        // The fine-tuned models (training tables) and every evaluated model, model 0 first (results).
        "arms": Arm::ALL.iter().map(|a| json!({"letter": a.letter(), "data": a.data()})).collect::<Vec<_>>(),
        "models": Model::ALL
            .iter()
            .map(|m| json!({"letter": m.label(), "data": m.data(), "stage": Stage::Evaluate(*m).template_key(), "fine_tuned": m.adapter_stage().is_some()}))
            .collect::<Vec<_>>(),
        "metrics": metrics,
        "metric_titles": registry::METRICS.iter().map(|m| (m.key.to_string(), json!(m.title))).collect::<serde_json::Map<_, _>>(),
        "filters": filter_rows(&read_record::<SynthesizeMetrics>(by[Stage::Synthesize.name()])?.0)?,
        // The sampler each sampling stage used (entries that predate the field: the host sampler).
        "samplers": {
            "contaminate": read_record::<crate::stages::contaminate::ContaminateMetrics>(by[Stage::Contaminate.name()])?.0.sampler(),
            "synthesize": read_record::<SynthesizeMetrics>(by[Stage::Synthesize.name()])?.0.sampler(),
        },
        "strategies": Strategy::ALL.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "total_wall_seconds": (total * 10.0f64).round() / 10.0,
        // `ledger head: seq N, sha256 H` of the entries rendered; `hsx verify` checks a REPORT.md citing it.
        "ledger_head": entries.last().map(|e| crate::ledger::head::citation(&crate::ledger::Head { seq: e.seq, hash: e.hash.clone() })),
        // Its hash, for the `--expect-head` of the reproduce commands.
        "ledger_head_sha256": entries.last().map(|e| &e.hash),
        "entries": entries.iter().map(|e| json!({"seq": e.seq, "stage": e.stage, "short": prefix(&e.hash, 10),
            "wall_seconds": seconds_between(&e.started, &e.finished).unwrap_or(0.0)})).collect::<Vec<_>>(),
    }))
}

/// One row per rejection reason the synthesize entry lists (`filter_order`): its name, its threshold
/// text from the filter registry rendered with the recorded thresholds, its counts, and per strategy (in
/// `Strategy::ALL` order) its first-failing and would-fail counts (`n/a` where the entry has none).
fn filter_rows(sy: &SynthesizeMetrics) -> Result<Vec<Value>, ReportError> {
    let env = environment();
    let mut sealed = serde_json::to_value(sy)
        .map_err(|e| ReportError::Template { name: "synthesize entry".into(), message: e.to_string() })?;
    sealed_numbers(&mut sealed);
    let ctx = MjValue::from_serialize(&sealed);
    let count = |table: &BTreeMap<String, usize>, name: &str| table.get(name).copied().unwrap_or(0);
    sy.filter_order
        .iter()
        .map(|name| {
            let name = name.as_str();
            let (_, text) = filters::rejection_reasons()
                .find(|(r, _)| *r == name)
                .ok_or_else(|| ReportError::UnknownFilter(name.into()))?;
            // The registry's text is markup; the recorded values in it are escaped (a `.md` name).
            let threshold = env.render_named_str("threshold.md", text, &ctx).map_err(|e| ReportError::Template {
                name: format!("threshold of filter {name}"),
                message: format!("{e:#}"),
            })?;
            let by_strategy: Vec<Value> = Strategy::ALL
                .iter()
                .map(|s| {
                    let counts = sy.per_strategy.get(s.name());
                    // A count, or "n/a" where the entry has none (older entries count per strategy only in total).
                    let c = |table: Option<&BTreeMap<String, usize>>| {
                        table.and_then(|t| t.get(name)).map_or(json!("n/a"), |n| json!(n))
                    };
                    json!({"strategy": s.name(), "first_failing": c(counts.and_then(|c| c.first_failing.as_ref())),
                           "would_fail": c(counts.and_then(|c| c.would_fail.as_ref()))})
                })
                .collect();
            Ok(json!({"name": name, "threshold": threshold, "first_failing": count(&sy.rejections_first_failing, name),
                      "would_fail": count(&sy.rejections_would_fail, name), "by_strategy": by_strategy}))
        })
        .collect()
}

fn num(v: &MjValue) -> Option<f64> {
    f64::try_from(v.clone()).ok().or_else(|| i64::try_from(v.clone()).ok().map(|i| i as f64))
}

/// A number filter's text: hsx wrote it from numbers alone, so it holds no markup (printed as it is).
type Computed = Result<MjValue, minijinja::Error>;

fn computed(text: String) -> Computed {
    Ok(MjValue::from_safe_string(text))
}

/// The report's minijinja environment: strict undefined behaviour, every printed value escaped for
/// Markdown in REPORT.md ([`markdown`]), and the number filters.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_auto_escape_callback(markdown::auto_escape);
    env.set_formatter(markdown::format);
    // f(x, n): fixed decimals; a missing or non-numeric value is an error.
    env.add_filter("f", |v: MjValue, digits: Option<usize>| -> Computed {
        let x = num(&v).ok_or_else(|| {
            minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("not a number: {v}"))
        })?;
        computed(if x.is_finite() { format!("{:.*}", digits.unwrap_or(4), x) } else { "n/a".to_owned() })
    });
    env.add_filter("pct", |v: MjValue| -> Computed {
        let x = num(&v).ok_or_else(|| {
            minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("not a number: {v}"))
        })?;
        computed(format!("{:.1}%", 100.0 * x))
    });
    env.add_filter("ci", |v: MjValue| -> Computed {
        let lo = v.get_item(&MjValue::from(0)).ok().and_then(|x| num(&x));
        let hi = v.get_item(&MjValue::from(1)).ok().and_then(|x| num(&x));
        match (lo, hi) {
            (Some(l), Some(h)) => computed(format!("[{l:.4}, {h:.4}]")),
            _ => computed("[n/a]".to_owned()),
        }
    });
    // iv(interval): an interval object `{lo, hi, level}` as "[lo, hi]".
    env.add_filter("iv", |v: MjValue| -> Computed {
        let get = |k: &str| v.get_attr(k).ok().and_then(|x| num(&x));
        match (get("lo"), get("hi")) {
            (Some(l), Some(h)) if l.is_finite() && h.is_finite() => computed(format!("[{l:.4}, {h:.4}]")),
            (Some(_), Some(_)) => computed("[undefined]".to_owned()),
            _ => Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("not an interval: {v}"))),
        }
    });
    // verdict(v): a verdict of the enum as words ("not-testable" → "not testable"); a value, so escaped.
    env.add_filter("verdict", |v: String| -> String { v.replace('-', " ") });
    // test(t): how a sign-flip p was computed.
    env.add_filter("test", |v: MjValue| -> Computed {
        let exact = v.get_attr("exact").ok().map(|x| x.is_true());
        let n = v.get_attr("resamples").ok().and_then(|x| num(&x)).unwrap_or(0.0);
        let m = v.get_attr("clusters_differing").ok().and_then(|x| num(&x)).unwrap_or(0.0);
        if exact == Some(true) && m == 0.0 {
            return computed("no item differs: p = 1 exactly".to_owned());
        }
        match exact {
            Some(true) => computed(format!("exact over all {n:.0} sign vectors")),
            Some(false) => computed(format!("Monte Carlo, {n:.0} permutations")),
            None => {
                Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("not a sign-flip test: {v}")))
            }
        }
    });
    // json(v): a value as JSON text; it holds strings from the ledger, so it is escaped when printed.
    env.add_filter("json", |v: MjValue| -> String { serde_json::to_string(&v).unwrap_or_default() });
    // code(v): a value as a code span (`path`), or as escaped text where a code span cannot hold it.
    env.add_filter("code", |v: MjValue| -> MjValue {
        markdown::code(&v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
    });
    env
}

/// Every whole number as an integer: the canonical form the entries' hashes cover writes `10000.0` as
/// `10000`, so the report prints what was sealed, however the ledger's bytes spell it.
fn sealed_numbers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0)
            {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sealed_numbers),
        Value::Object(m) => m.values_mut().for_each(sealed_numbers),
        _ => {}
    }
}

/// The context as the template sees it: numbers as sealed ([`sealed_numbers`]); each stage's citation
/// `[#seq hash]` (hsx builds it from the entry's number and escaped hash) and each filter row's threshold
/// text (rendered with its values escaped) safe to print.
fn template_context(mut ctx: Value) -> MjValue {
    sealed_numbers(&mut ctx);
    let Value::Object(mut top) = ctx else { return MjValue::from_serialize(&ctx) };
    let mut out_filters = None;
    let stages = top.remove("stages");
    // The filter rows' threshold texts: the filter registry's markup with the recorded values escaped.
    if let Some(Value::Array(rows)) = top.remove("filters") {
        let rows: Vec<MjValue> = rows
            .into_iter()
            .map(|row| {
                let Value::Object(fields) = row else { return MjValue::from_serialize(&row) };
                let fields: BTreeMap<String, MjValue> = fields
                    .into_iter()
                    .map(|(k, v)| match (k.as_str(), v) {
                        ("threshold", Value::String(t)) => (k, MjValue::from_safe_string(t)),
                        (_, v) => (k, MjValue::from_serialize(&v)),
                    })
                    .collect();
                MjValue::from(fields)
            })
            .collect();
        out_filters = Some(MjValue::from(rows));
    }
    let mut out: BTreeMap<String, MjValue> = top.into_iter().map(|(k, v)| (k, MjValue::from_serialize(&v))).collect();
    out.extend(out_filters.map(|f| ("filters".to_string(), f)));
    if let Some(Value::Object(stages)) = stages {
        let stages: BTreeMap<String, MjValue> = stages
            .into_iter()
            .map(|(name, stage)| {
                let Value::Object(fields) = stage else { return (name, MjValue::from_serialize(&stage)) };
                let seq = fields.get("seq").and_then(Value::as_u64);
                let hash = fields.get("hash").and_then(Value::as_str).map(|h| markdown::escape(prefix(h, 8)));
                let mut fields: BTreeMap<String, MjValue> =
                    fields.into_iter().map(|(k, v)| (k, MjValue::from_serialize(&v))).collect();
                if let (Some(seq), Some(hash)) = (seq, hash) {
                    fields.insert("cite".into(), MjValue::from_safe_string(format!("[#{seq} {hash}]")));
                }
                (name, MjValue::from(fields))
            })
            .collect();
        out.insert("stages".into(), MjValue::from(stages));
    }
    MjValue::from(out)
}

/// Renders the report for `entries` (a prefix of the ledger's entries, ending at or after `compare`).
pub fn render(ledger: &Ledger, entries: &[Entry], template: &str) -> Result<String, ReportError> {
    let ctx = context(ledger, entries)?;
    let mut env = environment();
    env.add_template("REPORT.md", template)
        .map_err(|e| ReportError::Template { name: "REPORT.md".into(), message: format!("{e:#}") })?;
    let t = env
        .get_template("REPORT.md")
        .map_err(|e| ReportError::Template { name: "REPORT.md".into(), message: e.to_string() })?;
    let mut out = t
        .render(template_context(ctx))
        .map_err(|e| ReportError::Template { name: "REPORT.md".into(), message: format!("{e:#}") })?;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    // A report cites one ledger head, the one it was rendered from (or none, with a template that does
    // not): text in a config or ledger value that reads as a second citation is refused, never printed.
    let head = entries.last().map(|e| crate::ledger::Head { seq: e.seq, hash: e.hash.clone() });
    if let Some(message) = citation_problem(&out, head.as_ref()) {
        return Err(ReportError::Template { name: "REPORT.md".into(), message });
    }
    for bad in ["[FILL", "X.XXX", "TO BE FILLED", "TODO"] {
        if out.contains(bad) {
            return Err(ReportError::Template {
                name: "REPORT.md".into(),
                message: format!("placeholder {bad:?} survived rendering"),
            });
        }
    }
    Ok(out)
}

/// What is wrong with the ledger heads `text` cites, given the head it was rendered from: `None` when
/// it cites at most one, and that one is `head`.
pub fn citation_problem(text: &str, head: Option<&crate::ledger::Head>) -> Option<String> {
    let cited = crate::ledger::head::cited_heads(text);
    let list = || cited.iter().map(|h| format!("({h})")).collect::<Vec<_>>().join(", ");
    match (cited.as_slice(), head) {
        ([], _) => None,
        ([one], Some(h)) if one == h => None,
        ([one], Some(h)) => Some(format!("it cites ledger head {one}, but it was rendered from {h}")),
        ([_], None) => Some(format!("it cites ledger head {}, but it was rendered from no entry", list())),
        (many, _) => Some(format!(
            "it cites {} ledger heads ({}); a report cites one, the head it was rendered from{} (a value from the \
             config or the ledger that reads `ledger head: seq …` is refused)",
            many.len(),
            list(),
            head.map(|h| format!(" ({h})")).unwrap_or_default()
        )),
    }
}

/// The entries a report covers: everything before the first `report` entry after the last `compare`.
pub fn report_entries(ledger: &Ledger) -> &[Entry] {
    let last_compare = ledger.entries.iter().rposition(|e| e.stage == Stage::Compare.name());
    match last_compare {
        Some(i) => {
            let end = ledger.entries[i..]
                .iter()
                .position(|e| e.stage == Stage::Report.name())
                .map(|p| i + p)
                .unwrap_or(ledger.entries.len());
            &ledger.entries[..end]
        }
        None => &ledger.entries[..],
    }
}

/// Where a report is written, and what it may replace.
#[derive(Debug, Clone)]
pub struct ReportTarget {
    /// The directory every write stays in, taken as named: the report directory (the report stage), or
    /// the directory of `hsx report --out FILE`.
    pub root: PathBuf,
    /// The markdown file (`<report_dir>/REPORT.md`, or `--out FILE`); the table (`metrics_table.csv`)
    /// and the plots (`plots/*.png`) that it links to go beside it. Nothing else is written.
    pub markdown: PathBuf,
    /// The ledger the report is rendered from (as a directory claim names it).
    pub ledger: PathBuf,
    /// The caller holds the directory's claim (the report stage: its executor claimed it before any stage
    /// ran), so the files there are the run's to replace and no claim is checked.
    pub claimed: bool,
    /// Replace files that differ from the report's even where the directory is not this ledger's
    /// (`hsx report --force`).
    pub force: bool,
}

/// Writes the report: the markdown file, and beside it `metrics_table.csv` and `plots/*.png`, copied
/// from the run directory after checking each against the hash the compare entry recorded. Every file is
/// checked before any is written: a directory claimed by another ledger is refused naming both (unless
/// `force`), and where the directory is not claimed for this ledger an existing file with other contents
/// is refused (unless `force`), so nothing is replaced that this ledger did not write. Returns the files
/// written, the markdown last.
pub fn write_report(
    ledger: &Ledger,
    run_dir: &Path,
    target: &ReportTarget,
    template: &str,
) -> Result<Vec<PathBuf>, ReportError> {
    let entries = report_entries(ledger);
    let text = render(ledger, entries, template)?;
    let by = latest_by_stage(entries);
    let compare =
        by.get(Stage::Compare.name()).ok_or_else(|| ReportError::MissingStage(Stage::Compare.name().into()))?;
    let dir = crate::fsx::dir_of(&target.markdown).to_owned();
    let mut planned: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for r in &compare.outputs {
        let name = Path::new(&r.path).file_name().map(|n| n.to_owned()).unwrap_or_default();
        if name == "comparison.json" {
            continue;
        }
        let src = run_dir.join(&r.path);
        let bytes = crate::fsx::read(run_dir, &src, crate::fsx::Limit::ARTIFACT)?;
        let sha = crate::canonical::sha256_hex(&bytes);
        if sha != r.sha256 {
            return Err(ReportError::File {
                path: src,
                message: format!("differs from the compare entry's record (sha256 {sha}, recorded {})", r.sha256),
            });
        }
        let dst = if r.path.starts_with("compare/plots/") { dir.join("plots").join(&name) } else { dir.join(&name) };
        planned.push((dst, bytes));
    }
    planned.push((target.markdown.clone(), text.into_bytes()));
    // The report stage's executor holds the directory's claim (a reproduction's own ledger's, though its
    // report renders the reproduced ledger): nothing to check here.
    if !target.claimed && !target.force {
        let header = ledger.header.sha256();
        crate::ledger::store::check_claim(&dir, &header, &target.ledger, crate::ledger::store::Claimed::Report)?;
        let owned = crate::ledger::store::read_claim(&dir)?.is_some_and(|c| c.header_sha256 == header);
        if !owned {
            let mut foreign = Vec::new();
            for (dst, bytes) in &planned {
                match crate::fsx::read(&target.root, dst, crate::fsx::Limit::ARTIFACT) {
                    Err(e) if e.is_not_found() => {}
                    Ok(old) if old == *bytes => {}
                    Ok(_) | Err(_) => foreign.push(dst.display().to_string()),
                }
            }
            if !foreign.is_empty() {
                return Err(ReportError::File {
                    path: dir.clone(),
                    message: format!(
                        "would replace {} ({}), which this ledger did not write (the directory is not the report \
                         directory of {}); pass --force to replace them, or write the report elsewhere",
                        if foreign.len() == 1 { "a file" } else { "files" },
                        foreign.join(", "),
                        target.ledger.display()
                    ),
                });
            }
        }
    }
    // Every destination is checked (no link, no `..`, no hard link) before the first is written.
    for (dst, _) in &planned {
        crate::fsx::check_writable(&target.root, dst)?;
    }
    let mut written = Vec::with_capacity(planned.len());
    for (dst, bytes) in planned {
        crate::fsx::write(&target.root, &dst, &bytes)?;
        written.push(dst);
    }
    Ok(written)
}

/// For `verify`: re-render and compare with the file on disk; the first differing line, if any.
pub fn check_rendered(
    ledger: &Ledger,
    on_disk: &str,
    template: &str,
) -> Result<Option<(usize, String, String)>, ReportError> {
    let expected = render(ledger, report_entries(ledger), template)?;
    if expected == on_disk {
        return Ok(None);
    }
    let (mut e, mut d) = (expected.lines(), on_disk.lines());
    let mut line = 0;
    loop {
        line += 1;
        match (e.next(), d.next()) {
            (Some(a), Some(b)) if a == b => continue,
            (a, b) => {
                return Ok(Some((
                    line,
                    a.unwrap_or("<end of file>").to_owned(),
                    b.unwrap_or("<end of file>").to_owned(),
                )))
            }
        }
    }
}

/// For `verify`: re-renders REPORT.md for the ledger's latest `report` entry and compares it with the
/// file on disk under `workspace`. `Ok(None)` when there is no report entry, the file is absent (reported
/// missing by the artifact check) or it matches; `Ok(Some(note))` when it differs but was made by other
/// report code (the entry's `env.stage_code_sha256` is not this build's report-stage identity, which covers
/// the renderer and the template; `this_code` is this build's, [`crate::stages::code::identity`]): this hsx
/// cannot re-render another renderer's bytes, so the file is held to the signed entry's output hash and its
/// head citation instead, and the note says so.
pub fn check_report_entry(ledger: &Ledger, workspace: &Path, this_code: &str) -> Result<Option<String>, Failure> {
    let Some((idx, e)) = ledger.entries.iter().enumerate().rev().find(|(_, e)| e.stage == Stage::Report.name()) else {
        return Ok(None);
    };
    let Some(dir) = e.params.get("report_dir").and_then(|v| v.as_str()) else { return Ok(None) };
    if crate::ledger::files::check_relative(dir).is_err() {
        return Ok(None);
    }
    let fail = |field: &str, message: String| Failure {
        entry: Some(idx),
        stage: Some(Stage::Report.name().into()),
        field: field.into(),
        message,
    };
    // A report rendered by another template still verifies when this hsx's template renders the same
    // text from the ledger; when it does not, the failure says the templates differ.
    let template_sha = crate::canonical::sha256_hex(DEFAULT_TEMPLATE.as_bytes());
    let recorded_sha = e.params.get("template_sha256").and_then(|v| v.as_str()).unwrap_or("(none)");
    let other_template = (recorded_sha != template_sha)
        .then(|| format!(" (it was rendered with template sha256 {recorded_sha}, this hsx carries {template_sha})"));
    // Read as untrusted input: inside its root, a regular file (a FIFO never blocks verify), bounded.
    let (root, path) = (workspace.join(dir), workspace.join(dir).join("REPORT.md"));
    let on_disk = match crate::fsx::read_string(&root, &path, crate::fsx::Limit::REPORT) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(fail("outputs", format!("{dir}/REPORT.md cannot be checked: {e}"))),
    };
    let why = other_template.clone().unwrap_or_default();
    let field = if other_template.is_some() { "params.template_sha256" } else { "outputs" };
    // The report stage rendered the entries recorded before it; a stage re-run later must not change that.
    let rendered_from = Ledger { header: ledger.header.clone(), entries: ledger.entries[..idx].to_vec() };
    // It cites that head, once: any other citation (an earlier entry's, or a second one) fails.
    let head = report_entries(&rendered_from).last().map(|e| crate::ledger::Head { seq: e.seq, hash: e.hash.clone() });
    if let Some(problem) = citation_problem(&on_disk, head.as_ref()) {
        return Err(fail("outputs", format!("{dir}/REPORT.md: {problem}")));
    }
    let differs = match check_rendered(&rendered_from, &on_disk, DEFAULT_TEMPLATE) {
        Ok(None) => return Ok(None),
        Ok(Some((line, expected, found))) => format!(
            "{dir}/REPORT.md line {line} does not match the ledger: expected {expected:?}, found {found:?}{why}"
        ),
        Err(err) => format!("cannot re-render the report: {err}{why}"),
    };
    let recorded_code = e.env.get("stage_code_sha256").and_then(|v| v.as_str());
    match recorded_code {
        Some(code) if code != this_code => {
            other_code_note(e, dir, &on_disk, code, this_code).map_err(|m| fail("outputs", m))
        }
        // Same renderer and template (or no identity recorded): the text must re-render exactly.
        _ => Err(fail(field, differs)),
    }
}

/// A report made by other report code: its bytes must be the signed entry's recorded output (the
/// artifact check says the same; this holds even where that check could not run), and the note says the
/// re-render was skipped, and why.
fn other_code_note(e: &Entry, dir: &str, on_disk: &str, code: &str, this_code: &str) -> Result<Option<String>, String> {
    let path = format!("{dir}/REPORT.md");
    let sha = crate::canonical::sha256_hex(on_disk.as_bytes());
    match e.outputs.iter().find(|r| r.path == path) {
        Some(r) if r.sha256 == sha => Ok(Some(format!(
            "entry {} (report): {path} not re-rendered: it was made by other report code (code identity {}…, \
             this hsx {}…); its bytes are checked only against the signed entry's output hash (sha256 {}…, \
             matches) and its head citation",
            e.seq,
            short(code),
            short(this_code),
            short(&sha)
        ))),
        Some(r) => Err(format!(
            "{path} (sha256 {sha}) is not the signed entry's output (sha256 {}); it was made by other report \
             code, so it cannot be re-rendered here and its recorded hash is the only check",
            r.sha256
        )),
        None => Err(format!(
            "{path} is not among the signed entry's outputs; it was made by other report code, so it cannot be \
             re-rendered here and has no recorded hash to hold it to"
        )),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
