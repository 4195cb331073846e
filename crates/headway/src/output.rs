//! How results are printed: a table or a sentence for people (the default),
//! or the API's JSON shapes as `json`, `json-line` or `yaml` (headscale's
//! `-o` values) for scripts.

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use serde::Serialize;

/// A machine-readable output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Indented JSON.
    Json,
    /// JSON on one line.
    JsonLine,
    /// YAML.
    Yaml,
}

/// Where results go: stdout, in the chosen format.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub format: Option<Format>,
}

impl Output {
    /// Prints `value` in the machine format, else the human text.
    pub fn print<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        let text = match self.format {
            Some(format) => render(format, value)?,
            None => human(),
        };
        write_stdout(&text)
    }
}

/// Writes `text` and a newline to stdout. A reader that went away
/// (`headway nodes list | head -1`) is not an error.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{}", text.trim_end_matches('\n')).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `value` in `format`.
pub fn render<T: Serialize>(format: Format, value: &T) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(value)?,
        Format::JsonLine => serde_json::to_string(value)?,
        Format::Yaml => serde_yaml_ng::to_string(value)?,
    })
}

/// An error as scripts read it with `-o`: `{"error": "…"}` (headscale's form).
#[derive(Debug, Serialize)]
pub struct ErrorOutput {
    pub error: String,
}

/// Times in tables: UTC, to the second (headscale's layout).
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn optional_time(t: &Option<DateTime<Utc>>, none: &str) -> String {
    t.as_ref().map(time).unwrap_or_else(|| none.to_string())
}

/// A plain-text table: a header row and columns separated by ` | `.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let width = |cell: &str| cell.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(width(cell));
                }
            }
        }
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                if i > 0 {
                    line.push_str(" | ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', w - width(cell)));
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Thing {
        id: String,
        display_name: String,
    }

    fn thing() -> Thing {
        Thing {
            id: "1".into(),
            display_name: "Alice".into(),
        }
    }

    #[test]
    fn machine_formats() {
        assert_eq!(
            render(Format::JsonLine, &thing()).unwrap(),
            r#"{"id":"1","displayName":"Alice"}"#
        );
        assert_eq!(
            render(Format::Json, &thing()).unwrap(),
            "{\n  \"id\": \"1\",\n  \"displayName\": \"Alice\"\n}"
        );
        assert_eq!(
            render(Format::Yaml, &thing()).unwrap(),
            "id: '1'\ndisplayName: Alice\n"
        );
        assert_eq!(
            render(Format::JsonLine, &Vec::<Thing>::new()).unwrap(),
            "[]"
        );
    }

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["ID", "Name", "Email"]);
        t.row(vec!["1".into(), "alice".into(), "".into()]);
        t.row(vec!["12".into(), "bö".into(), "b@example.com".into()]);
        assert_eq!(
            t.to_string(),
            "ID | Name  | Email\n\
             1  | alice |\n\
             12 | bö    | b@example.com\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(Table::new(&["ID", "Name"]).to_string(), "ID | Name\n");
    }

    #[test]
    fn times_are_utc_to_the_second() {
        let t = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        assert_eq!(time(&t), "2026-03-04 05:06:07");
        assert_eq!(optional_time(&None, "N/A"), "N/A");
    }
}
