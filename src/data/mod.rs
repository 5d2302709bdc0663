//! CosmosQA ingestion: the official CSV and JSONL formats, row validation, JSONL datasets.
//!
//! CosmosQA (Huang et al., EMNLP 2019) rows are `id,context,question,answer0..answer3,label`; the
//! reference answer is `answer{label}`. Each row becomes a [`QaExample`]. Every bad row is an error
//! naming the file and line, or — with `skip_invalid` — is skipped and counted by reason.
//!
//! ```text
//! hsx data stats data/cosmosqa/valid.csv
//! ```
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

pub mod fetch;
pub mod split;
pub mod stats;

/// Official files whose sha256 is known (wilburOne/cosmosqa, commit 81e4213108ea1e12da5cd40488691fb3e4a4a2ee).
pub const KNOWN_HASHES: &[(&str, &str)] =
    &[("valid.csv", "a6a94fc1463ca82bb10f98ef68ed535405e6f5c36e044ff8e136b5c19dea63f3")];

pub fn known_hash(file_name: &str) -> Option<&'static str> {
    KNOWN_HASHES.iter().find(|(n, _)| *n == file_name).map(|(_, h)| *h)
}

pub const COLUMNS: [&str; 8] = ["id", "context", "question", "answer0", "answer1", "answer2", "answer3", "label"];

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} line {line}: {message}")]
    Row { path: PathBuf, line: u64, message: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(
        "{path} has sha256 {actual}, but the official file's is {expected}; refusing it \
         (set data.verify_known_hashes = false to read a modified copy on purpose)"
    )]
    HashMismatch { path: PathBuf, expected: String, actual: String },
    #[error("{0}")]
    Split(String),
    #[error("{0}")]
    Missing(String),
    /// A file that could not be written or read safely (see `crate::fsx`).
    #[error(transparent)]
    Fs(#[from] crate::fsx::FsError),
}

/// One question-answer example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QaExample {
    pub id: String,
    pub context: String,
    pub question: String,
    pub answer: String,
    pub choices: Vec<String>,
    pub label: u8,
}

/// Why a row was rejected; the key in the `skipped` metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RowProblem {
    BadLabel,
    EmptyField,
    MissingColumn,
    DuplicateId,
    InvalidUtf8,
    TooLong,
    Malformed,
}

impl RowProblem {
    pub fn key(self) -> &'static str {
        match self {
            RowProblem::BadLabel => "bad_label",
            RowProblem::EmptyField => "empty_field",
            RowProblem::MissingColumn => "missing_column",
            RowProblem::DuplicateId => "duplicate_id",
            RowProblem::InvalidUtf8 => "invalid_utf8",
            RowProblem::TooLong => "too_long",
            RowProblem::Malformed => "malformed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub skip_invalid: bool,
    pub max_row_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self { skip_invalid: false, max_row_bytes: 64 * 1024 }
    }
}

/// The examples of one file, and what was skipped.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub examples: Vec<QaExample>,
    pub rows: usize,
    pub skipped: BTreeMap<String, usize>,
}

struct RowSink<'a> {
    path: &'a Path,
    opts: &'a ReadOptions,
    seen_ids: HashSet<String>,
    out: ReadResult,
}

impl RowSink<'_> {
    fn reject(&mut self, line: u64, problem: RowProblem, message: String) -> Result<(), DataError> {
        if self.opts.skip_invalid {
            *self.out.skipped.entry(problem.key().to_owned()).or_default() += 1;
            Ok(())
        } else {
            Err(DataError::Row { path: self.path.to_owned(), line, message })
        }
    }

    /// Validates one row given as its eight fields (already UTF-8) and keeps it if sound.
    fn push(&mut self, line: u64, f: [String; 8]) -> Result<(), DataError> {
        let [id, context, question, a0, a1, a2, a3, label_txt] = f;
        let label = match label_txt.trim().parse::<u8>() {
            Ok(l) if l <= 3 => l,
            _ => return self.reject(line, RowProblem::BadLabel, format!("label {label_txt:?} is not 0, 1, 2 or 3")),
        };
        for (name, v) in [("id", &id), ("context", &context), ("question", &question)] {
            if v.trim().is_empty() {
                return self.reject(line, RowProblem::EmptyField, format!("empty {name}"));
            }
        }
        let choices = vec![a0, a1, a2, a3];
        let answer = choices[label as usize].clone();
        if answer.trim().is_empty() {
            return self.reject(line, RowProblem::EmptyField, format!("empty answer{label} (the labelled answer)"));
        }
        if !self.seen_ids.insert(id.clone()) {
            return self.reject(line, RowProblem::DuplicateId, format!("duplicate id {id:?}"));
        }
        self.out.examples.push(QaExample { id, context, question, answer, choices, label });
        Ok(())
    }
}

/// Reads a CosmosQA file in either official format (by extension: `.csv` or `.jsonl`).
pub fn read_file(path: &Path, opts: &ReadOptions) -> Result<ReadResult, DataError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "csv" => read_csv(path, opts),
        "jsonl" | "json" => read_jsonl(path, opts),
        _ => Err(DataError::File { path: path.to_owned(), message: "unknown format: expected .csv or .jsonl".into() }),
    }
}

/// Opens a data file for reading: a regular file only (a FIFO is refused without blocking), at most
/// [`crate::fsx::Limit::DATA`] read.
fn open(path: &Path) -> Result<crate::fsx::Bounded, DataError> {
    crate::fsx::open_file(path, crate::fsx::Limit::DATA).map_err(|e| {
        if e.is_not_found() {
            DataError::Missing(format!(
                "{} does not exist; fetch the official files with `hsx data fetch`, or point HSX_DATA_MIRROR \
                 at a directory holding cosmosqa/{}",
                path.display(),
                path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            ))
        } else {
            e.into()
        }
    })
}

/// Official CSV: header `id,context,question,answer0,answer1,answer2,answer3,label`, RFC 4180 quoting.
pub fn read_csv(path: &Path, opts: &ReadOptions) -> Result<ReadResult, DataError> {
    let file = open(path)?;
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(std::io::BufReader::new(file));
    let headers = rdr.byte_headers().map_err(|e| csv_err(path, e))?.clone();
    let mut index = [0usize; 8];
    for (k, col) in COLUMNS.iter().enumerate() {
        index[k] = headers.iter().position(|h| h == col.as_bytes()).ok_or_else(|| DataError::Row {
            path: path.to_owned(),
            line: 1,
            message: format!("missing column {col:?} in the header (expected {})", COLUMNS.join(",")),
        })?;
    }
    let ncols = headers.len();
    let mut sink = RowSink { path, opts, seen_ids: HashSet::new(), out: ReadResult::default() };
    let mut rec = csv::ByteRecord::new();
    loop {
        let more = match rdr.read_byte_record(&mut rec) {
            Ok(m) => m,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                // A CSV syntax error leaves the reader mid-row; it cannot be skipped safely.
                return Err(DataError::Row { path: path.to_owned(), line, message: format!("malformed CSV: {e}") });
            }
        };
        if !more {
            break;
        }
        sink.out.rows += 1;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let bytes: usize = rec.as_slice().len();
        if bytes > opts.max_row_bytes {
            sink.reject(
                line,
                RowProblem::TooLong,
                format!("row is {bytes} bytes, over the {} byte limit", opts.max_row_bytes),
            )?;
            continue;
        }
        if rec.len() != ncols {
            let hint = if rec.len() < ncols {
                "a missing column, or an unterminated quote that swallowed the following rows"
            } else {
                "an extra column or an unquoted comma"
            };
            sink.reject(
                line,
                if rec.len() < ncols { RowProblem::MissingColumn } else { RowProblem::Malformed },
                format!("{} fields where the header has {ncols} ({hint})", rec.len()),
            )?;
            continue;
        }
        let mut fields: [String; 8] = Default::default();
        let mut bad_utf8 = None;
        for (k, &i) in index.iter().enumerate() {
            match std::str::from_utf8(&rec[i]) {
                Ok(s) => fields[k] = s.to_owned(),
                Err(e) => {
                    bad_utf8 = Some(format!("invalid UTF-8 in column {:?} at byte {}", COLUMNS[k], e.valid_up_to()));
                    break;
                }
            }
        }
        if let Some(msg) = bad_utf8 {
            sink.reject(line, RowProblem::InvalidUtf8, msg)?;
            continue;
        }
        sink.push(line, fields)?;
    }
    Ok(sink.out)
}

fn csv_err(path: &Path, e: csv::Error) -> DataError {
    let line = e.position().map(|p| p.line()).unwrap_or(1);
    DataError::Row { path: path.to_owned(), line, message: format!("malformed CSV: {e}") }
}

/// JSONL: one `{"id","context","question","answer0".."answer3","label"}` object per line.
pub fn read_jsonl(path: &Path, opts: &ReadOptions) -> Result<ReadResult, DataError> {
    use std::io::BufRead;
    let file = open(path)?;
    let mut reader = std::io::BufReader::new(file);
    let mut sink = RowSink { path, opts, seen_ids: HashSet::new(), out: ReadResult::default() };
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|source| DataError::Io { path: path.to_owned(), source })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let raw = trim_newline(&buf);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        sink.out.rows += 1;
        if raw.len() > opts.max_row_bytes {
            sink.reject(
                line_no,
                RowProblem::TooLong,
                format!("row is {} bytes, over the {} byte limit", raw.len(), opts.max_row_bytes),
            )?;
            continue;
        }
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t,
            Err(e) => {
                sink.reject(line_no, RowProblem::InvalidUtf8, format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
                continue;
            }
        };
        let v: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                sink.reject(line_no, RowProblem::Malformed, format!("not a JSON object: {e}"))?;
                continue;
            }
        };
        let Some(obj) = v.as_object() else {
            sink.reject(line_no, RowProblem::Malformed, "not a JSON object".into())?;
            continue;
        };
        let mut fields: [String; 8] = Default::default();
        let mut missing = None;
        for (k, col) in COLUMNS.iter().enumerate() {
            match obj.get(*col) {
                Some(serde_json::Value::String(s)) => fields[k] = s.clone(),
                Some(serde_json::Value::Number(n)) if *col == "label" || *col == "id" => fields[k] = n.to_string(),
                Some(other) => {
                    missing = Some((RowProblem::Malformed, format!("field {col:?} is {other}, not a string")));
                    break;
                }
                None => {
                    missing = Some((RowProblem::MissingColumn, format!("missing field {col:?}")));
                    break;
                }
            }
        }
        if let Some((p, msg)) = missing {
            sink.reject(line_no, p, msg)?;
            continue;
        }
        sink.push(line_no, fields)?;
    }
    Ok(sink.out)
}

fn trim_newline(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// Writes examples as JSONL (one object per line, fields in declaration order) to `path` below `root`
/// (the run directory), atomically, through [`crate::fsx::write_with`].
pub fn write_jsonl<T: Serialize>(root: &Path, path: &Path, rows: &[T]) -> Result<(), DataError> {
    use std::io::Write;
    let io = |source| DataError::Io { path: path.to_owned(), source };
    crate::fsx::write_with(root, path, |w| {
        for r in rows {
            serde_json::to_writer(&mut *w, r).map_err(|e| io(std::io::Error::other(e)))?;
            w.write_all(b"\n").map_err(io)?;
        }
        Ok::<_, DataError>(())
    })
}

/// Reads a JSONL file of `T`, naming the line of the first bad row.
pub fn read_jsonl_as<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, DataError> {
    use std::io::BufRead;
    let file = open(path)?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(|source| DataError::Io { path: path.to_owned(), source })?;
        let raw = trim_newline(&line);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v = serde_json::from_slice(raw).map_err(|e| DataError::Row {
            path: path.to_owned(),
            line: i as u64 + 1,
            message: format!("not a valid row: {e}"),
        })?;
        out.push(v);
    }
    Ok(out)
}
