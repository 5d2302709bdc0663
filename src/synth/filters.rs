//! The five filters a synthetic candidate must pass, in this order:
//!
//! 1. **exact duplicate** — SHA-256 of the whole example (context, question, answer; each field
//!    normalised: lowercase, whitespace collapsed) already seen among the seed examples or the candidates
//!    so far;
//! 2. **8-gram overlap** — the share of a judged part's word 8-grams found in the same part of any
//!    *single* seed example must stay below the threshold (0.30): an inverted index from 8-gram hash to the
//!    seed examples holding it, so each candidate costs its own 8-grams, not a scan of the seed;
//! 3. **semantic similarity** — the cosine of MiniLM sentence embeddings of a judged part to the same part
//!    of every seed example must stay below 0.85 (normalised embeddings, chunked matrix products; seed
//!    embeddings computed once);
//! 4. **MinHash-LSH near duplicate** — a judged part against the same part of the seed and of the accepted
//!    candidates: word 3-gram shingles, 128 min-hash permutations (h(x) = (a·x + b) mod (2⁶¹ − 1),
//!    seeded), 32 bands × 4 rows, so pairs collide in some band with probability 1 − (1 − J⁴)³², i.e. ½
//!    at J ≈ (1/32)^(1/4) ≈ 0.42; every LSH hit is then checked by exact Jaccard, and a candidate is a near
//!    duplicate at J ≥ 0.5;
//! 5. **length** — 10 to 200 words of the whole example.
//!
//! **What is judged** (`[filters] scope`, [`judged_parts`]): the filters exist to stop the generator
//! copying the private human seed, so under `scope = "generated"` (the default) filters 2–4 read only what
//! each strategy generated — a question variant's new question and its answer, a context augmentation's
//! new context, an answer expansion's question–answer pair — each against that field of *every* seed
//! example; the field a strategy reuses from its seed example by construction is exempt. Filters 1 and 5
//! always read the whole example. `scope = "full"` judges context + question + answer against whole seed
//! examples (the seed's wording read literally), under which a question variant or answer expansion fails
//! the 8-gram filter by construction because it carries its seed example's context.
//!
//! The thresholds come from `[filters]` in the config. Boundary convention: a candidate is rejected when
//! its value is *at or beyond* a threshold (overlap ≥ 0.30, cosine ≥ 0.85, Jaccard ≥ 0.5) and kept when
//! strictly inside; the length range 10–200 is inclusive.
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

use super::Strategy;
use crate::config::Filters as FilterCfg;

pub use super::similarity::{jaccard, normalise, words, MinHashLsh, NgramIndex};

/// The filters in order; `Semantic` needs embeddings and is applied by the caller between 2 and 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    ExactDuplicate,
    NgramOverlap,
    Semantic,
    NearDuplicate,
    Length,
}

/// One row of the filter registry: everything the synthesize stage, its ledger entry and the report
/// need to know about a filter.
pub struct FilterDef {
    pub filter: Filter,
    /// The key in the synthesize entry's rejection counts and in `rejected.jsonl`.
    pub name: &'static str,
    /// How the threshold reads in REPORT.md: a minijinja expression over the synthesize entry's
    /// metrics (`thresholds.*` as [`Thresholds`] records them, `embedding_model`).
    pub threshold: &'static str,
    /// The measured value when the candidate fails this filter, `None` when it passes.
    pub rejects: fn(&Checked, &FilterCfg) -> Option<f64>,
}

/// Every filter, in the order a candidate meets them. Adding a filter: a variant of [`Filter`], a row
/// here, its measurement in [`Checked`] / [`FilterState::check`], and its thresholds in [`Thresholds`]
/// (see docs/ARCHITECTURE.md).
pub const FILTERS: [FilterDef; 5] = [
    FilterDef {
        filter: Filter::ExactDuplicate,
        name: "exact_duplicate",
        threshold: "sha256 of the normalised (context, question, answer)",
        rejects: |c, _| c.exact_duplicate.then_some(1.0),
    },
    FilterDef {
        filter: Filter::NgramOverlap,
        name: "ngram_overlap",
        threshold: "{{ thresholds.ngram_n }}-gram share ≥ {{ thresholds.ngram_max_overlap }}",
        rejects: |c, cfg| (c.ngram_overlap >= cfg.ngram_max_overlap).then_some(c.ngram_overlap),
    },
    FilterDef {
        filter: Filter::Semantic,
        name: "semantic_similarity",
        threshold: "cosine ≥ {{ thresholds.semantic_max_cosine }} ({{ embedding_model }})",
        rejects: |c, cfg| (c.cosine >= cfg.semantic_max_cosine).then_some(c.cosine),
    },
    FilterDef {
        filter: Filter::NearDuplicate,
        name: "minhash_near_duplicate",
        threshold: "Jaccard ≥ {{ thresholds.minhash_jaccard }} ({{ thresholds.minhash_shingle_words }}-word shingles, \
                    {{ thresholds.minhash_permutations }} perms, {{ thresholds.minhash_bands }}×{{ thresholds.minhash_rows }} bands, \
                    LSH threshold ≈ {{ thresholds.lsh_threshold_implied | f(3) }})",
        rejects: |c, cfg| (c.jaccard >= cfg.minhash_jaccard).then_some(c.jaccard),
    },
    FilterDef {
        filter: Filter::Length,
        name: "length",
        threshold: "{{ thresholds.min_words }}–{{ thresholds.max_words }} words",
        rejects: |c, cfg| (c.words < cfg.min_words || c.words > cfg.max_words).then_some(c.words as f64),
    },
];

/// Candidates rejected before the filters: an answer-expansion output that does not parse. Counted
/// with the filters (first in order) and listed with them in the report.
pub const MALFORMED: (&str, &str) = ("malformed", "a generated field empty or degenerate (no letter or digit, one word repeated), or answer expansion not `Question: … Answer: …`");

/// Name and threshold text of every rejection reason, in order: `malformed`, then [`FILTERS`].
pub fn rejection_reasons() -> impl Iterator<Item = (&'static str, &'static str)> {
    std::iter::once(MALFORMED).chain(FILTERS.iter().map(|f| (f.name, f.threshold)))
}

/// The thresholds the synthesize entry records (what [`FilterDef::threshold`] texts refer to): the
/// config's `[filters]` settings the filters read, and the LSH threshold the bands and rows imply.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Thresholds {
    pub ngram_n: usize,
    pub ngram_max_overlap: f64,
    pub semantic_max_cosine: f64,
    pub minhash_shingle_words: usize,
    pub minhash_permutations: usize,
    pub minhash_bands: usize,
    pub minhash_rows: usize,
    pub minhash_jaccard: f64,
    /// (1 / bands)^(1 / rows), rounded to 6 decimals.
    pub lsh_threshold_implied: f64,
    pub min_words: usize,
    pub max_words: usize,
}

impl Thresholds {
    pub fn of(f: &FilterCfg) -> Self {
        Self {
            ngram_n: f.ngram_n,
            ngram_max_overlap: f.ngram_max_overlap,
            semantic_max_cosine: f.semantic_max_cosine,
            minhash_shingle_words: f.minhash_shingle_words,
            minhash_permutations: f.minhash_permutations,
            minhash_bands: f.minhash_bands,
            minhash_rows: f.minhash_rows,
            minhash_jaccard: f.minhash_jaccard,
            lsh_threshold_implied: crate::data::stats::round6(
                (1.0 / f.minhash_bands as f64).powf(1.0 / f.minhash_rows as f64),
            ),
            min_words: f.min_words,
            max_words: f.max_words,
        }
    }
}

impl Filter {
    pub const ALL: [Filter; 5] = {
        let mut out = [Filter::ExactDuplicate; 5];
        let mut i = 0;
        while i < 5 {
            out[i] = FILTERS[i].filter;
            i += 1;
        }
        out
    };
    pub fn def(self) -> &'static FilterDef {
        FILTERS.iter().find(|d| d.filter == self).expect("every filter has a registry row")
    }
    pub fn name(self) -> &'static str {
        self.def().name
    }
}

/// A part of an example that the 8-gram, semantic and MinHash filters read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Question,
    Answer,
    Context,
    /// The question and its answer, as `question answer`.
    QuestionAnswer,
    /// The whole example, as `context question answer`.
    Full,
}

/// An example's fields: (context, question, answer).
pub type Fields<'a> = (&'a str, &'a str, &'a str);

impl Part {
    pub const ALL: [Part; 5] = [Part::Question, Part::Answer, Part::Context, Part::QuestionAnswer, Part::Full];
    pub fn name(self) -> &'static str {
        match self {
            Part::Question => "question",
            Part::Answer => "answer",
            Part::Context => "context",
            Part::QuestionAnswer => "question_answer",
            Part::Full => "full",
        }
    }
    /// This part's text in an example.
    pub fn text(self, (context, question, answer): Fields) -> String {
        match self {
            Part::Question => question.to_owned(),
            Part::Answer => answer.to_owned(),
            Part::Context => context.to_owned(),
            Part::QuestionAnswer => format!("{question} {answer}"),
            Part::Full => format!("{context} {question} {answer}"),
        }
    }
}

/// `[filters] scope`: what the similarity filters judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// What each strategy generated, against the matching fields of every seed example.
    Generated,
    /// The whole example against whole seed examples.
    Full,
}

impl Scope {
    /// The config's spelling (`config::FILTER_SCOPES`); `None` for anything else.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "generated" => Some(Scope::Generated),
            "full" => Some(Scope::Full),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Scope::Generated => "generated",
            Scope::Full => "full",
        }
    }
    /// The parts any strategy is judged on, hence the seed parts to index and embed.
    pub fn parts(self) -> Vec<Part> {
        let mut v: Vec<Part> = Strategy::ALL.iter().flat_map(|s| judged_parts(*s, self).iter().copied()).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// The parts the 8-gram, semantic and MinHash filters judge for a strategy's candidate, each against the
/// same part of every seed example; a candidate fails a filter when any of its parts does.
///
/// Under [`Scope::Generated`] a field the strategy copied from its seed example by construction is not
/// judged (it is the seed's text, not the generator's): question variants keep the seed context, so their
/// new question is judged against seed questions and their answer against seed answers; context
/// augmentation keeps the seed question and answer, so its new context is judged against seed contexts;
/// answer expansion keeps the seed context, so its new question–answer pair is judged against seed
/// question–answer pairs.
pub fn judged_parts(strategy: Strategy, scope: Scope) -> &'static [Part] {
    match (scope, strategy) {
        (Scope::Full, _) => &[Part::Full],
        (Scope::Generated, Strategy::QuestionVariants) => &[Part::Question, Part::Answer],
        (Scope::Generated, Strategy::ContextAugmentation) => &[Part::Context],
        (Scope::Generated, Strategy::AnswerExpansion) => &[Part::QuestionAnswer],
    }
}

/// The parts of an accepted candidate added to the MinHash indexes, so that later candidates are
/// compared with what earlier ones generated: its generated fields (a question variant's or an answer
/// expansion's question, answer and pair; a context augmentation's context), or the whole example.
fn indexed_parts(strategy: Strategy, scope: Scope) -> &'static [Part] {
    match (scope, strategy) {
        (Scope::Full, _) => &[Part::Full],
        (Scope::Generated, Strategy::ContextAugmentation) => &[Part::Context],
        (Scope::Generated, _) => &[Part::Question, Part::Answer, Part::QuestionAnswer],
    }
}

/// The outcome of checking one candidate against every filter (for first-failing and would-fail counts).
/// Each similarity value is the largest over the candidate's judged parts; `*_part` names that part.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checked {
    pub exact_duplicate: bool,
    pub ngram_overlap: f64,
    pub cosine: f64,
    pub jaccard: f64,
    pub words: usize,
    pub ngram_part: Option<Part>,
    pub cosine_part: Option<Part>,
    pub jaccard_part: Option<Part>,
}

impl Checked {
    /// Each filter that would reject this candidate, in filter order, with its measured value.
    pub fn failures(&self, cfg: &FilterCfg) -> Vec<(Filter, f64)> {
        FILTERS.iter().filter_map(|d| (d.rejects)(self, cfg).map(|v| (d.filter, v))).collect()
    }

    /// The part a filter's value was measured on (`None` for the whole-example filters).
    pub fn part(&self, filter: Filter) -> Option<Part> {
        match filter {
            Filter::NgramOverlap => self.ngram_part,
            Filter::Semantic => self.cosine_part,
            Filter::NearDuplicate => self.jaccard_part,
            Filter::ExactDuplicate | Filter::Length => None,
        }
    }
}

/// Hash of a whole example: its normalised fields, each delimited, so (context, question, answer) is
/// compared field by field.
fn example_hash((c, q, a): Fields) -> [u8; 32] {
    let mut h = Sha256::new();
    for f in [c, q, a] {
        h.update(normalise(f).as_bytes());
        h.update([0x1f]);
    }
    h.finalize().into()
}

/// State shared by the filters over a whole synthesis run: the seed's example hashes, and per judged part
/// the seed's n-gram index and a MinHash index of the seed and the accepted candidates; plus every
/// candidate hash seen.
pub struct FilterState {
    pub cfg: FilterCfg,
    pub scope: Scope,
    seen: HashSet<[u8; 32]>,
    ngrams: HashMap<Part, NgramIndex>,
    lsh: HashMap<Part, MinHashLsh>,
}

impl FilterState {
    /// Indexes the seed's parts that `scope` judges (each part's distinct texts).
    pub fn new(cfg: &FilterCfg, scope: Scope, seed: &[Fields], rng_seed: u64) -> Self {
        let mut ngrams = HashMap::new();
        let mut lsh = HashMap::new();
        for part in scope.parts() {
            let texts = distinct_texts(part, seed);
            let mut l = MinHashLsh::new(cfg, rng_seed);
            for t in &texts {
                l.insert(t);
            }
            ngrams.insert(part, NgramIndex::new(&texts, cfg.ngram_n));
            lsh.insert(part, l);
        }
        Self { cfg: cfg.clone(), scope, seen: seed.iter().map(|f| example_hash(*f)).collect(), ngrams, lsh }
    }

    /// Measures a candidate against filters 1, 2, 4 and 5 and records its hash as seen. `cosines` holds
    /// the caller's filter-3 value (largest cosine to the same part of any seed example) for each part
    /// the candidate is judged on ([`judged_parts`]); a part without a value counts as cosine 0.
    pub fn check(&mut self, strategy: Strategy, ex: Fields, cosines: &[(Part, f64)]) -> Checked {
        let mut c = Checked {
            exact_duplicate: !self.seen.insert(example_hash(ex)),
            words: Part::Full.text(ex).split_whitespace().count(),
            ..Checked::default()
        };
        for &part in judged_parts(strategy, self.scope) {
            let text = part.text(ex);
            let overlap = self.ngrams.get(&part).map_or(0.0, |i| i.max_overlap(&text).0);
            if c.ngram_part.is_none() || overlap > c.ngram_overlap {
                (c.ngram_overlap, c.ngram_part) = (overlap, Some(part));
            }
            let cos = cosines.iter().filter(|(p, _)| *p == part).map(|(_, v)| *v).fold(0.0, f64::max);
            if c.cosine_part.is_none() || cos > c.cosine {
                (c.cosine, c.cosine_part) = (cos, Some(part));
            }
            let j = self.lsh.get(&part).map_or(0.0, |l| l.query(&text));
            if c.jaccard_part.is_none() || j > c.jaccard {
                (c.jaccard, c.jaccard_part) = (j, Some(part));
            }
        }
        c
    }

    /// Adds an accepted candidate's generated parts to the near-duplicate indexes.
    pub fn accept(&mut self, strategy: Strategy, ex: Fields) {
        for &part in indexed_parts(strategy, self.scope) {
            if let Some(l) = self.lsh.get_mut(&part) {
                l.insert(&part.text(ex));
            }
        }
    }
}

/// A part's distinct texts over the seed (several questions share one context).
pub fn distinct_texts(part: Part, seed: &[Fields]) -> Vec<String> {
    let mut seen = HashSet::new();
    seed.iter().map(|f| part.text(*f)).filter(|t| seen.insert(t.clone())).collect()
}

#[cfg(test)]
mod tests;
