//! `hsx verify` as a library call: the ledger audit ([`crate::ledger::verify`]: format, chain,
//! signatures, signed head, trusted signers, times, config hashes, recorded files — with the roots
//! resolved from the ledger's own location, never the working directory), then the analysis held to the
//! pre-registration ([`crate::prereg::check_ledger`]), then REPORT.md re-rendered from the ledger entries
//! it was rendered from and compared with the file on disk (a report made by other report code, by its
//! recorded code identity, is held to its signed hash instead, with a note). The CLI only prints.
use std::path::{Path, PathBuf};

use crate::ledger::verify::{verify_collect, VerifyOptions, VerifyReport};
use crate::ledger::LedgerError;

/// Verifies the ledger at `ledger_path`, including the pre-registration and report checks. `Err` means
/// the file could not be read as a ledger at all; a report with `ok = false` means a check failed.
pub fn verify(ledger_path: &Path, mirror: Option<&Path>, opts: &VerifyOptions) -> Result<VerifyReport, LedgerError> {
    let (mut report, _) = verify_collect(ledger_path, mirror, opts)?;
    // The entries themselves (structure, chain, signatures), even when a recorded file failed: the
    // report check below says which line of a tampered REPORT.md differs.
    let Ok(ledger) = crate::ledger::store::read(ledger_path) else { return Ok(report) };
    // The analysis must follow the pre-registration in effect for it. A reproduction ledger records
    // verdicts about another ledger's stages (params `reproduces`), not an analysis of its own: the
    // pre-registration it is held to is the reproduced ledger's, checked when that ledger is verified.
    let reproduction = ledger.entries.iter().any(|e| e.params.get("reproduces").is_some());
    if let Some(v) = (!reproduction).then(|| crate::prereg::check_ledger(&ledger.entries)).flatten() {
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
    // A self-contained run keeps its report under its run directory; others under the workspace.
    let base = if ledger.header.run_dir == "." { report.roots.run.clone() } else { report.roots.workspace.clone() };
    let Some(base) = base.map(PathBuf::from) else { return Ok(report) };
    let report_code = crate::stages::code::identity(crate::stages::registry::Stage::Report).sha256;
    match crate::report::check_report_entry(&ledger, &base, &report_code) {
        Ok(None) => {}
        // Made by other report code: not re-rendered, held to its signed hash; the reader is told.
        Ok(Some(note)) => report.notes.push(note),
        Err(f) => {
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
    }
    Ok(report)
}
