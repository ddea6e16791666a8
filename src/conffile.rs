//! The one editor of the `key=value` files we share with other programs: INI files
//! (`vdsm-reg.conf`, `vdsm.conf`) and shell-variable files (`/etc/default/ovirt`, ifcfg).
//!
//! Each format has one rule for which lines are assignments, used by the reader and by the
//! writer alike, so that what is written is what is read back. An edit touches only the
//! assignment lines of its key; every other line (comments, unknown keys, other sections,
//! blank lines) is kept as it was.
//!
//! A key may be assigned more than once (twice in a file, or in a section written twice).
//! The readers that matter take the last assignment (the shell; vdsm's ConfigParser), while
//! `sed`-based tools rewrite all of them, so `set` rewrites every assignment of the key.

// ---------------------------------------------------------------------------------- INI

/// How an INI assignment is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `key=value`: the boot hook's `sed` patterns need it in `vdsm-reg.conf`
    /// (docs/ovirt-protocol.md §2.2).
    Tight,
    /// `key = value`: what ConfigParser writes (`vdsm.conf`).
    Spaced,
}

/// `(line index, key, value)` of every assignment inside every `[section]`, as ConfigParser
/// reads it: a line starting with `[` opens a section (the section is `[name]` exactly),
/// `#` and `;` start comments, the key ends at the first `=` or `:`, and key and value are
/// trimmed. Lines before the first header belong to no section.
pub fn ini_assignments<'a, S: AsRef<str>>(
    lines: &'a [S],
    section: &'a str,
) -> impl Iterator<Item = (usize, &'a str, &'a str)> + 'a {
    let mut inside = false;
    lines.iter().enumerate().filter_map(move |(i, line)| {
        let line = line.as_ref().trim();
        if let Some(name) = header(line) {
            inside = name == Some(section);
            return None;
        }
        if !inside || line.starts_with(['#', ';']) {
            return None;
        }
        let (k, v) = line.split_once(['=', ':'])?;
        Some((i, k.trim(), v.trim()))
    })
}

/// `Some(name)` for a section header line (`Some(None)` for a line that starts with `[` but
/// is not `[name]`: it still ends the section before it), `None` for any other line.
fn header(trimmed: &str) -> Option<Option<&str>> {
    trimmed
        .starts_with('[')
        .then(|| trimmed.strip_prefix('[')?.strip_suffix(']'))
}

/// The key/value pairs of `[section]` in file order (the last one of a key is what counts).
pub fn ini_values(text: &str, section: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    ini_assignments(&lines, section)
        .map(|(_, k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An INI file being edited line by line.
#[derive(Debug, Clone)]
pub struct IniFile {
    lines: Vec<String>,
    style: Style,
}

impl IniFile {
    pub fn new(text: &str, style: Style) -> IniFile {
        IniFile {
            lines: text.lines().map(str::to_string).collect(),
            style,
        }
    }

    /// Set `key` in `[section]`: every assignment of it is rewritten in place; with none, the
    /// key is added after the last non-blank line of the first `[section]`. A missing section
    /// is created first (see [`IniFile::add_section`]).
    pub fn set(&mut self, section: &str, key: &str, value: &str) {
        let line = match self.style {
            Style::Tight => format!("{key}={value}"),
            Style::Spaced => format!("{key} = {value}"),
        };
        let start = self.section_start(section);
        let found: Vec<usize> = ini_assignments(&self.lines, section)
            .filter(|(_, k, _)| *k == key)
            .map(|(i, _, _)| i)
            .collect();
        if !replace_all(&mut self.lines, &found, &line) {
            let at = self.end_of_section(start);
            self.lines.insert(at, line);
        }
    }

    /// Remove every assignment of `key` in `[section]`; other sections keep theirs.
    pub fn remove(&mut self, section: &str, key: &str) {
        let found: Vec<usize> = ini_assignments(&self.lines, section)
            .filter(|(_, k, _)| *k == key)
            .map(|(i, _, _)| i)
            .collect();
        for i in found.into_iter().rev() {
            self.lines.remove(i);
        }
    }

    /// The index after the first `[section]` header, which is added when missing.
    fn section_start(&mut self, section: &str) -> usize {
        let wanted = format!("[{section}]");
        match self.lines.iter().position(|l| l.trim() == wanted) {
            Some(i) => i + 1,
            None => self.add_section(&wanted),
        }
    }

    /// Where a new line of the section whose lines start at `start` goes: after its last
    /// non-blank line, or right after its header when it has none.
    fn end_of_section(&self, start: usize) -> usize {
        let end = self.lines[start..]
            .iter()
            .position(|l| header(l.trim()).is_some())
            .map_or(self.lines.len(), |n| start + n);
        (start..end)
            .rev()
            .find(|&i| !self.lines[i].trim().is_empty())
            .map_or(start, |i| i + 1)
    }

    /// Add the header `wanted` and return the index after it. In a file with no header at all
    /// it goes first, so the lines already there become part of it (ConfigParser refuses a
    /// file with lines before its first header); else it goes at the end, after a blank line.
    fn add_section(&mut self, wanted: &str) -> usize {
        if !self.lines.iter().any(|l| header(l.trim()).is_some()) {
            self.lines.insert(0, wanted.to_string());
            return 1;
        }
        if self.lines.last().is_some_and(|l| !l.trim().is_empty()) {
            self.lines.push(String::new());
        }
        self.lines.push(wanted.to_string());
        self.lines.len()
    }

    pub fn text(&self) -> String {
        join_lines(&self.lines)
    }
}

// ------------------------------------------------------------------------ shell variables

/// Shell variable assignments (`NAME=value`, `NAME="value"`, `NAME='value'`, optional
/// `export`) in file order; every other line is ignored.
pub fn shell_values(text: &str) -> Vec<(String, String)> {
    text.lines().filter_map(shell_assignment).collect()
}

/// The one rule for which lines of a shell-variable file are assignments.
fn shell_assignment(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    let line = line.strip_prefix("export ").unwrap_or(line);
    let (name, value) = line.split_once('=')?;
    let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    name_ok.then(|| (name.to_string(), shell_unquote(value)))
}

fn shell_unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        return inner.to_string();
    }
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(n @ ('"' | '\\' | '$' | '`'))) => {
                out.push(n);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// `value` in double quotes, with the characters special there escaped.
pub fn shell_quote(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A shell-variable file being edited line by line.
#[derive(Debug, Clone)]
pub struct ShellFile {
    lines: Vec<String>,
}

impl ShellFile {
    pub fn new(text: &str) -> ShellFile {
        ShellFile {
            lines: text.lines().map(str::to_string).collect(),
        }
    }

    /// Set `name`: every assignment of it (with or without `export`) becomes
    /// `NAME="value"`; with none, that line is appended.
    pub fn set(&mut self, name: &str, value: &str) {
        let line = format!("{name}={}", shell_quote(value));
        let found: Vec<usize> = (0..self.lines.len())
            .filter(|&i| shell_assignment(&self.lines[i]).is_some_and(|(n, _)| n == name))
            .collect();
        if !replace_all(&mut self.lines, &found, &line) {
            self.lines.push(line);
        }
    }

    pub fn text(&self) -> String {
        join_lines(&self.lines)
    }
}

// ---------------------------------------------------------------------------------- both

/// The value of the last assignment of `key` in `pairs` (as read by [`ini_values`] or
/// [`shell_values`]): the one the shell and ConfigParser keep.
pub fn last<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Every line at `at` becomes `line`; false when there was none.
fn replace_all(lines: &mut [String], at: &[usize], line: &str) -> bool {
    for &i in at {
        line.clone_into(&mut lines[i]);
    }
    !at.is_empty()
}

/// The lines with a newline after each; an empty file stays empty.
fn join_lines(lines: &[String]) -> String {
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
