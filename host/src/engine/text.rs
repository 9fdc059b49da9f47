//! Text helpers every layer shares: bounded texts for alerts, errors and
//! logs, and timestamps as RFC 3339. They live at the bottom of the engine
//! so that any module, whatever its layer, uses them without importing the
//! module that happened to need them first.

use std::time::Duration;

/// At most `max` characters, control characters replaced by spaces.
pub fn truncate(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A compile error on one line: wasmtime's messages wrap mid-sentence (a bad
/// header reads "bad magic number - expected=[" and the bytes on the next
/// lines), so whitespace runs collapse to one space instead of the text
/// being cut at the first newline; control characters go, 300 chars at most.
pub fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect()
}

/// Unix ms as RFC 3339 with milliseconds, in UTC: the OSS server's
/// `metadata.created_at`, and every time mem0-queue shows or exports.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod one_line_tests {
    use super::one_line;

    #[test]
    fn a_wrapped_message_stays_whole_on_one_line() {
        let msg = "failed to parse: bad magic number - expected=[\n    0x0,\n    0x61,\n]\tactual=[\x1b\n]";
        assert_eq!(
            one_line(msg),
            "failed to parse: bad magic number - expected=[ 0x0, 0x61, ] actual=[ ]"
        );
        assert_eq!(one_line(&"x ".repeat(1000)).chars().count(), 300);
    }
}
