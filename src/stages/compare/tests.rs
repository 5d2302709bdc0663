//! Unit tests of the compare stage (kept apart so `compare.rs` stays under the line limit).
use super::*;

#[test]
fn the_csv_has_three_columns_per_compared_metric() {
    let cell = |mean, lo, hi| Cell { mean, ci: Some([lo, hi]), ci95: None };
    let row: BTreeMap<String, Cell> =
        registry::compared().map(|m| (m.key.to_string(), cell(0.5, 0.25, 0.75))).collect();
    let table = BTreeMap::from([("A".to_string(), row)]);
    let base = BTreeMap::from([("constant".to_string(), BTreeMap::from([("em".to_string(), cell(0.1, 0.05, 0.15))]))]);
    let csv = metrics_table_csv(&table, &base);
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(header.len(), 1 + 3 * registry::compared().count());
    assert_eq!(&header[..4], ["System", "EM", "EM_ci_low", "EM_ci_high"]);
    assert!(csv.lines().nth(1).unwrap().starts_with("A,0.500000,0.250000,0.750000"));
    // A baseline row: its metrics, and empty cells where it was not scored.
    let b = csv.lines().nth(2).unwrap();
    assert!(b.starts_with("baseline:constant,0.100000,0.050000,0.150000,,,"), "{b}");
    assert_eq!(b.split(',').count(), header.len());
}

fn qa(id: &str, context: &str, question: &str, answer: &str, choices: [&str; 4], label: u8) -> QaExample {
    QaExample {
        id: id.into(),
        context: context.into(),
        question: question.into(),
        answer: answer.into(),
        choices: choices.iter().map(|c| c.to_string()).collect(),
        label,
    }
}

#[test]
fn a_baselines_scores_are_its_predictions_scored_directly_on_every_compared_metric() {
    let bert = crate::model::bert::load_minilm(None, tch::Device::Cpu).unwrap_or_else(|e| {
        panic!("{e}\n(this test needs the bootstrap's MiniLM: run `make bootstrap`, or set HSX_MINILM)")
    });
    let bopts = crate::metrics::bertscore::BertScoreOptions::default();
    let train = vec![
        qa(
            "t1",
            "We went out.",
            "Why?",
            "None of the above choices .",
            ["a", "b", "c", "None of the above choices ."],
            3,
        ),
        qa(
            "t2",
            "We went out.",
            "Why?",
            "None of the above choices .",
            ["a", "b", "c", "None of the above choices ."],
            3,
        ),
        qa("t3", "We went out.", "Why?", "To buy milk.", ["To buy milk.", "b", "c", "d"], 0),
    ];
    let test = vec![
        qa(
            "x1",
            "The dog ran to the park. It was sunny.",
            "Where did the dog run?",
            "To the park.",
            ["To the park.", "To the shop.", "Home.", "None of the above choices ."],
            0,
        ),
        qa(
            "x2",
            "She was tired so she went to sleep. It was late.",
            "Why did she sleep?",
            "She was tired.",
            ["She was hungry.", "She was tired.", "It was late.", "None of the above choices ."],
            1,
        ),
        qa(
            "x3",
            "Rain fell all day. We stayed in.",
            "What did we do?",
            "None of the above choices .",
            ["We went out.", "We swam.", "We ran.", "None of the above choices ."],
            3,
        ),
    ];
    let (scores, described, encoder) = baseline_scores(&train, &test, true, &bert, &bopts).unwrap();
    assert_eq!(encoder.0, "all-MiniLM-L6-v2");
    let refs: Vec<String> = test.iter().map(|e| e.answer.clone()).collect();
    for b in Baseline::ALL {
        let s = &scores[b.key()];
        // Every compared metric of the registry has a baseline row now.
        for m in registry::compared() {
            assert_eq!(s.get(m.key).map(Vec::len), Some(test.len()), "{} has no {}", b.key(), m.key);
        }
        let preds = baselines::predictions(b, &train, &test);
        let direct = crate::metrics::bertscore::bertscore(&bert, &preds, &refs, &bopts).unwrap();
        assert_eq!(s["bertscore_f1"], direct.f1, "{}", b.key());
        assert_eq!(s["mc_accuracy"], baselines::mc_correct(&preds, &test), "{}", b.key());
        assert_eq!(s["f1"], crate::metrics::lexical(&preds, &refs, &[Metric::F1], true).f1, "{}", b.key());
        assert!(s["bertscore_f1"].iter().all(|x| x.is_finite() && x.abs() <= 1.0 + 1e-5), "{:?}", s["bertscore_f1"]);
    }
    // The rule, by hand: the constant answer "None of the above choices ." picks option 4 (right on
    // x3 only); the context sentence of x2 ("She was tired so she went to sleep.") picks option 2 (right).
    assert_eq!(described["constant"].answer.as_deref(), Some("None of the above choices ."));
    assert_eq!(scores["constant"]["mc_accuracy"], vec![0.0, 0.0, 1.0]);
    assert_eq!(scores["context-sentence"]["mc_accuracy"][1], 1.0);
    // An answer identical to its reference has BERTScore F1 1 (x3's constant answer).
    assert!((scores["constant"]["bertscore_f1"][2] - 1.0).abs() < 1e-5, "{:?}", scores["constant"]["bertscore_f1"]);
}
