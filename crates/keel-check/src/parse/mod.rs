//! Input formats: Keel JSON lines, Jepsen EDN, Jepsen plain-text logs; and detection.

pub(crate) mod edn;
mod jepsen_log;
mod keel_json;

use crate::history::History;
use std::fmt;

/// A history file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Keel's JSON lines (docs/history-format.md).
    Keel,
    /// Jepsen EDN: a vector of event maps, or one map after another.
    Edn,
    /// Jepsen's plain-text log (`INFO  jepsen.util - 7<TAB>:invoke<TAB>:write<TAB>3`).
    JepsenLog,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Keel => "keel",
            Format::Edn => "edn",
            Format::JepsenLog => "jepsen-log",
        }
    }

    pub fn parse(name: &str) -> Option<Format> {
        [Format::Keel, Format::Edn, Format::JepsenLog]
            .into_iter()
            .find(|f| f.name() == name)
    }

    /// Guesses the format from the first meaningful line: a JSON object is Keel's format, an
    /// EDN vector, map or comment is EDN, anything else a Jepsen log.
    pub fn detect(text: &str) -> Format {
        for line in text.lines() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() {
                continue;
            }
            return match trimmed.as_bytes()[0] {
                b'{' if trimmed[1..].trim_start().starts_with('"') => Format::Keel,
                b'{' | b'[' | b'(' | b';' | b'#' => Format::Edn,
                _ => Format::JepsenLog,
            };
        }
        Format::Keel
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A malformed input, with the 1-based line where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: u32,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a history in `format`, or the detected one when `None`. Returns the format used.
pub fn parse_history(text: &str, format: Option<Format>) -> Result<(History, Format), ParseError> {
    let format = format.unwrap_or_else(|| Format::detect(text));
    let history = match format {
        Format::Keel => keel_json::parse(text)?,
        Format::Edn => edn::parse(text)?,
        Format::JepsenLog => jepsen_log::parse(text)?,
    };
    Ok((history, format))
}
