//! The entry-by-entry checks of `hsx verify`: the state carried from one entry to the next (hash chain,
//! signatures, times, file records, cited heads) and the checks themselves.
use super::super::files::{check_recorded, check_relative, FileRecord, OnDisk, Root, Roots};
use super::super::head::{cited_heads, head_path_for, Head, SignedHead};
use super::super::keys::parse_public_key;
use super::super::spelling::Respelling;
use super::super::{
    entry_canonical_bytes, verify_entry_signature, Entry, Header, Ledger, FORMAT, READ_VERSIONS, ZERO_HASH,
};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

use super::outcome::*;

/// One file record to check on disk, in entry order.
struct Pending {
    entry: usize,
    field: String,
    record: FileRecord,
}

pub(super) struct Checker<'o> {
    opts: &'o VerifyOptions,
    report: VerifyReport,
    path: PathBuf,
    pub(super) saw_header: bool,
    pub(super) saw_entries: bool,
    pub(super) deferred_entries: bool,
    pub(super) reading: Option<usize>,
    /// Set when the header failed: entries are not checked further.
    header_failed: bool,
    pub(super) header: Option<Header>,
    public: Option<ed25519_dalek::VerifyingKey>,
    header_sha: String,
    version: u32,
    created: Option<OffsetDateTime>,
    pub(super) index: usize,
    prev_hash: String,
    prev_finished: Option<OffsetDateTime>,
    /// Each entry's finish time, by position (a joined fragment starts after the entries it read from).
    finished_at: Vec<Option<OffsetDateTime>>,
    hashes: Vec<String>,
    pending: Vec<Pending>,
    /// The last entry that wrote each file, and the SHA-256 it recorded.
    last_output: HashMap<(Root, String), (usize, String)>,
    pub(super) last_data_dir: Option<String>,
    last_report_dir: Option<String>,
    /// The root the latest REPORT.md was recorded under (the workspace, or the run directory of a
    /// self-contained run); `None` when no entry recorded one.
    last_report_root: Option<Root>,
    /// Entries that reproduce another ledger's (params `reproduces`): their report re-renders that
    /// ledger and cites its head, not this one's.
    reproduction: bool,
    keep: Option<Vec<Entry>>,
    ledger_failures: Vec<Failure>,
}

impl<'o> Checker<'o> {
    pub(super) fn new(path: &Path, opts: &'o VerifyOptions, keep: bool) -> Self {
        Checker {
            opts,
            report: VerifyReport {
                ledger: path.display().to_string(),
                version: None,
                experiment: None,
                signer: None,
                entries: Vec::new(),
                head: None,
                recorded_artifacts: 0,
                checked_artifacts: 0,
                missing_artifacts: 0,
                superseded_artifacts: 0,
                roots: RootsShown::default(),
                notes: Vec::new(),
                first_failure: None,
                ok: true,
            },
            path: path.to_owned(),
            saw_header: false,
            saw_entries: false,
            deferred_entries: false,
            reading: None,
            header_failed: false,
            header: None,
            public: None,
            header_sha: String::new(),
            version: 0,
            created: None,
            index: 0,
            prev_hash: ZERO_HASH.to_owned(),
            prev_finished: None,
            finished_at: Vec::new(),
            hashes: Vec::new(),
            pending: Vec::new(),
            last_output: HashMap::new(),
            last_data_dir: None,
            last_report_dir: None,
            last_report_root: None,
            reproduction: false,
            keep: keep.then(Vec::new),
            ledger_failures: Vec::new(),
        }
    }

    pub(super) fn header_failure(&mut self, f: Failure) {
        if self.report.first_failure.as_ref().is_none_or(|x| x.entry.is_some()) {
            self.report.first_failure = Some(f);
        }
        self.header_failed = true;
    }

    /// A ledger-level failure (no entry: head, emptiness): reported after any failing entry, which is
    /// more specific.
    fn ledger_failure(&mut self, f: Failure) {
        self.ledger_failures.push(f);
    }

    /// The header; `respelt`: a number its stored text spells as hsx never writes (see
    /// [`super::super::spelling`]).
    pub(super) fn header(&mut self, raw: &Value, respelt: Option<Respelling>) {
        if let Some(r) = respelt {
            return self.header_failure(fail(None, None, format!("header.{}", r.path), r.to_string()));
        }
        let header: Header = match serde_path_to_error::deserialize(raw) {
            Ok(h) => h,
            Err(e) => {
                return self.header_failure(fail(None, None, format!("header.{}", e.path()), e.inner().to_string()))
            }
        };
        self.report.experiment = Some(header.experiment.clone());
        self.report.signer = Some(header.signer.key_id.clone());
        self.report.version = Some(header.version);
        let location_problem = if header.version == 1 {
            check_relative(&header.run_dir).err().map(|e| ("header.run_dir", e.to_string())).or_else(|| {
                header.workspace.as_ref().map(|_| ("header.workspace", "version 1 has no `workspace`".to_string()))
            })
        } else {
            super::super::location::check_location(&header.run_dir).err().map(|e| ("header.run_dir", e)).or_else(|| {
                match &header.workspace {
                    None => Some(("header.workspace", "missing".into())),
                    Some(w) => super::super::location::check_location(w).err().map(|e| ("header.workspace", e)),
                }
            })
        };
        let created = parse_time(&header.created);
        let problem = if header.format != FORMAT {
            Some(("header.format", format!("{:?} is not {FORMAT:?}", header.format)))
        } else if !READ_VERSIONS.contains(&header.version) {
            Some((
                "header.version",
                format!("version {} is not supported (this hsx reads {READ_VERSIONS:?})", header.version),
            ))
        } else if header.signer.algorithm != "ed25519" {
            Some(("header.signer.algorithm", format!("{:?} is not ed25519", header.signer.algorithm)))
        } else if let Some(p) = location_problem {
            Some(p)
        } else if created.is_none() {
            Some(("header.created", format!("{:?} is not an RFC 3339 time", header.created)))
        } else {
            None
        };
        if let Some((field, msg)) = problem {
            return self.header_failure(fail(None, None, field, msg));
        }
        let public = match parse_public_key(&header.signer.public_key) {
            Ok(p) => p,
            Err(msg) => return self.header_failure(fail(None, None, "header.signer.public_key", msg)),
        };
        if super::super::keys::key_id(&public) != header.signer.key_id {
            return self.header_failure(fail(None, None, "header.signer.key_id", "does not match the public key"));
        }
        if let Some(tk) = &self.opts.trusted {
            if let Err(msg) = tk.check(&header.signer, &header.created) {
                return self.header_failure(fail(None, None, "header.signer", msg));
            }
        }
        self.header_sha = header.sha256();
        self.version = header.version;
        self.created = created;
        self.public = Some(public);
        self.header = Some(header);
    }

    /// The next entry; `respelt` as for [`Self::header`].
    pub(super) fn entry(&mut self, raw: Value, respelt: Option<Respelling>) {
        let i = self.index;
        self.index += 1;
        let mut verdict = EntryVerdict {
            index: i,
            seq: raw.get("seq").and_then(Value::as_u64),
            stage: raw.get("stage").and_then(Value::as_str).map(str::to_owned),
            verdict: "ok".into(),
            missing: Vec::new(),
            superseded: 0,
            failure: None,
        };
        let hash = raw.get("hash").and_then(Value::as_str).unwrap_or("").to_owned();
        self.hashes.push(hash.clone());
        if self.header_failed || self.header.is_none() {
            self.finished_at.push(None);
            self.report.entries.push(verdict);
            self.prev_hash = hash;
            return;
        }
        match self.check_entry(i, &raw, &verdict, respelt) {
            Ok(e) => {
                self.report.recorded_artifacts += e.inputs.len() + e.outputs.len();
                for (kind, list) in [("inputs", &e.inputs), ("outputs", &e.outputs)] {
                    for (k, r) in list.iter().enumerate() {
                        self.pending.push(Pending { entry: i, field: format!("{kind}[{k}]"), record: r.clone() });
                    }
                }
                // check_entry accepted the record, if any.
                let fragment = super::super::fragment::recorded_fragment(&e.env).and_then(Result::ok);
                let joined = fragment.is_some();
                if let Some(r) = fragment {
                    self.report.recorded_artifacts += 1;
                    self.pending.push(Pending { entry: i, field: "env.fragment".into(), record: r });
                }
                for r in &e.outputs {
                    self.last_output.insert((r.root, r.path.clone()), (i, r.sha256.clone()));
                }
                if let Some(d) = e.config.pointer("/data/dir").and_then(Value::as_str) {
                    self.last_data_dir = Some(d.to_owned());
                }
                if let Some(d) = e.config.pointer("/experiment/report_dir").and_then(Value::as_str) {
                    self.last_report_dir = Some(d.to_owned());
                }
                if e.params.get("reproduces").is_some() {
                    self.reproduction = true;
                }
                if let Some(r) = e.outputs.iter().find(|r| r.path.ends_with("/REPORT.md") || r.path == "REPORT.md") {
                    self.last_report_root = Some(r.root);
                }
                let finished = parse_time(&e.finished);
                // A joined fragment ran beside others: the next entry may have started before it ended.
                self.prev_finished = if joined { self.prev_finished.max(finished) } else { finished };
                self.finished_at.push(finished);
                if let Some(k) = &mut self.keep {
                    k.push(e);
                }
            }
            Err(f) => {
                self.finished_at.push(None);
                verdict.verdict = "failed".into();
                verdict.failure = Some(f);
                self.keep = None;
            }
        }
        self.prev_hash = hash;
        self.report.entries.push(verdict);
    }

    fn check_entry(
        &self,
        i: usize,
        e_raw: &Value,
        verdict: &EntryVerdict,
        respelt: Option<Respelling>,
    ) -> Result<Entry, Failure> {
        let header = self.header.as_ref().expect("header checked");
        let public = self.public.as_ref().expect("header checked");
        let st = verdict.stage.as_deref();
        // Bytes hsx never writes (a number re-spelt after signing): tampered, whatever the hash says.
        if let Some(r) = respelt {
            return Err(fail(Some(i), st, r.path.clone(), r.to_string()));
        }
        let e: Entry = serde_path_to_error::deserialize(e_raw)
            .map_err(|err| fail(Some(i), st, err.path().to_string(), err.inner().to_string()))?;
        if e.seq != i as u64 {
            return Err(fail(
                Some(i),
                st,
                "seq",
                format!("is {} at position {i} (an entry was removed, inserted or moved)", e.seq),
            ));
        }
        if e.experiment != header.experiment {
            return Err(fail(
                Some(i),
                st,
                "experiment",
                format!("{:?} differs from the header's {:?}", e.experiment, header.experiment),
            ));
        }
        if e.header_sha256 != self.header_sha {
            return Err(fail(Some(i), st, "header_sha256", "does not match the header (the header was edited)"));
        }
        if e.prev != self.prev_hash {
            return Err(fail(Some(i), st, "prev", "does not match the previous entry's hash (the chain is broken)"));
        }
        let started = parse_time(&e.started)
            .ok_or_else(|| fail(Some(i), st, "started", format!("{:?} is not an RFC 3339 time", e.started)))?;
        let finished = parse_time(&e.finished)
            .ok_or_else(|| fail(Some(i), st, "finished", format!("{:?} is not an RFC 3339 time", e.finished)))?;
        if finished < started {
            return Err(fail(Some(i), st, "finished", format!("{} is before started {}", e.finished, e.started)));
        }
        let fragment = match super::super::fragment::recorded_fragment(&e.env) {
            None => None,
            Some(Ok(r)) => {
                if r.root != Root::Run {
                    return Err(fail(Some(i), st, "env.fragment.root", "a fragment lives under the run directory"));
                }
                if let Err(err) = check_relative(&r.path) {
                    return Err(fail(Some(i), st, "env.fragment.path", err.to_string()));
                }
                Some(r)
            }
            Some(Err(msg)) => return Err(fail(Some(i), st, "env.fragment", msg)),
        };
        if fragment.is_some() {
            // A stage instance joined from a Slurm job's fragment ran beside the others of its wave: it
            // must start after the header was created and after every entry whose outputs it read ended.
            let mut floor = self.created.map(|c| (c, "the header was created".to_owned()));
            for r in &e.inputs {
                if let Some((j, _)) = self.last_output.get(&(r.root, r.path.clone())) {
                    if let Some(Some(t)) = self.finished_at.get(*j) {
                        if floor.as_ref().is_none_or(|(f, _)| t > f) {
                            floor =
                                Some((*t, format!("entry {j}, whose output {}:{} it read, finished", r.root, r.path)));
                        }
                    }
                }
            }
            if let Some((fl, what)) = floor {
                if started < fl {
                    return Err(fail(Some(i), st, "started", format!("{} is before {what} ({fl})", e.started)));
                }
            }
        } else {
            let floor = self.prev_finished.or(self.created);
            if let Some(fl) = floor {
                if started < fl {
                    let what = if self.prev_finished.is_some() {
                        "the previous entry finished"
                    } else {
                        "the header was created"
                    };
                    return Err(fail(
                        Some(i),
                        st,
                        "started",
                        format!("{} is before {what} ({fl}); times along the chain must not decrease", e.started),
                    ));
                }
            }
        }
        let canon = |v: &Value| {
            if self.version == 1 {
                crate::canonical::sha256_legacy_v1(v)
            } else {
                crate::canonical::sha256_canonical(v)
            }
        };
        let config_sha = canon(&e.config);
        if e.config_sha256 != config_sha {
            return Err(fail(
                Some(i),
                st,
                "config_sha256",
                format!("recorded {}, but the recorded config hashes to {config_sha}", e.config_sha256),
            ));
        }
        for (kind, list) in [("inputs", &e.inputs), ("outputs", &e.outputs)] {
            for (k, r) in list.iter().enumerate() {
                if let Err(err) = check_relative(&r.path) {
                    return Err(fail(Some(i), st, format!("{kind}[{k}].path"), err.to_string()));
                }
            }
        }
        let canonical = entry_canonical_bytes(e_raw, self.version);
        let computed = crate::canonical::sha256_hex(canonical.as_bytes());
        if computed != e.hash {
            return Err(fail(
                Some(i),
                st,
                "hash",
                format!("the entry's content hashes to {computed}, not the recorded hash (a field was edited)"),
            ));
        }
        if let Err(msg) = verify_entry_signature(self.version, public, &canonical, &e.hash, &e.signature) {
            return Err(fail(
                Some(i),
                st,
                "signature",
                format!("{msg} for the header's signer {}", header.signer.key_id),
            ));
        }
        if let Some(tk) = &self.opts.trusted {
            for t in [&e.started, &e.finished] {
                if let Err(msg) = tk.check(&header.signer, t) {
                    return Err(fail(Some(i), st, "signer", msg));
                }
            }
        }
        Ok(e)
    }

    /// The signed head beside the ledger file (version 2; version 1 has none).
    pub(super) fn head_file_check(&mut self) {
        let (Some(header), Some(public)) = (&self.header, &self.public) else { return };
        if self.header_failed {
            return;
        }
        if header.version == 1 {
            self.report.notes.push(
                "format version 1 has no signed head: a cut-off ledger cannot be told from a whole one; pin its head with --expect-head".into(),
            );
            return;
        }
        let hp = head_path_for(&self.path);
        let res = match SignedHead::read(&hp) {
            Ok(None) => Err(format!(
                "there is no signed head {} beside the ledger, so entries cut off the end cannot be detected; copy it with the ledger",
                hp.display()
            )),
            Ok(Some(h)) => h.check(header, public, &self.hashes).map(|_| h),
            Err(m) => Err(m),
        };
        match res {
            Ok(h) if (h.entries as usize) < self.hashes.len() => self.report.notes.push(format!(
                "the signed head names entry {} of {}: the later entries are signed, but the head was not updated (interrupted write)",
                h.entries.saturating_sub(1),
                self.hashes.len()
            )),
            Ok(_) => {}
            Err(m) => self.ledger_failure(fail(None, None, "head", format!("{}: {m}", hp.display()))),
        }
    }

    pub(super) fn finish(mut self, roots: Option<Roots>) -> (VerifyReport, Option<Ledger>) {
        let n = self.report.entries.len();
        self.report.head = self.hashes.last().map(|h| Head { seq: (n - 1) as u64, hash: h.clone() });
        if !self.header_failed && self.header.is_some() {
            if self.opts.trusted.is_some() && n == 0 {
                self.ledger_failure(fail(
                    None,
                    None,
                    "entries",
                    "the ledger has no entries: an empty ledger attests nothing, so it cannot pass --trusted-keys",
                ));
            }
            if let Some(expected) = &self.opts.expect_head {
                match self.hashes.iter().position(|h| h == expected) {
                    Some(i) if i + 1 == n => {}
                    Some(i) => self
                        .report
                        .notes
                        .push(format!("the expected head is entry {i}; the ledger has {} entries after it", n - 1 - i)),
                    None => {
                        let last =
                            self.report.head.as_ref().map(|h| h.to_string()).unwrap_or_else(|| "no entries".into());
                        self.ledger_failure(fail(None, None, "head", format!(
                            "the expected head {expected} is not in this ledger (its head is {last}): rolled back, truncated or forked"
                        )));
                    }
                }
            }
        }
        if let Some(r) = &roots {
            self.report.roots = RootsShown {
                run: r.run.as_ref().map(|p| p.display().to_string()),
                data: r.data.as_ref().map(|p| p.display().to_string()),
                workspace: r.workspace.as_ref().map(|p| p.display().to_string()),
            };
        }
        if !self.opts.structure_only && !self.header_failed {
            if let Some(roots) = &roots {
                self.check_files(roots);
                self.check_cited_head(roots);
            }
        }
        // The first failure: the header's, else the earliest entry's, else a ledger-level one.
        let entry_first = self.report.entries.iter().find_map(|v| v.failure.clone());
        let first = self.report.first_failure.take().or(entry_first).or_else(|| self.ledger_failures.first().cloned());
        self.report.first_failure = first;
        self.report.ok = self.report.first_failure.is_none();
        let ledger = match (self.keep, self.header) {
            (Some(entries), Some(header)) if self.report.ok => Some(Ledger { header, entries }),
            _ => None,
        };
        (self.report, ledger)
    }

    fn check_files(&mut self, roots: &Roots) {
        let mut cache: HashMap<(Root, String, u64, String), OnDisk> = HashMap::new();
        let pending = std::mem::take(&mut self.pending);
        let mut stale_noted = std::collections::HashSet::new();
        for p in pending {
            let v = &mut self.report.entries[p.entry];
            if v.failure.is_some() {
                continue;
            }
            let r = &p.record;
            if let Some((j, sha)) = self.last_output.get(&(r.root, r.path.clone())).filter(|(j, _)| *j > p.entry) {
                v.superseded += 1;
                self.report.superseded_artifacts += 1;
                // An input that a later re-run rewrote differently: this entry's results are history.
                if p.field.starts_with("inputs") && *sha != r.sha256 && stale_noted.insert(p.entry) {
                    let later = self.report_stage_name(*j);
                    let v = &self.report.entries[p.entry];
                    self.report.notes.push(format!(
                        "entry {} ({}) read {}:{} as sha256 {}, which entry {j} ({later}) later rewrote with different content: \
                         its results describe the earlier file; `hsx run` re-runs the stages that depend on it",
                        p.entry,
                        v.stage.as_deref().unwrap_or("?"),
                        r.root,
                        r.path,
                        &r.sha256[..r.sha256.len().min(12)]
                    ));
                }
                continue;
            }
            let Some(base) = roots.get(r.root) else {
                v.missing.push(format!("{}:{}", r.root, r.path));
                continue;
            };
            let key = (r.root, r.path.clone(), r.bytes, r.sha256.clone());
            let on_disk = cache.entry(key).or_insert_with(|| check_recorded(base, r)).clone();
            let st = v.stage.clone();
            match on_disk {
                OnDisk::Matches => self.report.checked_artifacts += 1,
                OnDisk::Missing => v.missing.push(format!("{}:{}", r.root, r.path)),
                OnDisk::Differs { bytes, sha256 } => {
                    self.report.checked_artifacts += 1;
                    let found = match sha256 {
                        Some(s) => format!("{bytes} bytes, sha256 {s}"),
                        None => format!("{bytes} bytes (not hashed: the size already differs)"),
                    };
                    v.failure = Some(fail(
                        Some(p.entry),
                        st.as_deref(),
                        p.field,
                        format!(
                            "tampered: {}:{} on disk has {found}; recorded {} bytes, sha256 {}",
                            r.root, r.path, r.bytes, r.sha256
                        ),
                    ));
                }
                OnDisk::Refused(msg) => {
                    v.failure = Some(fail(
                        Some(p.entry),
                        st.as_deref(),
                        p.field,
                        format!("refused {}:{}: {msg}", r.root, r.path),
                    ));
                }
            }
        }
        for v in &mut self.report.entries {
            if v.failure.is_some() {
                v.verdict = "failed".into();
            } else if !v.missing.is_empty() {
                v.verdict = "missing".into();
                self.report.missing_artifacts += v.missing.len();
                if self.opts.require_artifacts {
                    v.verdict = "failed".into();
                    v.failure = Some(fail(
                        Some(v.index),
                        v.stage.as_deref(),
                        "outputs",
                        format!("missing artifacts: {}", v.missing.join(", ")),
                    ));
                }
            }
        }
    }

    fn report_stage_name(&self, i: usize) -> String {
        self.report.entries.get(i).and_then(|v| v.stage.clone()).unwrap_or_else(|| "?".into())
    }

    /// A rendered report in the recorded report directory that cites a head (see
    /// [`super::head::citation`]) must cite an entry this ledger has.
    fn check_cited_head(&mut self, roots: &Roots) {
        if self.reproduction {
            return;
        }
        // No entry recorded a report yet (a run stopped early, or one truncated before its report): a
        // self-contained run (the ledger in its run directory) keeps its report there, others in the workspace.
        let self_contained = self.header.as_ref().is_some_and(|h| h.run_dir == ".");
        let default_root = if self_contained { Root::Run } else { Root::Workspace };
        let base = roots.get(self.last_report_root.unwrap_or(default_root)).map(|p| p.to_path_buf());
        let (Some(ws), Some(dir)) = (base.as_ref(), self.last_report_dir.clone()) else { return };
        if check_relative(&dir).is_err() {
            return;
        }
        let rel = format!("{}/REPORT.md", dir.trim_end_matches('/'));
        let Ok(Some(path)) = super::super::files::resolve_inside(ws, &rel) else { return };
        let Ok(text) = super::super::keys::read_small_regular_file(&path) else { return };
        let cited = cited_heads(&text);
        if cited.len() > 1 {
            let list: Vec<String> = cited.iter().map(|h| format!("({h})")).collect();
            self.ledger_failure(fail(
                None,
                None,
                "head",
                format!(
                    "{rel} cites {} ledger heads ({}); a rendered report cites one, the head it was rendered from",
                    cited.len(),
                    list.join(", ")
                ),
            ));
            return;
        }
        for h in cited {
            let have = self.hashes.get(h.seq as usize);
            if have != Some(&h.hash) {
                let last = self.report.head.as_ref().map(|h| h.to_string()).unwrap_or_else(|| "no entries".into());
                self.ledger_failure(fail(None, None, "head", format!(
                    "{rel} cites ledger head {h}, which this ledger does not have (its head is {last}): the ledger was rolled back, truncated or forked, or the report belongs to another ledger"
                )));
                return;
            }
        }
    }
}
