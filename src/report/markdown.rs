//! Values into Markdown: REPORT.md prints every value taken from a ledger or a config as text, never as
//! markup. The report's minijinja environment escapes each value it prints with [`escape`] (its
//! auto-escape mode [`MARKDOWN`] and formatter [`format`]); only what the template itself writes, and
//! what hsx's own filters compute from numbers (`f`, `ci`, `pct`, …) or build around escaped values
//! (`code`, the entry citations), is printed as it is.
//!
//! What [`escape`] neutralises (CommonMark with GitHub's extensions, as GitHub and most viewers render
//! REPORT.md):
//!
//! * line breaks and every other control character, which would end a table row or start a new block
//!   (`## 7. Verdicts …` on a line of its own): shown as their Unicode control pictures (`␊` for a line
//!   feed), and invisible direction overrides and separators as `⟨U+202E⟩`;
//! * inline markup anywhere in the value: `\` `` ` `` `*` `~` `[` `]` `|` `$` are backslash-escaped
//!   (emphasis, code spans, strike-through, links and images, table cells, maths); `<` where HTML, a
//!   comment or an autolink could start (before a letter, `/`, `!` or `?`: `F1 < 0.2` stays as it is);
//!   `_` unless it lies between two letters or digits (where it cannot open or close emphasis:
//!   `question_variants` stays as it is); `&` where it could start an entity (`&lt;`);
//! * block markers at the start of the value (where a value may start a line): `#` `>` `-` `+` `=` and
//!   an ordered-list number (`1.`, `2)`).
//!
//! Escaping rather than refusing: a ledger is read as it is, and its values must render faithfully. The
//! config refuses control characters in its strings before a run starts (`config::validate`).
use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Output, State, Value};

/// The report's auto-escape mode: every template whose name ends in `.md`.
pub const MARKDOWN: AutoEscape = AutoEscape::Custom("markdown");

/// The auto-escape mode of a template by its name: REPORT.md and any `*.md` (the filter registry's
/// threshold texts are rendered as `threshold.md`) escape the values they print.
pub fn auto_escape(name: &str) -> AutoEscape {
    if name.ends_with(".md") {
        MARKDOWN
    } else {
        AutoEscape::None
    }
}

/// The formatter: in [`MARKDOWN`] mode a value not marked safe is written escaped (numbers, booleans
/// and `none` as minijinja writes them, which holds no markup).
pub fn format(out: &mut Output, state: &State, value: &Value) -> Result<(), minijinja::Error> {
    if state.auto_escape() != MARKDOWN {
        return minijinja::escape_formatter(out, state, value);
    }
    let text = match (value.is_safe(), value.kind()) {
        (true, _) | (_, ValueKind::Number | ValueKind::Bool | ValueKind::None | ValueKind::Undefined) => {
            value.to_string()
        }
        _ => escape(&value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())),
    };
    out.write_str(&text).map_err(minijinja::Error::from)
}

/// A character shown by name rather than written: controls, line and paragraph separators,
/// direction marks and overrides, a byte-order mark.
fn shown_by_name(c: char) -> Option<String> {
    match c {
        '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).map(String::from),
        '\u{7f}' => Some("\u{2421}".into()),
        '\u{80}'..='\u{9f}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{2028}'
        | '\u{2029}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
        | '\u{feff}' => Some(format!("⟨U+{:04X}⟩", c as u32)),
        _ => None,
    }
}

/// `s` as Markdown text that renders as `s` (see the module documentation).
pub fn escape(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 8);
    // A leading ordered-list number: the `.` or `)` after it is escaped.
    let digits = chars.iter().take_while(|c| c.is_ascii_digit()).count();
    let list_number = (1..=9).contains(&digits)
        && matches!(chars.get(digits), Some('.' | ')'))
        && chars.get(digits + 1).is_none_or(|c| *c == ' ' || *c == '\t');
    let alnum = |i: Option<usize>| i.and_then(|i| chars.get(i)).is_some_and(|c| c.is_alphanumeric());
    for (i, &c) in chars.iter().enumerate() {
        if let Some(name) = shown_by_name(c) {
            out.push_str(&name);
            continue;
        }
        let escaped = match c {
            '\\' | '`' | '*' | '~' | '[' | ']' | '|' | '$' => true,
            // HTML, a comment or an autolink start with `<` and a letter, `/`, `!` or `?`.
            '<' => chars.get(i + 1).is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?')),
            '_' => !(alnum(i.checked_sub(1)) && alnum(Some(i + 1))),
            '&' => chars.get(i + 1).is_some_and(|n| n.is_ascii_alphanumeric() || *n == '#'),
            '#' | '>' | '-' | '+' | '=' => i == 0,
            '.' | ')' => list_number && i == digits,
            _ => false,
        };
        if escaped {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `s` as a code span where it can be one: no backtick, no `|` (a table cell would end there), nothing
/// [`escape`] shows by name, no space at either end; otherwise as escaped text. Safe to print.
pub fn code(s: &str) -> Value {
    let plain = !s.is_empty()
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !s.chars().any(|c| c == '`' || c == '|' || shown_by_name(c).is_some());
    Value::from_safe_string(if plain { format!("`{s}`") } else { escape(s) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped_and_plain_text_kept() {
        for (raw, want) in [
            ("question_variants", "question_variants"),
            ("plain text, 3.2M-parameter (docs/x.md): 0.5", "plain text, 3.2M-parameter (docs/x.md): 0.5"),
            ("A > B", "A > B"),
            ("F1 < 0.2, a<b", r"F1 < 0.2, a\<b"),
            ("*bold* _em_ `code` ~~s~~", r"\*bold\* \_em\_ \`code\` \~\~s\~\~"),
            ("[x](http://e) ![i](y)", r"\[x\](http://e) !\[i\](y)"),
            ("<b>hi</b> &amp; & $x$ a|b", r"\<b>hi\</b> \&amp; & \$x\$ a\|b"),
            ("## 7. Verdicts", r"\## 7. Verdicts"),
            ("> quote", r"\> quote"),
            ("- item", r"\- item"),
            ("1. first", r"1\. first"),
            ("12) twelve", r"12\) twelve"),
            ("3.2M parameters", "3.2M parameters"),
            ("a\n\n## H\r\n| x |", "a␊␊## H␍␊\\| x \\|"),
            ("tab\there\u{0}", "tab␉here␀"),
            ("rtl \u{202e}cba", "rtl ⟨U+202E⟩cba"),
            ("back\\slash", r"back\\slash"),
            ("_lead", r"\_lead"),
            ("trail_", r"trail\_"),
        ] {
            assert_eq!(escape(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn code_spans_only_where_they_hold() {
        assert_eq!(code("models/flan-t5-base").as_str(), Some("`models/flan-t5-base`"));
        assert_eq!(code("a`b").as_str(), Some(r"a\`b"));
        assert_eq!(code("a|b").as_str(), Some(r"a\|b"));
        assert_eq!(code("x\n## y").as_str(), Some("x␊## y"));
        assert_eq!(code("").as_str(), Some(""));
        assert!(code("x").is_safe());
    }
}
