//! The five filters a synthetic candidate must pass, in this order, on its full text
//! (context + question + answer):
//!
//! 1. **exact duplicate** — SHA-256 of the normalised text (lowercase, whitespace collapsed) already seen
//!    among the seed examples or the candidates so far;
//! 2. **8-gram overlap** — the share of the candidate's word 8-grams found in any *single* seed example
//!    must stay below the threshold (0.30): an inverted index from 8-gram hash to the seed examples
//!    holding it, so each candidate costs its own 8-grams, not a scan of the seed;
//! 3. **semantic similarity** — the cosine of MiniLM sentence embeddings to every seed example must stay
//!    below 0.85 (normalised embeddings, chunked matrix products; seed embeddings computed once);
//! 4. **MinHash-LSH near duplicate** — against the seed and the accepted candidates: word 3-gram shingles,
//!    128 min-hash permutations (h(x) = (a·x + b) mod (2⁶¹ − 1), seeded), 32 bands × 4 rows, so pairs
//!    collide in some band with probability 1 − (1 − J⁴)³², i.e. ½ at J ≈ (1/32)^(1/4) ≈ 0.42; every LSH
//!    hit is then checked by exact Jaccard, and a candidate is a near duplicate at J ≥ 0.5;
//! 5. **length** — 10 to 200 words.
//!
//! The thresholds come from `[filters]` in the config. Boundary convention: a candidate is rejected when
//! its value is *at or beyond* a threshold (overlap ≥ 0.30, cosine ≥ 0.85, Jaccard ≥ 0.5) and kept when
//! strictly inside; the length range 10–200 is inclusive.
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

use crate::config::Filters as FilterCfg;

/// Lowercase, whitespace collapsed.
pub fn normalise(text: &str) -> String {
    text.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn text_hash(text: &str) -> [u8; 32] {
    Sha256::digest(normalise(text).as_bytes()).into()
}

pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase().split_whitespace().map(str::to_owned).collect()
}

/// 64-bit FNV-1a of a word n-gram (words joined by a space), stable across runs and machines.
fn ngram_hash(ws: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, w) in ws.iter().enumerate() {
        if i > 0 {
            h ^= b' ' as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for &b in w.as_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn ngram_set(ws: &[String], n: usize) -> Vec<u64> {
    let mut v: Vec<u64> = if ws.len() >= n { ws.windows(n).map(ngram_hash).collect() } else { Vec::new() };
    v.sort_unstable();
    v.dedup();
    v
}

/// Inverted index of the seed's word n-grams.
pub struct NgramIndex {
    n: usize,
    index: HashMap<u64, Vec<u32>>,
}

impl NgramIndex {
    pub fn new(seed_texts: &[String], n: usize) -> Self {
        let mut index: HashMap<u64, Vec<u32>> = HashMap::new();
        for (i, t) in seed_texts.iter().enumerate() {
            for g in ngram_set(&words(t), n) {
                index.entry(g).or_default().push(i as u32);
            }
        }
        Self { n, index }
    }

    /// The largest share of the candidate's distinct n-grams found in one seed example, and that example.
    pub fn max_overlap(&self, text: &str) -> (f64, Option<u32>) {
        let grams = ngram_set(&words(text), self.n);
        if grams.is_empty() {
            return (0.0, None);
        }
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for g in &grams {
            if let Some(ids) = self.index.get(g) {
                for &id in ids {
                    *counts.entry(id).or_default() += 1;
                }
            }
        }
        match counts.into_iter().max_by_key(|&(id, c)| (c, std::cmp::Reverse(id))) {
            Some((id, c)) => (c as f64 / grams.len() as f64, Some(id)),
            None => (0.0, None),
        }
    }
}

const MERSENNE_61: u64 = (1 << 61) - 1;

fn mod_mersenne(x: u128) -> u64 {
    let lo = (x & MERSENNE_61 as u128) as u64;
    let hi = (x >> 61) as u64;
    let s = lo + (hi & MERSENNE_61) + (hi >> 61);
    let s = (s & MERSENNE_61) + (s >> 61);
    if s >= MERSENNE_61 {
        s - MERSENNE_61
    } else {
        s
    }
}

/// MinHash signatures and banded LSH over word shingles, with exact-Jaccard confirmation.
pub struct MinHashLsh {
    shingle: usize,
    perms: Vec<(u64, u64)>,
    bands: usize,
    rows: usize,
    threshold: f64,
    buckets: Vec<HashMap<u64, Vec<u32>>>,
    sets: Vec<Vec<u64>>,
}

impl MinHashLsh {
    pub fn new(cfg: &FilterCfg, seed: u64) -> Self {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let perms = (0..cfg.minhash_permutations).map(|_| (rng.gen_range(1..MERSENNE_61), rng.gen_range(0..MERSENNE_61))).collect();
        Self {
            shingle: cfg.minhash_shingle_words,
            perms,
            bands: cfg.minhash_bands,
            rows: cfg.minhash_rows,
            threshold: cfg.minhash_jaccard,
            buckets: (0..cfg.minhash_bands).map(|_| HashMap::new()).collect(),
            sets: Vec::new(),
        }
    }

    pub fn shingles(&self, text: &str) -> Vec<u64> {
        let ws = words(text);
        if ws.len() < self.shingle {
            let mut v = vec![ngram_hash(&ws)];
            v.dedup();
            return v;
        }
        ngram_set(&ws, self.shingle)
    }

    fn signature(&self, set: &[u64]) -> Vec<u64> {
        self.perms
            .iter()
            .map(|&(a, b)| {
                set.iter().map(|&x| mod_mersenne(a as u128 * (x & MERSENNE_61) as u128 + b as u128)).min().unwrap_or(u64::MAX)
            })
            .collect()
    }

    fn band_keys(&self, sig: &[u64]) -> Vec<u64> {
        (0..self.bands)
            .map(|b| {
                let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ b as u64;
                for &v in &sig[b * self.rows..(b + 1) * self.rows] {
                    h ^= v;
                    h = h.wrapping_mul(0x0100_0000_01b3).rotate_left(17);
                }
                h
            })
            .collect()
    }

    /// The highest exact Jaccard with any indexed text that shares an LSH bucket (0 when none does).
    pub fn query(&self, text: &str) -> f64 {
        let set = self.shingles(text);
        let keys = self.band_keys(&self.signature(&set));
        let mut seen = HashSet::new();
        let mut best = 0.0f64;
        for (b, k) in keys.iter().enumerate() {
            if let Some(ids) = self.buckets[b].get(k) {
                for &id in ids {
                    if seen.insert(id) {
                        best = best.max(jaccard(&set, &self.sets[id as usize]));
                    }
                }
            }
        }
        best
    }

    pub fn is_near_duplicate(&self, jaccard: f64) -> bool {
        jaccard >= self.threshold
    }

    pub fn insert(&mut self, text: &str) {
        let set = self.shingles(text);
        let keys = self.band_keys(&self.signature(&set));
        let id = self.sets.len() as u32;
        for (b, k) in keys.into_iter().enumerate() {
            self.buckets[b].entry(k).or_default().push(id);
        }
        self.sets.push(set);
    }
}

/// Exact Jaccard of two sorted, deduplicated sets.
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

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
    /// metrics (`thresholds.*` as [`thresholds_json`] records them, `embedding_model`).
    pub threshold: &'static str,
    /// The measured value when the candidate fails this filter, `None` when it passes.
    pub rejects: fn(&Checked, &FilterCfg) -> Option<f64>,
}

/// Every filter, in the order a candidate meets them. Adding a filter: a variant of [`Filter`], a row
/// here, its measurement in [`Checked`] / [`FilterState::check`], and its thresholds in
/// [`thresholds_json`] (see docs/ARCHITECTURE.md).
pub const FILTERS: [FilterDef; 5] = [
    FilterDef {
        filter: Filter::ExactDuplicate,
        name: "exact_duplicate",
        threshold: "sha256 of normalised text",
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
pub const MALFORMED: (&str, &str) = ("malformed", "unparseable `Question: … Answer: …`");

/// Name and threshold text of every rejection reason, in order: `malformed`, then [`FILTERS`].
pub fn rejection_reasons() -> impl Iterator<Item = (&'static str, &'static str)> {
    std::iter::once(MALFORMED).chain(FILTERS.iter().map(|f| (f.name, f.threshold)))
}

/// The thresholds the synthesize entry records (what [`FilterDef::threshold`] texts refer to).
pub fn thresholds_json(f: &FilterCfg) -> serde_json::Value {
    serde_json::json!({
        "ngram_n": f.ngram_n, "ngram_max_overlap": f.ngram_max_overlap, "semantic_max_cosine": f.semantic_max_cosine,
        "minhash_shingle_words": f.minhash_shingle_words, "minhash_permutations": f.minhash_permutations,
        "minhash_bands": f.minhash_bands, "minhash_rows": f.minhash_rows, "minhash_jaccard": f.minhash_jaccard,
        "lsh_threshold_implied": crate::data::stats::round6((1.0 / f.minhash_bands as f64).powf(1.0 / f.minhash_rows as f64)),
        "min_words": f.min_words, "max_words": f.max_words,
    })
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

/// The outcome of checking one candidate against every filter (for first-failing and would-fail counts).
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub exact_duplicate: bool,
    pub ngram_overlap: f64,
    pub cosine: f64,
    pub jaccard: f64,
    pub words: usize,
}

impl Checked {
    /// Each filter that would reject this candidate, in filter order, with its measured value.
    pub fn failures(&self, cfg: &FilterCfg) -> Vec<(Filter, f64)> {
        FILTERS.iter().filter_map(|d| (d.rejects)(self, cfg).map(|v| (d.filter, v))).collect()
    }
}

/// State shared by the filters over a whole synthesis run: the seed's hashes, n-gram index and MinHash
/// index, plus every candidate hash seen and every accepted candidate.
pub struct FilterState {
    pub cfg: FilterCfg,
    seen: HashSet<[u8; 32]>,
    ngrams: NgramIndex,
    pub lsh: MinHashLsh,
}

impl FilterState {
    pub fn new(cfg: &FilterCfg, seed_texts: &[String], seed: u64) -> Self {
        let mut lsh = MinHashLsh::new(cfg, seed);
        for t in seed_texts {
            lsh.insert(t);
        }
        Self {
            cfg: cfg.clone(),
            seen: seed_texts.iter().map(|t| text_hash(t)).collect(),
            ngrams: NgramIndex::new(seed_texts, cfg.ngram_n),
            lsh,
        }
    }

    /// Measures a candidate against filters 1, 2, 4 and 5 (`cosine` is the caller's filter-3 value) and
    /// records its hash as seen.
    pub fn check(&mut self, text: &str, cosine: f64) -> Checked {
        let dup = !self.seen.insert(text_hash(text));
        Checked {
            exact_duplicate: dup,
            ngram_overlap: self.ngrams.max_overlap(text).0,
            cosine,
            jaccard: self.lsh.query(text),
            words: text.split_whitespace().count(),
        }
    }

    /// Adds an accepted candidate to the near-duplicate index.
    pub fn accept(&mut self, text: &str) {
        self.lsh.insert(text);
    }
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
        let mut s = FilterState::new(&cfg(), &["The cat  sat on the mat today with friends".into()], 1);
        assert!(s.check("the cat sat on the MAT today   with friends", 0.0).exact_duplicate);
        assert!(!s.check("a different sentence entirely here with words", 0.0).exact_duplicate);
        assert!(s.check("a different sentence entirely here with words", 0.0).exact_duplicate, "repeat of a candidate");
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
        let at = Checked { exact_duplicate: false, ngram_overlap: 0.3, cosine: 0.0, jaccard: 0.0, words: 17 };
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
        let base = Checked { exact_duplicate: false, ngram_overlap: 0.0, cosine: 0.85, jaccard: 0.0, words: 10 };
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
        assert_eq!(names, ["malformed", "exact_duplicate", "ngram_overlap", "semantic_similarity", "minhash_near_duplicate", "length"]);
        for (i, f) in Filter::ALL.iter().enumerate() {
            assert_eq!(FILTERS[i].filter, *f);
            assert_eq!(f.def().name, f.name());
        }
        // Every threshold text names only recorded thresholds.
        let th = thresholds_json(&cfg());
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
}
