//! How every command answers: a [`Report`] printed as text (readable tables) or, with
//! `--json`, as one JSON document, and the exit status it means.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What a command found or did.
pub trait Report: Serialize {
    /// The text form, ending with a newline.
    fn text(&self) -> String;

    /// The answer is bad news (exit status 1): something missing, waiting for a person,
    /// refused or not found.
    fn bad_news(&self) -> bool;
}

/// Prints the report in the form asked for; returns the exit status it means.
pub fn print(report: &impl Report, json: bool) -> ExitCode {
    if json {
        let document = serde_json::to_string_pretty(report).expect("reports always serialize");
        println!("{document}");
    } else {
        print!("{}", report.text());
    }
    if report.bad_news() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// A table: a header line and one line per row, columns padded to their widest cell (the
/// last one left as it is).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (column, cell) in cells.enumerate() {
            if column + 1 == widths.len() {
                text.push_str(cell);
            } else {
                let pad = widths[column] - cell.chars().count();
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut text = line(&mut header.iter().copied());
    for row in rows {
        text.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    text
}

/// The heading of a list: how many `what` there are, and how many are listed (the `which`
/// ones) when fewer.
pub fn heading(total: u64, listed: usize, what: &str, which: &str) -> String {
    let mut text = format!("{total} {what}");
    if total > listed as u64 {
        text.push_str(&format!(", the {listed} {which}:"));
    }
    text.push('\n');
    text
}

/// An instant as tables show it: UTC, to the second.
pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A span to the second, as humans write it (`1h 2m 3s`); negative ones with a minus.
pub fn age(span: chrono::Duration) -> String {
    let seconds = span.num_seconds();
    let text = humantime::format_duration(std::time::Duration::from_secs(seconds.unsigned_abs()));
    if seconds < 0 {
        format!("-{text}")
    } else {
        text.to_string()
    }
}

/// A span in seconds, for JSON.
pub fn seconds(span: chrono::Duration) -> f64 {
    span.num_milliseconds() as f64 / 1000.0
}

/// A cell for a value that may be absent.
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let rows = vec![
            vec!["1".to_owned(), "welcome-email".to_owned(), "ok".to_owned()],
            vec!["12".to_owned(), "sms".to_owned(), String::new()],
        ];
        assert_eq!(
            table(&["ID", "NAME", "ERROR"], &rows),
            "ID  NAME           ERROR\n1   welcome-email  ok\n12  sms\n"
        );
    }

    #[test]
    fn ages_read_as_humans_write_them() {
        assert_eq!(age(chrono::Duration::seconds(3723)), "1h 2m 3s");
        assert_eq!(age(chrono::Duration::milliseconds(-2500)), "-2s");
        assert_eq!(age(chrono::Duration::zero()), "0s");
    }
}
