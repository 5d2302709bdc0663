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
mod tests {
    use super::*;

    fn cfg() -> FilterCfg {
        FilterCfg::default()
    }

    fn w(n: usize, prefix: &str) -> String {
        (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn exact_duplicates_ignore_case_and_spacing() {
        let seed = [("The cat  sat on the mat", "Where did it sit?", "On the mat today.")];
        let mut s = FilterState::new(&cfg(), Scope::Generated, &seed, 1);
        let qv = Strategy::QuestionVariants;
        assert!(
            s.check(qv, ("the cat sat on the MAT", "where did it   sit?", "on the mat today."), &[]).exact_duplicate
        );
        let other = ("The cat sat on the mat", "What did the cat do?", "It sat.");
        assert!(!s.check(qv, other, &[]).exact_duplicate);
        assert!(s.check(qv, other, &[]).exact_duplicate, "repeat of a candidate");
        // Fields are compared field by field: moving a word across a field boundary is another example.
        assert!(
            !s.check(qv, ("The cat sat on the", "mat Where did it sit?", "On the mat today."), &[]).exact_duplicate
        );
    }

    #[test]
    fn ngram_overlap_at_and_around_thirty_percent() {
        // A seed of 40 words; candidates of 17 words have 10 distinct 8-grams.
        let seed = w(40, "s");
        let idx = NgramIndex::new(&[seed], 8);
        // k shared 8-grams out of 10: the first 7 + k words come from the seed, then fresh words.
        let cand = |k: usize| {
            let shared: Vec<String> = (0..7 + k).map(|i| format!("s{i}")).collect();
            let fresh: Vec<String> = (0..10 - k).map(|i| format!("x{i}")).collect();
            [shared, fresh].concat().join(" ")
        };
        assert_eq!(idx.max_overlap(&cand(3)).0, 0.3);
        assert_eq!(idx.max_overlap(&cand(2)).0, 0.2);
        assert_eq!(idx.max_overlap(&cand(4)).0, 0.4);
        let c = cfg();
        let at = Checked { ngram_overlap: 0.3, words: 17, ..Checked::default() };
        assert_eq!(at.failures(&c), vec![(Filter::NgramOverlap, 0.3)]);
        let below = Checked { ngram_overlap: 0.29, ..at.clone() };
        assert!(below.failures(&c).is_empty());
    }

    #[test]
    fn overlap_counts_one_seed_example_at_a_time() {
        // Half the candidate's 8-grams in seed A, half in seed B: 0.5 each, not 1.0.
        let a = w(12, "a");
        let b = w(12, "b");
        let idx = NgramIndex::new(&[a.clone(), b.clone()], 8);
        let cand = format!("{} {}", w(12, "a"), w(12, "b"));
        let (share, _) = idx.max_overlap(&cand);
        assert!(share < 0.5, "{share}");
    }

    #[test]
    fn cosine_and_length_boundaries() {
        let c = cfg();
        let base = Checked { cosine: 0.85, words: 10, ..Checked::default() };
        assert_eq!(base.failures(&c), vec![(Filter::Semantic, 0.85)]);
        assert!(Checked { cosine: 0.8499, ..base.clone() }.failures(&c).is_empty());
        let ok = Checked { cosine: 0.0, ..base.clone() };
        assert!(ok.failures(&c).is_empty(), "10 words is inside");
        assert_eq!(Checked { words: 9, ..ok.clone() }.failures(&c), vec![(Filter::Length, 9.0)]);
        assert!(Checked { words: 200, ..ok.clone() }.failures(&c).is_empty(), "200 words is inside");
        assert_eq!(Checked { words: 201, ..ok.clone() }.failures(&c), vec![(Filter::Length, 201.0)]);
    }

    #[test]
    fn the_registry_lists_each_filter_once_in_order() {
        let names: Vec<&str> = rejection_reasons().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "malformed",
                "exact_duplicate",
                "ngram_overlap",
                "semantic_similarity",
                "minhash_near_duplicate",
                "length"
            ]
        );
        for (i, f) in Filter::ALL.iter().enumerate() {
            assert_eq!(FILTERS[i].filter, *f);
            assert_eq!(f.def().name, f.name());
        }
        // Every threshold text names only recorded thresholds.
        let th = serde_json::to_value(Thresholds::of(&cfg())).unwrap();
        for (name, text) in rejection_reasons() {
            for part in text.split("thresholds.").skip(1) {
                let key: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                assert!(th.get(&key).is_some(), "filter {name}: threshold text refers to unrecorded {key}");
            }
        }
    }

    #[test]
    fn minhash_lsh_agrees_with_exact_jaccard() {
        let mut lsh = MinHashLsh::new(&cfg(), 7);
        let base = w(60, "t");
        lsh.insert(&base);
        // Near copy: 5 of 60 words changed → Jaccard of 3-shingles well above 0.5.
        let mut near: Vec<String> = base.split(' ').map(str::to_owned).collect();
        for i in [10, 20, 30, 40, 50] {
            near[i] = format!("z{i}");
        }
        let near = near.join(" ");
        let exact = jaccard(&lsh.shingles(&near), &lsh.shingles(&base));
        assert!(exact > 0.5);
        assert!((lsh.query(&near) - exact).abs() < 1e-12, "LSH hit must report the exact Jaccard");
        // Unrelated text: no bucket in common, Jaccard 0.
        assert_eq!(lsh.query(&w(60, "q")), 0.0);
        // Over many random pairs, LSH finds every pair at J ≥ 0.8 (collision probability > 0.9999).
        let mut found = 0;
        for k in 0..50 {
            let mut l = MinHashLsh::new(&cfg(), k);
            let a = w(100, &format!("r{k}_"));
            l.insert(&a);
            let mut b: Vec<String> = a.split(' ').map(str::to_owned).collect();
            b[50] = "changed".into();
            let b = b.join(" ");
            if l.query(&b) >= 0.8 {
                found += 1;
            }
        }
        assert_eq!(found, 50);
    }

    // What each strategy is judged on. A toy embedding (bag of words) stands in for MiniLM: the semantic
    // filter is a threshold on the cosine the caller measures per judged part.
    fn seed_examples() -> Vec<(String, String, String)> {
        (0..4).map(|i| (w(60, &format!("c{i}_")), w(10, &format!("q{i}_")), w(6, &format!("a{i}_")))).collect()
    }

    fn fields(e: &(String, String, String)) -> Fields<'_> {
        (&e.0, &e.1, &e.2)
    }

    fn bag_cosine(a: &str, b: &str) -> f64 {
        let count = |t: &str| {
            let mut m: HashMap<String, f64> = HashMap::new();
            for x in words(t) {
                *m.entry(x).or_default() += 1.0;
            }
            m
        };
        let (x, y) = (count(a), count(b));
        let dot: f64 = x.iter().map(|(k, v)| v * y.get(k).unwrap_or(&0.0)).sum();
        let norm = |m: &HashMap<String, f64>| m.values().map(|v| v * v).sum::<f64>().sqrt();
        dot / (norm(&x) * norm(&y)).max(1e-12)
    }

    /// Checks a candidate the way the synthesize stage does: per judged part, the largest cosine to the
    /// same part of any seed example.
    fn judge(
        state: &mut FilterState,
        seed: &[(String, String, String)],
        strategy: Strategy,
        ex: Fields,
    ) -> Vec<(Filter, f64)> {
        let cosines: Vec<(Part, f64)> = judged_parts(strategy, state.scope)
            .iter()
            .map(|&p| (p, seed.iter().map(|s| bag_cosine(&p.text(ex), &p.text(fields(s)))).fold(0.0, f64::max)))
            .collect();
        let c = state.check(strategy, ex, &cosines);
        let fails = c.failures(&state.cfg);
        if fails.is_empty() {
            state.accept(strategy, ex);
        }
        fails
    }

    fn state(seed: &[(String, String, String)], scope: Scope) -> FilterState {
        let f: Vec<Fields> = seed.iter().map(fields).collect();
        FilterState::new(&cfg(), scope, &f, 3)
    }

    fn filters_of(fails: &[(Filter, f64)]) -> Vec<Filter> {
        fails.iter().map(|(f, _)| *f).collect()
    }

    #[test]
    fn a_question_variant_is_judged_on_its_question_and_answer_against_every_seed_example() {
        let seed = seed_examples();
        let mut s = state(&seed, Scope::Generated);
        let qv = Strategy::QuestionVariants;
        // Seed example 0's context with a new question and answer: accepted, although the whole text
        // shares 60 of its words with seed example 0.
        let (new_q, new_a) = (w(10, "nq"), w(6, "na"));
        assert_eq!(judge(&mut s, &seed, qv, (&seed[0].0, &new_q, &new_a)), vec![]);
        // The question of another seed example (on seed example 0's context): rejected on the question.
        let fails = judge(&mut s, &seed, qv, (&seed[0].0, &seed[2].1, &w(6, "nb")));
        assert_eq!(filters_of(&fails), [Filter::NgramOverlap, Filter::Semantic, Filter::NearDuplicate]);
        let c = s.check(qv, (&seed[0].0, &seed[2].1, &w(6, "nc")), &[]);
        assert_eq!((c.ngram_overlap, c.ngram_part), (1.0, Some(Part::Question)));
        // A seed answer copied with a new question: rejected on the answer.
        let c = s.check(qv, (&seed[1].0, &w(10, "nd"), &seed[3].2), &[]);
        assert_eq!((c.jaccard, c.jaccard_part), (1.0, Some(Part::Answer)));
    }

    #[test]
    fn full_scope_rejects_the_question_variant_that_carries_its_seed_context() {
        let seed = seed_examples();
        let mut s = state(&seed, Scope::Full);
        let (new_q, new_a) = (w(10, "nq"), w(6, "na"));
        let fails = judge(&mut s, &seed, Strategy::QuestionVariants, (&seed[0].0, &new_q, &new_a));
        // 53 of its 69 8-grams lie in seed example 0's context.
        assert_eq!(fails.first().map(|f| f.0), Some(Filter::NgramOverlap));
        assert!((fails[0].1 - 53.0 / 69.0).abs() < 1e-12, "{fails:?}");
        assert_eq!(s.check(Strategy::QuestionVariants, (&seed[0].0, &new_q, &new_a), &[]).ngram_part, Some(Part::Full));
    }

    #[test]
    fn a_context_augmentation_is_judged_on_its_context() {
        let seed = seed_examples();
        let mut s = state(&seed, Scope::Generated);
        let ca = Strategy::ContextAugmentation;
        // A new context for seed example 0's question and answer: accepted.
        let ctx = w(60, "nc");
        assert_eq!(judge(&mut s, &seed, ca, (&ctx, &seed[0].1, &seed[0].2)), vec![]);
        // Seed example 1's context under seed example 0's question and answer: rejected on the context.
        let fails = judge(&mut s, &seed, ca, (&seed[1].0, &seed[0].1, &seed[0].2));
        assert_eq!(filters_of(&fails), [Filter::NgramOverlap, Filter::Semantic, Filter::NearDuplicate]);
        assert_eq!(s.check(ca, (&seed[1].0, &seed[0].1, &seed[0].2), &[]).ngram_part, Some(Part::Context));
        // Under the full scope the same new context fails: the reused question and answer are seed text.
        let mut full = state(&seed, Scope::Full);
        let c = full.check(ca, (&w(20, "nc"), &seed[0].1, &seed[0].2), &[]);
        assert!(c.ngram_overlap >= 0.3, "{c:?}");
    }

    #[test]
    fn an_answer_expansion_is_judged_on_its_question_answer_pair() {
        let seed = seed_examples();
        let mut s = state(&seed, Scope::Generated);
        let ae = Strategy::AnswerExpansion;
        assert_eq!(judge(&mut s, &seed, ae, (&seed[0].0, &w(10, "nq"), &w(6, "na"))), vec![]);
        // Seed example 3's question and answer, asked of seed example 0's context: rejected on the pair.
        let fails = judge(&mut s, &seed, ae, (&seed[0].0, &seed[3].1, &seed[3].2));
        assert_eq!(filters_of(&fails), [Filter::NgramOverlap, Filter::Semantic, Filter::NearDuplicate]);
        assert_eq!(s.check(ae, (&seed[0].0, &seed[3].1, &seed[3].2), &[]).ngram_part, Some(Part::QuestionAnswer));
        // The seed's own example is an exact duplicate first.
        assert_eq!(judge(&mut s, &seed, ae, fields(&seed[2])).first().map(|f| f.0), Some(Filter::ExactDuplicate));
    }

    #[test]
    fn near_duplicates_among_accepted_synthetic_examples_are_caught() {
        let seed = seed_examples();
        let near = |base: &str, at: &[usize]| {
            let mut v: Vec<String> = base.split(' ').map(str::to_owned).collect();
            for &i in at {
                v[i] = format!("z{i}");
            }
            v.join(" ")
        };
        let ctx = w(60, "nc");
        let ctx2 = near(&ctx, &[15, 45]);
        let ca = Strategy::ContextAugmentation;
        // Without the first, the second passes.
        let mut alone = state(&seed, Scope::Generated);
        assert_eq!(judge(&mut alone, &seed, ca, (&ctx2, &seed[1].1, &seed[1].2)), vec![]);
        // After the first is accepted, the second (another seed question, a near-identical new context)
        // is a near duplicate of it, judged on the context.
        let mut s = state(&seed, Scope::Generated);
        assert_eq!(judge(&mut s, &seed, ca, (&ctx, &seed[0].1, &seed[0].2)), vec![]);
        let fails = judge(&mut s, &seed, ca, (&ctx2, &seed[1].1, &seed[1].2));
        assert_eq!(filters_of(&fails), [Filter::NearDuplicate]);
        // The same among question variants: a near copy of an accepted new question, on another context.
        let q = w(20, "nq");
        assert_eq!(judge(&mut s, &seed, Strategy::QuestionVariants, (&seed[0].0, &q, &w(6, "na"))), vec![]);
        let c = s.check(Strategy::QuestionVariants, (&seed[1].0, &near(&q, &[10]), &w(6, "nb")), &[]);
        assert_eq!(
            (c.failures(&s.cfg).iter().map(|f| f.0).collect::<Vec<_>>(), c.jaccard_part),
            (vec![Filter::NearDuplicate], Some(Part::Question))
        );
    }

    #[test]
    fn scopes_parse_as_the_config_spells_them() {
        for name in crate::config::FILTER_SCOPES {
            assert_eq!(Scope::parse(name).map(Scope::name), Some(name));
        }
        assert_eq!(Scope::parse("whole"), None);
        assert_eq!(Scope::Generated.parts(), [Part::Question, Part::Answer, Part::Context, Part::QuestionAnswer]);
        assert_eq!(Scope::Full.parts(), [Part::Full]);
    }
}
