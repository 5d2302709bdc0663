//! Tokenizer parity in google/flan-t5-base's legacy `tokenizer.json` form (Precompiled charsmap,
//! Sequence[WhitespaceSplit, Metaspace{add_prefix_space}], Unigram, TemplateProcessing appending `</s>`):
//! hsx gives transformers' T5TokenizerFast ids, truncates to 512 as it does, and decodes to the same text,
//! for the experiment's prompts and the inputs that stress the form. The fixture and its script are in
//! tests/fixtures/tokenizer/ (make_legacy_tokenizer.py); no Python runs here.
mod common;

use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    made_by: String,
    max_length: usize,
    vocab_size: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    text: String,
    ids: Vec<i64>,
    ids_max_512: Vec<i64>,
    decoded: String,
}

fn expected() -> Expected {
    let p = common::repo_path("tests/fixtures/tokenizer/expected.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn tokenizer() -> hsx::model::TextTokenizer {
    hsx::model::TextTokenizer::load(&common::repo_path("tests/fixtures/tokenizer/tokenizer.json"))
        .unwrap_or_else(|e| panic!("the legacy-form tokenizer.json does not load: {e}"))
}

#[test]
fn the_fixture_is_the_legacy_form() {
    // The point of the fixture: the JSON hsx reads here has the hub file's legacy shape, not a newer one.
    let p = common::repo_path("tests/fixtures/tokenizer/tokenizer.json");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert_eq!(j["normalizer"]["type"], "Precompiled");
    assert_eq!(j["pre_tokenizer"]["pretokenizers"][0]["type"], "WhitespaceSplit");
    let meta = &j["pre_tokenizer"]["pretokenizers"][1];
    assert_eq!(meta, &serde_json::json!({"type": "Metaspace", "replacement": "\u{2581}", "add_prefix_space": true}));
    assert_eq!(
        j["decoder"],
        serde_json::json!({"type": "Metaspace", "replacement": "\u{2581}", "add_prefix_space": true})
    );
    assert_eq!(j["post_processor"]["type"], "TemplateProcessing");
    assert_eq!(j["model"]["type"], "Unigram");
}

#[test]
fn hsx_gives_transformers_ids_and_text_on_every_fixture_input() {
    let want = expected();
    let tok = tokenizer();
    assert_eq!(tok.inner().get_vocab_size(true), want.vocab_size, "vocabulary size ({})", want.made_by);
    assert!(want.cases.len() >= 30, "the fixture lost inputs: {}", want.cases.len());
    let mut failures = Vec::new();
    for c in &want.cases {
        let ids = tok.encode(&c.text, None).unwrap();
        if ids != c.ids {
            failures.push(format!("{}: ids\n  hsx          {:?}\n  transformers {:?}", c.name, ids, c.ids));
            continue;
        }
        let truncated = tok.encode(&c.text, Some(want.max_length)).unwrap();
        if truncated != c.ids_max_512 {
            failures.push(format!("{}: ids truncated to {}", c.name, want.max_length));
        }
        let text = tok.decode(&ids).unwrap();
        if text != c.decoded {
            failures.push(format!("{}: decoded\n  hsx          {:?}\n  transformers {:?}", c.name, text, c.decoded));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} inputs differ from {}:\n{}",
        failures.len(),
        want.cases.len(),
        want.made_by,
        failures.join("\n")
    );
}

#[test]
fn the_inputs_that_matter_are_there_and_behave_as_the_hub_form_does() {
    let want = expected();
    let by_name = |n: &str| want.cases.iter().find(|c| c.name == n).unwrap_or_else(|| panic!("no input {n}"));
    // Every prompt template of the experiment, filled.
    for t in ["answer", "paraphrase", "question_variant", "context", "expansion", "expansion_target"] {
        assert!(want.cases.iter().any(|c| c.name.starts_with(&format!("{t}_"))), "no {t} prompt");
    }
    // "\n\n" (in every prompt) is whitespace to the charsmap and WhitespaceSplit: nothing but </s>.
    assert_eq!(by_name("blank_lines").ids, vec![1]);
    let prompt = &by_name("answer_0");
    assert!(prompt.text.contains("\n\n") && !prompt.decoded.contains('\n'), "{:?}", prompt.decoded);
    // Unknown characters are <unk> (2), and past 512 tokens the truncation keeps the final </s>.
    assert!(by_name("emoji").ids.contains(&2));
    let long = by_name("past_512_tokens");
    assert!(long.ids.len() > want.max_length);
    assert_eq!(long.ids_max_512.len(), want.max_length);
    assert_eq!(long.ids_max_512.last(), Some(&1));
}
