//! The text-similarity machinery behind filters 1, 2 and 4 (see [`super::filters`]): normalisation and
//! words, hashed word n-grams with an inverted index over the seed, and MinHash signatures with LSH
//! banding and exact Jaccard.
use std::collections::{HashMap, HashSet};

use crate::config::Filters as FilterCfg;

/// Lowercase, whitespace collapsed.
pub fn normalise(text: &str) -> String {
    text.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
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
        let perms = (0..cfg.minhash_permutations)
            .map(|_| (rng.gen_range(1..MERSENNE_61), rng.gen_range(0..MERSENNE_61)))
            .collect();
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
                set.iter()
                    .map(|&x| mod_mersenne(a as u128 * (x & MERSENNE_61) as u128 + b as u128))
                    .min()
                    .unwrap_or(u64::MAX)
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
