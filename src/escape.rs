//! Console-safe text: control characters in values from the command line, files or the
//! engine are shown as escapes, so a hostile value cannot move the cursor, clear the screen
//! or forge a log line.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character (C0, DEL, C1) escaped: `\n`, `\r`, `\t`, else `\xHH`.
/// Nothing else is touched, not even `\`: the result is for people, not for parsing back,
/// and escaping only what cannot be printed makes the function idempotent, so a line built
/// from already escaped parts can be escaped again at the place it is printed.
pub fn controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Every control character is below U+00A0, so two hex digits suffice.
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::controls;

    #[test]
    fn escapes_control_characters_only() {
        assert_eq!(
            controls("a\x1b[2Jb\nc\td\re\x7f\u{9b}f\0"),
            "a\\x1b[2Jb\\nc\\td\\re\\x7f\\x9bf\\x00"
        );
        assert_eq!(controls("plain é ∞ \\x1b"), "plain é ∞ \\x1b");
        assert!(matches!(controls("plain"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn idempotent() {
        let once = controls("x\x1by\nz");
        assert_eq!(controls(&once), once);
    }
}
