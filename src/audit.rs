//! `hsx verify` as a library call: place the roots from the ledger itself, run the ledger audit
//! ([`crate::ledger::verify`]: format, chain, signatures, trusted signers, config hashes, recorded
//! files), then hold the analysis to the pre-registration ([`crate::prereg::check_ledger`]), then re-render REPORT.md from the ledger and compare it with the file on disk. The CLI only
//! prints the result.
use std::path::Path;

use crate::ledger::verify::{verify_file, VerifyOptions, VerifyReport};
use crate::ledger::{LedgerError, Roots};

/// Roots for verifying the ledger at `ledger_path` from `workspace`: the header's `run_dir` and the
/// last entry's `data.dir` (or the mirror), each only if it is a safe relative path.
pub fn roots_for(ledger_path: &Path, workspace: &Path, mirror: Option<&Path>) -> Result<Roots, LedgerError> {
    let raw = crate::ledger::store::read_raw(ledger_path)?;
    let run_dir = raw.pointer("/header/run_dir").and_then(|v| v.as_str()).map(str::to_owned);
    let data_dir = raw
        .pointer("/entries")
        .and_then(|e| e.as_array())
        .and_then(|e| e.last())
        .and_then(|e| e.pointer("/config/data/dir"))
        .and_then(|v| v.as_str())
        .unwrap_or("data/cosmosqa")
        .to_owned();
    let safe = |p: &str| crate::ledger::files::check_relative(p).is_ok();
    Ok(Roots {
        run: run_dir.filter(|r| safe(r)).map(|r| workspace.join(r)),
        data: if safe(&data_dir) || mirror.is_some() { Some(crate::pipeline::data_root(workspace, mirror, &data_dir)) } else { None },
        workspace: Some(workspace.to_owned()),
    })
}

/// Verifies the ledger at `ledger_path`, including the report re-render check. `Err` means the file
/// could not be read as a ledger at all; a report with `ok = false` means a check failed.
pub fn verify(ledger_path: &Path, workspace: &Path, mirror: Option<&Path>, opts: &VerifyOptions) -> Result<VerifyReport, LedgerError> {
    let roots = roots_for(ledger_path, workspace, mirror)?;
    let mut report = verify_file(ledger_path, &roots, opts)?;
    let Ok(ledger) = crate::ledger::store::read(ledger_path) else { return Ok(report) };
    // The analysis must follow the pre-registration in effect for it.
    if let Some(v) = crate::prereg::check_ledger(&ledger.entries) {
        let f = crate::ledger::verify::Failure {
            entry: Some(v.entry),
            stage: Some(v.stage.clone()),
            field: v.field.clone(),
            message: format!("pre-registration: {}", v.message),
        };
        if report.first_failure.is_none() {
            report.first_failure = Some(f.clone());
        }
        if let Some(e) = report.entries.get_mut(v.entry) {
            e.verdict = "failed".into();
            e.failure.get_or_insert(f);
        }
        report.ok = false;
    }
    // The report's figures must match the entries they came from: re-render and compare.
    if let Some(f) = crate::report::check_report_entry(&ledger, workspace) {
        match &mut report.first_failure {
            // The file's hash already failed: add which line and number differ from the ledger.
            Some(first) if first.entry == f.entry => first.message = format!("{}; {}", f.message, first.message),
            Some(_) => {}
            None => report.first_failure = Some(f.clone()),
        }
        if let Some(v) = f.entry.and_then(|i| report.entries.get_mut(i)) {
            v.verdict = "failed".into();
            v.failure.get_or_insert(f);
        }
        report.ok = false;
    }
    Ok(report)
}
