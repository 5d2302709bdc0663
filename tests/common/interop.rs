//! The independent checkers that `scripts/interop-install.sh` installs into the cache (PyPI `rfc8785` and
//! `securesystemslib`), called from the tests: `scripts/interop/ledger_jcs.py` re-derives every entry's
//! canonical bytes, hash and signature without hsx.
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `$HSX_CACHE`, else `$XDG_CACHE_HOME/hsx`, else `~/.cache/hsx`: where the scripts install.
pub fn cache_dir() -> PathBuf {
    if let Some(c) = std::env::var_os("HSX_CACHE") {
        return PathBuf::from(c);
    }
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(x) => PathBuf::from(x).join("hsx"),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/hsx"),
    }
}

/// The interop venv's Python, checked to import the independent implementations.
pub fn python() -> PathBuf {
    let py = cache_dir().join("interop/venv/bin/python");
    let ok = std::process::Command::new(&py)
        .args(["-c", "import rfc8785, securesystemslib"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the independent RFC 8785 / ed25519 checkers are not installed ({} cannot import rfc8785 and \
         securesystemslib): run scripts/interop-install.sh (make test runs it)",
        py.display()
    );
    py
}

/// What `ledger_jcs.py` says about a ledger: its first line, and one line per entry.
pub struct Recheck {
    pub ledger: Value,
    pub entries: Vec<Value>,
}

pub fn recheck_ledger(ledger: &Path) -> Recheck {
    let script = super::repo_path("scripts/interop/ledger_jcs.py");
    let out = std::process::Command::new(python()).arg(&script).arg(ledger).output().unwrap();
    assert!(
        out.status.success(),
        "{} {} failed: {}",
        script.display(),
        ledger.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = std::str::from_utf8(&out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l}: {e}")));
    let first = lines.next().expect("a ledger line");
    Recheck { ledger: first, entries: lines.collect() }
}
