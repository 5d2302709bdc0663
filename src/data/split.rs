//! Deduplication and the context-grouped, seeded train / val / test split.
//!
//! CosmosQA asks several questions about one context, so a row-level split leaks test contexts into
//! training. Here every context is a group: groups are shuffled with a ChaCha8 RNG seeded by the stage
//! seed, then test, val and train are filled in that order with whole groups. A group that would
//! overshoot a split's size is passed over (later, smaller groups fill the gap), so sizes are exact
//! whenever the data allows.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet};

use super::{DataError, QaExample};

/// Drops exact duplicates of (context, question, answer), keeping the first. Returns the number dropped.
pub fn dedup(examples: &mut Vec<QaExample>) -> usize {
    let mut seen: HashSet<(String, String, String)> = HashSet::with_capacity(examples.len());
    let before = examples.len();
    examples.retain(|e| seen.insert((e.context.clone(), e.question.clone(), e.answer.clone())));
    before - examples.len()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Splits {
    pub train: Vec<QaExample>,
    pub val: Vec<QaExample>,
    pub test: Vec<QaExample>,
    /// Whether sizes were shrunk to fit the data (only with `allow_shrink`).
    pub shrunk: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct SplitSizes {
    pub train: usize,
    pub val: usize,
    pub test: usize,
}

/// Splits by context groups. Fails with the numbers when the data cannot fill the sizes, unless
/// `allow_shrink`, in which case train (then val) gets what is left.
pub fn split_by_context(
    examples: Vec<QaExample>,
    sizes: SplitSizes,
    seed: u64,
    allow_shrink: bool,
) -> Result<Splits, DataError> {
    // Groups in first-appearance order, so the result depends only on the input order and the seed.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, e) in examples.iter().enumerate() {
        let g = *index.entry(e.context.as_str()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    let n_groups = groups.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    groups.shuffle(&mut rng);

    let total = examples.len();
    let wanted = sizes.train + sizes.val + sizes.test;
    if total < wanted && !allow_shrink {
        return Err(DataError::Split(format!(
            "the data has {total} examples ({n_groups} contexts) after deduplication, but the split asks for \
             {} train + {} val + {} test = {wanted}; lower [split] sizes, add data, or set split.allow_shrink = true",
            sizes.train, sizes.val, sizes.test
        )));
    }

    let mut used = vec![false; groups.len()];
    let mut fill = |target: usize| -> Vec<usize> {
        let mut out = Vec::new();
        for (g, members) in groups.iter().enumerate() {
            if out.len() == target {
                break;
            }
            if !used[g] && out.len() + members.len() <= target {
                used[g] = true;
                out.extend_from_slice(members);
            }
        }
        out
    };
    let test = fill(sizes.test);
    let val = fill(sizes.val);
    let train = fill(sizes.train);
    let short = [("test", test.len(), sizes.test), ("val", val.len(), sizes.val), ("train", train.len(), sizes.train)];
    let mut shrunk = false;
    for (name, got, want) in short {
        if got < want {
            if allow_shrink && name != "test" {
                shrunk = true;
            } else {
                return Err(DataError::Split(format!(
                    "could fill only {got} of {want} {name} examples with whole context groups \
                     ({total} examples in {n_groups} contexts); lower split.{name} or set split.allow_shrink = true"
                )));
            }
        }
    }
    let mut slots: Vec<Option<QaExample>> = examples.into_iter().map(Some).collect();
    let mut take = |ids: Vec<usize>| ids.into_iter().filter_map(|i| slots[i].take()).collect::<Vec<_>>();
    Ok(Splits { test: take(test), val: take(val), train: take(train), shrunk })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(id: usize, ctx: usize) -> QaExample {
        QaExample {
            id: format!("r{id}"),
            context: format!("context {ctx}"),
            question: format!("q{id}"),
            answer: "a".into(),
            choices: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            label: 0,
        }
    }

    fn data() -> Vec<QaExample> {
        // 60 rows over 35 contexts: groups of 1, 2 and 3.
        (0..60).map(|i| ex(i, if i < 20 { i } else { 20 + (i - 20) / 3 })).collect()
    }

    #[test]
    fn exact_sizes_and_no_shared_context() {
        let s = split_by_context(data(), SplitSizes { train: 36, val: 8, test: 10 }, 7, false).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (36, 8, 10));
        let ctx = |v: &Vec<QaExample>| v.iter().map(|e| e.context.clone()).collect::<HashSet<_>>();
        assert!(ctx(&s.train).is_disjoint(&ctx(&s.test)));
        assert!(ctx(&s.train).is_disjoint(&ctx(&s.val)));
        assert!(ctx(&s.val).is_disjoint(&ctx(&s.test)));
    }

    #[test]
    fn seed_changes_the_split_and_repeats_exactly() {
        let sizes = SplitSizes { train: 36, val: 8, test: 10 };
        let a = split_by_context(data(), sizes, 1, false).unwrap();
        let b = split_by_context(data(), sizes, 1, false).unwrap();
        let c = split_by_context(data(), sizes, 2, false).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.test, c.test);
    }

    #[test]
    fn too_little_data_names_the_numbers() {
        let e = split_by_context(data(), SplitSizes { train: 50, val: 8, test: 10 }, 1, false).unwrap_err().to_string();
        assert!(e.contains("60 examples") && e.contains("68"), "{e}");
        let s = split_by_context(data(), SplitSizes { train: 50, val: 8, test: 10 }, 1, true).unwrap();
        assert!(s.shrunk && s.train.len() == 42);
    }

    #[test]
    fn dedup_drops_exact_triples_only() {
        let mut v = vec![ex(0, 0), ex(0, 0), ex(1, 0)];
        v[1].id = "other".into();
        assert_eq!(dedup(&mut v), 1);
        assert_eq!(v.len(), 2);
    }
}
