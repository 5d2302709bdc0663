//! The Porter stemmer exactly as NLTK's `PorterStemmer()` computes it in its default
//! `NLTK_EXTENSIONS` mode — the stemmer Google's `rouge-score` applies (to tokens longer than 3
//! characters) when `use_stemmer=True`. Input is one lowercase token of `[a-z0-9]`.
//!
//! Differences from Porter (1980) that NLTK's mode adds and that are reproduced here: a table of
//! irregular forms (skies → sky, dying → die, ...); words of ≤ 2 letters are left alone; `-ies`/`-ied`
//! on 4-letter words keep their `ie`; `-ied` → `i`; step 1c turns `y` into `i` only after a consonant that
//! is not the first letter; step 2 maps `-bli` (not `-abli`), adds `-fulli` → `ful` and `-logi` → `log`, and
//! applies `-alli` → `al` recursively; a two-letter vowel-consonant stem counts as *o (cvc).

/// Consonant flags per letter: a letter other than a e i o u, and other than a `y` after a consonant.
fn consonants(w: &[u8]) -> Vec<bool> {
    let mut f: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let v = match c {
            b'a' | b'e' | b'i' | b'o' | b'u' => false,
            b'y' => i == 0 || !f[i - 1],
            _ => true,
        };
        f.push(v);
    }
    f
}

/// m in [C](VC){m}[V].
fn measure(w: &[u8]) -> usize {
    let f = consonants(w);
    f.windows(2).filter(|p| !p[0] && p[1]).count()
}

fn contains_vowel(w: &[u8]) -> bool {
    consonants(w).iter().any(|c| !c)
}

fn is_consonant(w: &[u8], i: usize) -> bool {
    consonants(&w[..=i])[i]
}

fn ends_double_consonant(w: &[u8]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

/// *o: ends consonant-vowel-consonant with the last not w, x, y (NLTK: or is a 2-letter vowel-consonant).
fn ends_cvc(w: &[u8]) -> bool {
    let n = w.len();
    if n >= 3 {
        let f = consonants(w);
        if f[n - 3] && !f[n - 2] && f[n - 1] && !matches!(w[n - 1], b'w' | b'x' | b'y') {
            return true;
        }
    }
    n == 2 && !is_consonant(w, 0) && is_consonant(w, 1)
}

type Cond<'a> = &'a dyn Fn(&[u8]) -> bool;

/// The first rule whose suffix matches decides: replaced when its condition holds, else the word stays.
fn apply(w: Vec<u8>, rules: &[(&str, &str, Option<Cond>)]) -> Vec<u8> {
    for (suffix, repl, cond) in rules {
        if w.ends_with(suffix.as_bytes()) {
            let stem = &w[..w.len() - suffix.len()];
            return if cond.is_none_or(|c| c(stem)) { [stem, repl.as_bytes()].concat() } else { w };
        }
    }
    w
}

fn replace_end(w: &[u8], suffix: &str, repl: &str) -> Vec<u8> {
    [&w[..w.len() - suffix.len()], repl.as_bytes()].concat()
}

fn step1a(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"ies") && w.len() == 4 {
        return replace_end(&w, "ies", "ie");
    }
    apply(w, &[("sses", "ss", None), ("ies", "i", None), ("ss", "ss", None), ("s", "", None)])
}

fn step1b(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"ied") {
        return replace_end(&w, "ied", if w.len() == 4 { "ie" } else { "i" });
    }
    if w.ends_with(b"eed") {
        let stem = &w[..w.len() - 3];
        return if measure(stem) > 0 { [stem, b"ee"].concat() } else { w };
    }
    let mut stem = None;
    for suffix in ["ed", "ing"] {
        if w.ends_with(suffix.as_bytes()) {
            let s = &w[..w.len() - suffix.len()];
            if contains_vowel(s) {
                stem = Some(s.to_vec());
                break;
            }
        }
    }
    let Some(s) = stem else { return w };
    for (suffix, repl) in [("at", "ate"), ("bl", "ble"), ("iz", "ize")] {
        if s.ends_with(suffix.as_bytes()) {
            return replace_end(&s, suffix, repl);
        }
    }
    if ends_double_consonant(&s) {
        let last = s[s.len() - 1];
        return if !matches!(last, b'l' | b's' | b'z') { s[..s.len() - 1].to_vec() } else { s };
    }
    if measure(&s) == 1 && ends_cvc(&s) {
        return [&s[..], b"e"].concat();
    }
    s
}

fn step1c(w: Vec<u8>) -> Vec<u8> {
    let cond = |stem: &[u8]| stem.len() > 1 && is_consonant(stem, stem.len() - 1);
    apply(w, &[("y", "i", Some(&cond))])
}

fn step2(w: Vec<u8>) -> Vec<u8> {
    let pos = |s: &[u8]| measure(s) > 0;
    if w.ends_with(b"alli") && pos(&w[..w.len() - 4]) {
        return step2(replace_end(&w, "alli", "al"));
    }
    let whole = w.clone();
    let logi = move |_: &[u8]| measure(&whole[..whole.len() - 3]) > 0;
    apply(
        w,
        &[
            ("ational", "ate", Some(&pos)),
            ("tional", "tion", Some(&pos)),
            ("enci", "ence", Some(&pos)),
            ("anci", "ance", Some(&pos)),
            ("izer", "ize", Some(&pos)),
            ("bli", "ble", Some(&pos)),
            ("alli", "al", Some(&pos)),
            ("entli", "ent", Some(&pos)),
            ("eli", "e", Some(&pos)),
            ("ousli", "ous", Some(&pos)),
            ("ization", "ize", Some(&pos)),
            ("ation", "ate", Some(&pos)),
            ("ator", "ate", Some(&pos)),
            ("alism", "al", Some(&pos)),
            ("iveness", "ive", Some(&pos)),
            ("fulness", "ful", Some(&pos)),
            ("ousness", "ous", Some(&pos)),
            ("aliti", "al", Some(&pos)),
            ("iviti", "ive", Some(&pos)),
            ("biliti", "ble", Some(&pos)),
            ("fulli", "ful", Some(&pos)),
            ("logi", "log", Some(&logi)),
        ],
    )
}

fn step3(w: Vec<u8>) -> Vec<u8> {
    let pos = |s: &[u8]| measure(s) > 0;
    apply(
        w,
        &[
            ("icate", "ic", Some(&pos)),
            ("ative", "", Some(&pos)),
            ("alize", "al", Some(&pos)),
            ("iciti", "ic", Some(&pos)),
            ("ical", "ic", Some(&pos)),
            ("ful", "", Some(&pos)),
            ("ness", "", Some(&pos)),
        ],
    )
}

fn step4(w: Vec<u8>) -> Vec<u8> {
    let gt1 = |s: &[u8]| measure(s) > 1;
    let ion = |s: &[u8]| measure(s) > 1 && matches!(s.last(), Some(b's' | b't'));
    apply(
        w,
        &[
            ("al", "", Some(&gt1)),
            ("ance", "", Some(&gt1)),
            ("ence", "", Some(&gt1)),
            ("er", "", Some(&gt1)),
            ("ic", "", Some(&gt1)),
            ("able", "", Some(&gt1)),
            ("ible", "", Some(&gt1)),
            ("ant", "", Some(&gt1)),
            ("ement", "", Some(&gt1)),
            ("ment", "", Some(&gt1)),
            ("ent", "", Some(&gt1)),
            ("ion", "", Some(&ion)),
            ("ou", "", Some(&gt1)),
            ("ism", "", Some(&gt1)),
            ("ate", "", Some(&gt1)),
            ("iti", "", Some(&gt1)),
            ("ous", "", Some(&gt1)),
            ("ive", "", Some(&gt1)),
            ("ize", "", Some(&gt1)),
        ],
    )
}

fn step5a(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"e") {
        let stem = &w[..w.len() - 1];
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            return stem.to_vec();
        }
    }
    w
}

fn step5b(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"ll") && measure(&w[..w.len() - 1]) > 1 {
        return w[..w.len() - 1].to_vec();
    }
    w
}

const IRREGULAR: &[(&str, &str)] = &[
    ("sky", "sky"),
    ("skies", "sky"),
    ("dying", "die"),
    ("lying", "lie"),
    ("tying", "tie"),
    ("news", "news"),
    ("innings", "inning"),
    ("inning", "inning"),
    ("outings", "outing"),
    ("outing", "outing"),
    ("cannings", "canning"),
    ("canning", "canning"),
    ("howe", "howe"),
    ("proceed", "proceed"),
    ("exceed", "exceed"),
    ("succeed", "succeed"),
];

/// Stems one lowercase ASCII token.
pub fn stem(word: &str) -> String {
    if let Some((_, s)) = IRREGULAR.iter().find(|(w, _)| *w == word) {
        return (*s).to_owned();
    }
    if word.chars().count() <= 2 || !word.is_ascii() {
        return word.to_owned();
    }
    let mut w = word.as_bytes().to_vec();
    w = step1a(w);
    w = step1b(w);
    w = step1c(w);
    w = step2(w);
    w = step3(w);
    w = step4(w);
    w = step5a(w);
    w = step5b(w);
    String::from_utf8(w).expect("ASCII in, ASCII out")
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn porter_paper_and_nltk_examples() {
        for (w, s) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("cats", "cat"),
            ("feed", "feed"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("motoring", "motor"),
            ("sing", "sing"),
            ("conflated", "conflat"),
            ("troubled", "troubl"),
            ("sized", "size"),
            ("hopping", "hop"),
            ("falling", "fall"),
            ("filing", "file"),
            ("happy", "happi"),
            ("enjoy", "enjoy"),
            ("relational", "relat"),
            ("skies", "sky"),
            ("dying", "die"),
            ("generously", "gener"),
            ("controlling", "control"),
            ("cried", "cri"),
            ("tied", "tie"),
            ("spy", "spi"),
        ] {
            assert_eq!(stem(w), s, "{w}");
        }
    }
}
