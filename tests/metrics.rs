//! Metrics equal the reference implementations: SQuAD v1.1 EM/F1 and rouge-score ROUGE to 1e-6 per
//! example (with and without stemming), NLTK's Porter stems exactly, sentence-transformers MiniLM
//! embeddings (cosine ≥ 0.9999, max-abs ≤ 1e-4) and bert-score's BERTScore. Fixtures:
//! tests/fixtures/metrics/make_metrics_fixture.py.
mod common;

use hsx::metrics::bertscore::{bertscore, BertScoreOptions};
use hsx::metrics::{porter, rouge, squad};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(common::repo_path(&format!("tests/fixtures/metrics/{name}"))).unwrap(),
    )
    .unwrap()
}

#[test]
fn em_f1_rouge_match_references_per_example() {
    let fx = fixture("pairs.json");
    let pairs = fx["pairs"].as_array().unwrap();
    assert!(pairs.len() >= 300);
    let mut worst = 0f64;
    for (i, p) in pairs.iter().enumerate() {
        let (pred, reference) = (p["pred"].as_str().unwrap(), p["ref"].as_str().unwrap());
        let checks = [
            ("em", squad::exact_match(pred, reference), p["em"].as_f64().unwrap()),
            ("f1", squad::f1(pred, reference), p["f1"].as_f64().unwrap()),
        ];
        for (name, got, want) in checks {
            assert!((got - want).abs() <= 1e-6, "pair {i} {name}: {got} vs {want} for {pred:?} / {reference:?}");
        }
        for (key, stem) in [("rouge", false), ("rouge_stem", true)] {
            let (r1, r2, rl) = rouge::rouge_f(pred, reference, stem);
            for (k, got) in [r1, r2, rl].into_iter().enumerate() {
                let want = p[key][k].as_f64().unwrap();
                worst = worst.max((got - want).abs());
                assert!(
                    (got - want).abs() <= 1e-6,
                    "pair {i} {key}[{k}]: {got} vs {want} for {pred:?} / {reference:?}"
                );
            }
        }
    }
    eprintln!("{} pairs, worst ROUGE difference {worst:e}", pairs.len());
}

#[test]
fn porter_stems_equal_nltk() {
    let fx = fixture("pairs.json");
    for (w, s) in fx["porter"].as_object().unwrap() {
        assert_eq!(porter::stem(w), s.as_str().unwrap(), "{w}");
    }
}

fn minilm() -> hsx::model::bert::Bert {
    hsx::model::bert::load_minilm(None, tch::Device::Cpu).unwrap_or_else(|e| {
        panic!("{e}\n(the MiniLM tests need the bootstrap's model: run `make bootstrap`, or set HSX_MINILM)")
    })
}

#[test]
fn minilm_sentence_embeddings_match_sentence_transformers() {
    let fx = fixture("minilm.json");
    let bert = minilm();
    let sentences: Vec<String> =
        fx["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
    let got = bert.embed(&sentences, 3, 256).unwrap();
    for (i, want) in fx["embeddings"].as_array().unwrap().iter().enumerate() {
        let want: Vec<f32> = want.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let w = tch::Tensor::from_slice(&want);
        let g = got.get(i as i64);
        let cos = g.dot(&w).double_value(&[]) / (g.norm().double_value(&[]) * w.norm().double_value(&[]));
        let max_abs = (&g - &w).abs().max().double_value(&[]);
        eprintln!("sentence {i}: cosine {cos:.8}, max-abs {max_abs:e}");
        assert!(cos >= 0.9999 && max_abs <= 1e-4, "sentence {i}: cosine {cos}, max-abs {max_abs}");
    }
}

/// The batched path (tokenized once, length-sorted batches, each padded to its own longest row, packed
/// linears) gives each sentence the vector it gets embedded alone, in input order: cosine ≥ 0.99999 and
/// max-abs ≤ 1e-5 per sentence (float32 sums in another order move the last bits only).
#[test]
fn minilm_batched_embeddings_equal_one_at_a_time_in_input_order() {
    let bert = minilm();
    let long = "The committee met again on Tuesday to discuss the budget, and nobody agreed. ".repeat(40);
    let sentences: Vec<String> = [
        "Why did she leave?",
        "I walked to the store this morning because the car would not start , and on the way I met an old friend from school who told me about her new job at the hospital .",
        "",
        "Yes .",
        long.as_str(),
        "They were tired after the long drive home .",
        "None of the above choices .",
        "He fixed the roof before the storm came , so the house stayed dry .",
        "Why did she leave?",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let lens: Vec<usize> = sentences.iter().map(|s| bert.encode_ids(s, 256).unwrap().len()).collect();
    assert!(
        lens.windows(2).any(|w| w[0] < w[1]) && lens.windows(2).any(|w| w[0] > w[1]),
        "lengths must be unsorted: {lens:?}"
    );
    assert_eq!(lens[4], 256, "the long text is truncated to max_len");
    let cos = |a: &tch::Tensor, b: &tch::Tensor| {
        a.dot(b).double_value(&[]) / (a.norm().double_value(&[]) * b.norm().double_value(&[]))
    };
    for batch in [1, 3, 4, 64] {
        let got = bert.embed(&sentences, batch, 256).unwrap();
        assert_eq!(got.size(), vec![sentences.len() as i64, bert.cfg.hidden_size as i64]);
        for (i, s) in sentences.iter().enumerate() {
            let alone = bert.embed(std::slice::from_ref(s), 1, 256).unwrap().get(0);
            let g = got.get(i as i64);
            let (c, max_abs) = (cos(&g, &alone), (&g - &alone).abs().max().double_value(&[]));
            assert!(c >= 0.99999 && max_abs <= 1e-5, "batch {batch}, sentence {i}: cosine {c}, max-abs {max_abs}");
            assert!((g.norm().double_value(&[]) - 1.0).abs() < 1e-5, "batch {batch}, sentence {i}: not unit length");
        }
        // A mix-up of rows would show: distinct sentences are far apart, repeated ones coincide.
        assert!(cos(&got.get(0), &got.get(1)) < 0.99);
        assert!(cos(&got.get(0), &got.get(8)) >= 0.99999);
    }
    assert_eq!(bert.embed(&[], 4, 256).unwrap().size(), vec![0, bert.cfg.hidden_size as i64]);
}

#[test]
fn bertscore_matches_the_bert_score_package() {
    let fx = fixture("minilm.json");
    let bert = minilm();
    let strings =
        |k: &str| -> Vec<String> { fx[k].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect() };
    let (cands, refs) = (strings("cands"), strings("refs"));
    for (name, opts) in [
        ("last", BertScoreOptions::default()),
        ("layer3", BertScoreOptions { layer: 3, ..Default::default() }),
        ("idf", BertScoreOptions { idf: true, ..Default::default() }),
    ] {
        let s = bertscore(&bert, &cands, &refs, &opts).unwrap();
        for (k, got) in [("P", &s.precision), ("R", &s.recall), ("F", &s.f1)] {
            for (i, g) in got.iter().enumerate() {
                let want = fx["bertscore"][name][k][i].as_f64().unwrap();
                assert!((g - want).abs() <= 1e-4, "{name} {k}[{i}]: {g} vs bert-score {want}");
            }
        }
        assert_eq!(s.model, "all-MiniLM-L6-v2");
    }
}
