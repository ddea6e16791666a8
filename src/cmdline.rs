//! The kernel command line: split into arguments exactly as the kernel does.
//!
//! The kernel's `next_arg()` (lib/cmdline.c) splits at whitespace outside double quotes, and
//! removes a leading `"` of the argument or of the value together with the matching
//! trailing `"`: `name="a b"` and `"name=a b"` both give `name` = `a b`. Everything after a
//! lone `--` belongs to init, not to the kernel.

use crate::config::{Loaded, RawSetting, Source};

/// Split a kernel command line into `name[=value]` arguments.
pub fn split(text: &str) -> Vec<RawSetting> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (arg, tail) = next_arg(rest);
        rest = tail.trim_start();
        if arg == "--" {
            break;
        }
        out.push(to_setting(arg));
    }
    out
}

/// The next raw argument (quotes still in it) and the text after it.
fn next_arg(text: &str) -> (&str, &str) {
    let mut in_quote = false;
    for (i, c) in text.char_indices() {
        if c == '"' {
            in_quote = !in_quote;
        } else if c.is_whitespace() && !in_quote {
            return (&text[..i], &text[i..]);
        }
    }
    (text, "")
}

/// Name and value of one argument, with the kernel's quote removal.
fn to_setting(arg: &str) -> RawSetting {
    let quoted = arg.starts_with('"');
    let arg = if quoted { &arg[1..] } else { arg };
    let strip_end = |s: &str| s.strip_suffix('"').unwrap_or(s).to_string();
    match arg.split_once('=') {
        Some((name, value)) => {
            let value = match value.strip_prefix('"') {
                Some(inner) => strip_end(inner),
                None if quoted => strip_end(value),
                None => value.to_string(),
            };
            RawSetting {
                name: name.to_string(),
                value: Some(value),
            }
        }
        None => RawSetting {
            name: strip_end(arg),
            value: None,
        },
    }
}

/// Read the settings of a kernel command line into `loaded` (highest precedence).
pub fn apply(loaded: &mut Loaded, text: &str) {
    loaded.apply_layer(Source::Cmdline, &split(text));
}

#[cfg(test)]
mod tests;
