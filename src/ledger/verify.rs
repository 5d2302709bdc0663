//! `hsx verify`: format, chain, signatures, trusted signers, times, config hashes, signed head, the
//! head a rendered report cites, and every recorded file.
//!
//! Checks run per entry in a fixed order, so a failure names the most specific field: number spelling
//! (a number spelt as hsx never writes it is *tampered*: [`super::spelling`]) → typed form → `seq` →
//! `experiment` → `header_sha256` → `prev` → times → `config_sha256` → file paths → `hash` →
//! `signature` → trusted signer; files on disk are checked after the chain, and the first
//! failure reported is the one of the earliest entry. A file that is absent (or whose root is not
//! available on this machine, e.g. no data mirror) is *missing*; present but different is *tampered*;
//! not a regular file, or resolving outside its root, is *refused* (never opened). A file record is
//! checked on disk unless a later entry wrote the same file again (a re-run stage supersedes the
//! earlier record), so an edited artifact is blamed on the entry that produced it; each distinct file
//! is hashed once.
//!
//! Bounded: the file is streamed (one entry in memory at a time, plus one small record per file),
//! sizes are compared before hashing, and only regular files are opened.
//!
//! ```text
//! hsx verify --ledger ledger/exp-42.json --trusted-keys ledger/trusted_keys [--expect-head <hash>]
//! ```
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use std::path::Path;

mod checker;
mod outcome;
use checker::Checker;
use outcome::fail;
pub use outcome::{EntryVerdict, Failure, RootsShown, VerifyOptions, VerifyReport};

use super::files::Roots;
use super::spelling::first_respelling;
use super::{Header, Ledger, LedgerError};

/// Verifies the ledger at `path` with the given roots. `Err` means the file could not be read as a
/// ledger at all (exit 2); a report with `ok = false` means a check failed (exit 1).
pub fn verify_file(path: &Path, roots: &Roots, opts: &VerifyOptions) -> Result<VerifyReport, LedgerError> {
    run_file(path, RootsFrom::Given(roots), opts, false).map(|(r, _)| r)
}

/// Verifies the ledger at `path`, resolving its roots from the ledger's own location (never the
/// working directory); `mirror` is the CosmosQA mirror (`$HSX_DATA_MIRROR`), if any.
pub fn verify_at(path: &Path, mirror: Option<&Path>, opts: &VerifyOptions) -> Result<VerifyReport, LedgerError> {
    run_file(path, RootsFrom::Location(mirror), opts, false).map(|(r, _)| r)
}

/// As [`verify_at`], also returning the typed ledger when it could be read.
pub fn verify_collect(
    path: &Path,
    mirror: Option<&Path>,
    opts: &VerifyOptions,
) -> Result<(VerifyReport, Option<Ledger>), LedgerError> {
    run_file(path, RootsFrom::Location(mirror), opts, true)
}

/// Verifies an already-parsed ledger document (tests, tools). No signed-head file is consulted, and no
/// number spelling (a parsed value has none: see [`super::spelling`]).
pub fn verify_value(
    raw: &Value,
    path: &Path,
    roots: &Roots,
    opts: &VerifyOptions,
) -> Result<VerifyReport, LedgerError> {
    let not_ledger = |message: String| LedgerError::Format { path: path.to_owned(), message };
    let obj = raw.as_object().ok_or_else(|| not_ledger("the top level is not a JSON object".into()))?;
    let header_raw = obj.get("header").ok_or_else(|| not_ledger("no `header` member".into()))?;
    let entries_raw =
        obj.get("entries").and_then(Value::as_array).ok_or_else(|| not_ledger("no `entries` array".into()))?;
    let mut c = Checker::new(path, opts, false);
    if let Some(extra) = obj.keys().find(|k| *k != "header" && *k != "entries") {
        c.header_failure(fail(None, None, extra.as_str(), "unknown top-level member"));
    }
    c.header(header_raw, None);
    for e in entries_raw {
        c.entry(e.clone(), None);
    }
    Ok(c.finish(Some(roots.clone())).0)
}

enum RootsFrom<'a> {
    Given(&'a Roots),
    Location(Option<&'a Path>),
}

fn run_file(
    path: &Path,
    roots: RootsFrom,
    opts: &VerifyOptions,
    keep: bool,
) -> Result<(VerifyReport, Option<Ledger>), LedgerError> {
    // A regular file only (a FIFO or device is refused without blocking), at most `Limit::LEDGER`.
    let open = || -> Result<_, LedgerError> {
        let f = crate::fsx::open_file(path, crate::fsx::Limit::LEDGER).map_err(|e| match e {
            crate::fsx::FsError::TooLarge { size, limit, .. } => LedgerError::Format {
                path: path.to_owned(),
                message: format!("{size} bytes is larger than the {limit} byte limit"),
            },
            e => e.into(),
        })?;
        Ok(std::io::BufReader::with_capacity(1 << 20, f))
    };
    let mut c = Checker::new(path, opts, keep);
    let parse = |c: &mut Checker, pass: Pass| -> Result<(), LedgerError> {
        let mut de = serde_json::Deserializer::from_reader(open()?);
        let r = Doc { c: &mut *c, pass }.deserialize(&mut de).and_then(|_| de.end());
        r.map_err(|e| LedgerError::Format {
            path: path.to_owned(),
            message: match c.reading {
                Some(i) => format!("JSON error in entry {i} (line {}, column {}): {e}", e.line(), e.column()),
                None => format!("JSON error at line {}, column {}: {e}", e.line(), e.column()),
            },
        })
    };
    {
        use std::io::BufRead;
        let mut r = open()?;
        let start = r.fill_buf().map_err(|source| LedgerError::Io { path: path.to_owned(), source })?;
        super::spelling::refuse_bom(start, "the ledger")
            .map_err(|message| LedgerError::Format { path: path.to_owned(), message })?;
    }
    parse(&mut c, Pass::First)?;
    if !c.saw_header {
        return Err(LedgerError::Format { path: path.to_owned(), message: "no `header` member".into() });
    }
    if !c.saw_entries {
        return Err(LedgerError::Format { path: path.to_owned(), message: "no `entries` array".into() });
    }
    if c.deferred_entries {
        // `entries` came before `header`: stream them again now that the header is known.
        parse(&mut c, Pass::EntriesOnly)?;
    }
    let roots = match roots {
        RootsFrom::Given(r) => Some(r.clone()),
        RootsFrom::Location(mirror) => match &c.header {
            Some(h) => roots_from_location(path, h, c.last_data_dir.as_deref(), mirror),
            None => None,
        },
    };
    c.head_file_check();
    Ok(c.finish(roots))
}

fn roots_from_location(path: &Path, header: &Header, data_dir: Option<&str>, mirror: Option<&Path>) -> Option<Roots> {
    super::location::roots_for(path, header, data_dir, mirror).ok()
}

#[derive(Clone, Copy, PartialEq)]
enum Pass {
    First,
    EntriesOnly,
}

struct Doc<'c, 'o> {
    c: &'c mut Checker<'o>,
    pass: Pass,
}

impl<'de> DeserializeSeed<'de> for Doc<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Doc<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a ledger object {\"header\": ..., \"entries\": [...]}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys: Vec<String> = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            if keys.contains(&k) {
                return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
            }
            match (k.as_str(), self.pass) {
                ("header", Pass::First) => {
                    let raw: Box<RawValue> = map.next_value()?;
                    let v = strict(&raw)?;
                    self.c.saw_header = true;
                    self.c.header(&v, first_respelling(raw.get()));
                }
                ("entries", Pass::First) if !self.c.saw_header => {
                    map.next_value::<IgnoredAny>()?;
                    self.c.saw_entries = true;
                    self.c.deferred_entries = true;
                }
                ("entries", _) => {
                    self.c.saw_entries = true;
                    map.next_value_seed(Entries { c: &mut *self.c })?;
                }
                (_, Pass::EntriesOnly) => {
                    map.next_value::<IgnoredAny>()?;
                }
                (other, Pass::First) => {
                    map.next_value::<IgnoredAny>()?;
                    self.c.header_failure(fail(None, None, other, "unknown top-level member"));
                }
            }
            keys.push(k);
        }
        Ok(())
    }
}

/// Parses an entry's (or the header's) raw text as untrusted JSON (duplicate member names refused).
fn strict<E: serde::de::Error>(raw: &RawValue) -> Result<Value, E> {
    crate::canonical::parse_strict(raw.get().as_bytes()).map_err(E::custom)
}

struct Entries<'c, 'o> {
    c: &'c mut Checker<'o>,
}

impl<'de> DeserializeSeed<'de> for Entries<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of entries")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            self.c.reading = Some(self.c.index);
            match seq.next_element::<Box<RawValue>>()? {
                Some(raw) => self.c.entry(strict(&raw)?, first_respelling(raw.get())),
                None => break,
            }
        }
        self.c.reading = None;
        Ok(())
    }
}
