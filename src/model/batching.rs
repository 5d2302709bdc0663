//! Length-sorted batching, written once: generation, sentence embeddings and BERTScore all batch rows
//! of similar length together (less padding) and put results back in input order.

/// Which rows come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthOrder {
    ShortestFirst,
    LongestFirst,
}

/// The indices of `lens`, sorted by length (ties in input order), cut into batches of at most `batch`.
pub fn length_sorted_batches(lens: &[usize], batch: usize, order: LengthOrder) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..lens.len()).collect();
    match order {
        LengthOrder::ShortestFirst => idx.sort_by_key(|&i| lens[i]),
        LengthOrder::LongestFirst => idx.sort_by_key(|&i| std::cmp::Reverse(lens[i])),
    }
    idx.chunks(batch.max(1)).map(<[usize]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_stable_and_complete() {
        let lens = [3, 1, 3, 2, 1];
        assert_eq!(length_sorted_batches(&lens, 2, LengthOrder::ShortestFirst), vec![vec![1, 4], vec![3, 0], vec![2]]);
        assert_eq!(length_sorted_batches(&lens, 3, LengthOrder::LongestFirst), vec![vec![0, 2, 3], vec![1, 4]]);
        assert_eq!(length_sorted_batches(&lens, 0, LengthOrder::ShortestFirst).len(), 5);
        assert!(length_sorted_batches(&[], 4, LengthOrder::ShortestFirst).is_empty());
    }
}
