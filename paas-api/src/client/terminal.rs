//! Text from apps (build output, log lines, release descriptions, config values) printed on a
//! user's terminal must not drive it: escape sequences could retitle the window, clear the
//! screen or hide text, and bidirectional overrides could reorder what the user reads.

use std::borrow::Cow;

/// Whether `c` would act on a terminal instead of being shown: C0 controls (but tab and line
/// feed), DEL, C1 controls, and Unicode's bidirectional controls.
fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` safe to print on a terminal: every character that would act on it is shown as
/// `\u{XXXX}` instead. Borrowed when nothing needs escaping.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    escape(text, |c, out| {
        out.push_str(&format!("\\u{{{:04x}}}", c as u32))
    })
}

/// JSON text (as `serde_json` writes it) safe to print on a terminal: the characters that
/// would act on it are written as `\uXXXX` escapes, so the output is still the same JSON.
pub fn json_terminal_safe(json: &str) -> Cow<'_, str> {
    escape(json, |c, out| out.push_str(&format!("\\u{:04x}", c as u32)))
}

fn escape(text: &str, write: impl Fn(char, &mut String)) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) {
            write(c, &mut out);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_drives_a_terminal() {
        assert!(matches!(terminal_safe("plain\ttext\n"), Cow::Borrowed(_)));
        assert_eq!(
            terminal_safe("\u{1b}]0;pwned\u{7}\u{1b}[2J"),
            "\\u{001b}]0;pwned\\u{0007}\\u{001b}[2J"
        );
        assert_eq!(
            terminal_safe("abc\u{202e}def\r"),
            "abc\\u{202e}def\\u{000d}"
        );
        assert_eq!(terminal_safe("\u{9b}31m"), "\\u{009b}31m");
        let json = serde_json::to_string("x\u{1b}y\u{202e}z\u{7f}").unwrap();
        let safe = json_terminal_safe(&json);
        assert!(!safe.chars().any(is_unsafe), "{safe}");
        let back: String = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, "x\u{1b}y\u{202e}z\u{7f}");
    }
}
