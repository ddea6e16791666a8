//! The bootstrap report: one JSON line per check or action on stdout
//! (`{"component":…,"status":"OK|WARN|FAIL","message":…}`, the seed's
//! `<BSTRAP component=… status=… message=…/>` lines), and a human summary on stderr.

use serde::Serialize;

use crate::{console, escape};

/// How a check or action went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Level {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "WARN")]
    Warn,
    #[serde(rename = "FAIL")]
    Fail,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub component: String,
    pub status: Level,
    pub message: String,
}

impl Line {
    pub fn new(component: &str, status: Level, message: impl Into<String>) -> Line {
        Line {
            component: component.to_string(),
            status,
            message: message.into(),
        }
    }

    pub fn ok(component: &str, message: impl Into<String>) -> Line {
        Line::new(component, Level::Ok, message)
    }

    pub fn warn(component: &str, message: impl Into<String>) -> Line {
        Line::new(component, Level::Warn, message)
    }

    pub fn fail(component: &str, message: impl Into<String>) -> Line {
        Line::new(component, Level::Fail, message)
    }
}

/// The lines so far; each is printed as it is added, so the engine sees progress.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<Line>,
}

impl Report {
    pub fn add(&mut self, line: Line) {
        let json = serde_json::to_string(&line).unwrap_or_default();
        // A closed stdout (the engine went away) does not stop the run.
        let _ = console::line(&json);
        console::err_line(&format!(
            "bootstrap: {:<4} {}: {}",
            line.status.word(),
            line.component,
            escape::controls(&line.message)
        ));
        self.lines.push(line);
    }

    pub fn extend(&mut self, lines: impl IntoIterator<Item = Line>) {
        for line in lines {
            self.add(line);
        }
    }

    pub fn failed(&self) -> usize {
        self.count(Level::Fail)
    }

    fn count(&self, level: Level) -> usize {
        self.lines.iter().filter(|l| l.status == level).count()
    }

    /// The closing line of the human summary.
    pub fn summary(&self) -> String {
        format!(
            "bootstrap: {} checked: {} OK, {} WARN, {} FAIL",
            self.lines.len(),
            self.count(Level::Ok),
            self.count(Level::Warn),
            self.count(Level::Fail)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_the_documented_json() {
        let line = Line::fail("cpu_virtualization", "no vmx or svm \"flag\"");
        assert_eq!(
            serde_json::to_string(&line).unwrap(),
            r#"{"component":"cpu_virtualization","status":"FAIL","message":"no vmx or svm \"flag\""}"#
        );
    }
}
