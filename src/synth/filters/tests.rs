//! Unit tests of the filter registry and the filters (kept apart so `filters.rs` stays under the line limit).
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
    assert!(s.check(qv, ("the cat sat on the MAT", "where did it   sit?", "on the mat today."), &[]).exact_duplicate);
    let other = ("The cat sat on the mat", "What did the cat do?", "It sat.");
    assert!(!s.check(qv, other, &[]).exact_duplicate);
    assert!(s.check(qv, other, &[]).exact_duplicate, "repeat of a candidate");
    // Fields are compared field by field: moving a word across a field boundary is another example.
    assert!(!s.check(qv, ("The cat sat on the", "mat Where did it sit?", "On the mat today."), &[]).exact_duplicate);
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
        ["malformed", "exact_duplicate", "ngram_overlap", "semantic_similarity", "minhash_near_duplicate", "length"]
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
