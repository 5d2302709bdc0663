//! The counter-based sampler (`crate::model::generate`): a row's sampled tokens depend on the stage seed,
//! the row's key (its prompt's index in its dataset) and the step only, so the same rows give the same
//! samples at batch 1, 7 and 64, in any batch composition or order; two identical runs are bit-identical.
//! On the committed tiny T5 fixture, on the CPU.
mod common;

use hsx::model::{
    dataset_keys, generate, generate_keyed, generate_texts, generate_texts_capped, load_t5, GenerateOptions, LoadedT5,
};

const WORDS: [&str; 8] = ["river", "store", "friend", "rain", "morning", "cat", "work", "choices"];

fn model() -> LoadedT5 {
    load_t5(&common::repo_path("tests/fixtures/t5/model"), common::test_device()).unwrap()
}

/// 64 distinct prompts of varied lengths, from the fixture's texts and its vocabulary.
fn prompts() -> Vec<String> {
    (0..64)
        .map(|i| {
            let tail: Vec<&str> = (0..(i % 9)).map(|k| WORDS[(i * 3 + k) % WORDS.len()]).collect();
            format!("why did the {} go back {} ?", WORDS[i % WORDS.len()], tail.join(" "))
        })
        .collect()
}

fn sampled(seed: u64, top_p: f64) -> GenerateOptions {
    GenerateOptions { max_new_tokens: 12, min_new_tokens: 2, temperature: 0.9, top_p, seed, bf16: false }
}

/// Runs the rows in chunks of `batch`, in the given order of rows, each keyed by its own index; returns
/// the outputs in row order.
fn run_in(m: &LoadedT5, ids: &[Vec<i64>], order: &[usize], batch: usize, opts: &GenerateOptions) -> Vec<Vec<i64>> {
    let mut out = vec![Vec::new(); ids.len()];
    for chunk in order.chunks(batch) {
        let rows: Vec<Vec<i64>> = chunk.iter().map(|&i| ids[i].clone()).collect();
        let keys: Vec<u64> = chunk.iter().map(|&i| i as u64).collect();
        for (o, &i) in generate_keyed(&m.model, &rows, &keys, opts).into_iter().zip(chunk) {
            out[i] = o;
        }
    }
    out
}

#[test]
fn a_rows_samples_do_not_depend_on_its_batch() {
    let m = model();
    let ids: Vec<Vec<i64>> = prompts().iter().map(|p| m.tokenizer.encode(p, None).unwrap()).collect();
    let order: Vec<usize> = (0..ids.len()).collect();
    // A fixed scramble of the rows (a stride coprime to 64), so the batches of 7 hold other neighbours.
    let scrambled: Vec<usize> = (0..ids.len()).map(|i| (i * 37 + 5) % ids.len()).collect();
    for top_p in [1.0, 0.8] {
        let opts = sampled(11, top_p);
        let at64 = run_in(&m, &ids, &order, 64, &opts);
        assert_eq!(run_in(&m, &ids, &order, 1, &opts), at64, "batch 1 against batch 64 (top_p {top_p})");
        assert_eq!(run_in(&m, &ids, &order, 7, &opts), at64, "batch 7 against batch 64 (top_p {top_p})");
        assert_eq!(run_in(&m, &ids, &scrambled, 7, &opts), at64, "scrambled batches of 7 (top_p {top_p})");
        // The test can fail: sampling really draws (not greedy), and another seed draws otherwise.
        let greedy = generate(&m.model, &ids, &GenerateOptions { temperature: 0.0, ..opts.clone() });
        assert_ne!(at64, greedy, "T = 0.9 sampled exactly the greedy ids for all 64 rows");
        assert_ne!(run_in(&m, &ids, &order, 64, &sampled(12, top_p)), at64, "seeds 11 and 12 drew the same");
    }
}

#[test]
fn two_identical_sampled_runs_are_bit_identical() {
    let m = model();
    let ids: Vec<Vec<i64>> = prompts().iter().map(|p| m.tokenizer.encode(p, None).unwrap()).collect();
    let opts = sampled(3, 0.9);
    let keys = dataset_keys(ids.len());
    assert_eq!(generate_keyed(&m.model, &ids, &keys, &opts), generate_keyed(&m.model, &ids, &keys, &opts));
}

#[test]
fn texts_do_not_depend_on_the_batch_size_or_the_prompts_beside_them() {
    let m = model();
    let p = prompts();
    let keys = dataset_keys(p.len());
    let opts = sampled(5, 0.95);
    let at = |batch| generate_texts(&m, &p, &keys, &opts, batch, 64, None).unwrap();
    let full = at(64);
    assert_eq!(at(5), full, "batch 5 against batch 64");
    // Half the prompts alone, keyed by their index in the whole set, give their texts of the whole run.
    let odd: Vec<usize> = (0..p.len()).filter(|i| i % 2 == 1).collect();
    let sub: Vec<String> = odd.iter().map(|&i| p[i].clone()).collect();
    let sub_keys: Vec<u64> = odd.iter().map(|&i| i as u64).collect();
    let got = generate_texts(&m, &sub, &sub_keys, &opts, 16, 64, None).unwrap();
    assert_eq!(got, odd.iter().map(|&i| full[i].clone()).collect::<Vec<_>>());
    // A key list of the wrong length is an error, not a panic.
    let e = generate_texts(&m, &p, &keys[1..], &opts, 8, 64, None).unwrap_err().to_string();
    assert!(e.contains("64 prompts but 63 sampling keys"), "{e}");
}

/// Point 4 of issue 32: prompts of different tasks (different caps on new tokens) share full batches, and
/// each text is what its task's own, part-empty batches gave.
#[test]
fn mixed_caps_in_full_batches_give_what_each_task_gives_alone() {
    let m = model();
    let p = prompts();
    let keys = dataset_keys(p.len());
    let caps: Vec<usize> = (0..p.len()).map(|i| [3, 12, 7][i % 3]).collect();
    let opts = GenerateOptions { max_new_tokens: 12, ..sampled(8, 0.9) };
    let mixed = generate_texts_capped(&m, &p, &keys, Some(&caps), &opts, 16, 64, None).unwrap();
    let mut alone = vec![String::new(); p.len()];
    for cap in [3, 12, 7] {
        let idx: Vec<usize> = (0..p.len()).filter(|&i| caps[i] == cap).collect();
        let sub: Vec<String> = idx.iter().map(|&i| p[i].clone()).collect();
        let sub_keys: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
        let o = GenerateOptions { max_new_tokens: cap, ..opts.clone() };
        for (t, &i) in generate_texts(&m, &sub, &sub_keys, &o, 16, 64, None).unwrap().into_iter().zip(&idx) {
            alone[i] = t;
        }
    }
    assert_eq!(mixed, alone);
    // The caps bite: some 3-token texts are shorter than the same prompt's 12-token text.
    let long = generate_texts(&m, &p, &keys, &opts, 16, 64, None).unwrap();
    assert!((0..p.len()).any(|i| caps[i] == 3 && mixed[i] != long[i]), "a cap of 3 never cut a text");
    let e = generate_texts_capped(&m, &p, &keys, Some(&caps[1..]), &opts, 8, 64, None).unwrap_err().to_string();
    assert!(e.contains("64 prompts but 63 token caps"), "{e}");
}
