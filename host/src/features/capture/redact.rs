//! Secrets taken out of a captured conversation before it is queued.
//!
//! Each secret found is replaced by `[redacted]` (a private key block by
//! `[redacted private key]`), in place: the sentence around it stays, so
//! "I rotated the deploy key, the new one is [redacted]" still says what
//! happened, and nothing of the secret reaches the queue, the log or Mem0.
//! Dropping whole lines instead would lose the fact with the secret.
//!
//! The list is small on purpose, each pattern distinctive enough not to eat
//! ordinary words (the tests hold one example of each, and words that look
//! close but are not secrets):
//!
//! - private key blocks: `-----BEGIN … PRIVATE KEY-----` to its `-----END …-----`
//!   (to the end of the text when the end is missing);
//! - tokens by their prefix: AWS access key ids (`AKIA…`, `ASIA…`), OpenAI
//!   and Anthropic keys (`sk-…`, `sk-ant-…`, `sk-proj-…`), GitHub tokens
//!   (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), Slack tokens
//!   (`xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`, `xoxe-`), Google API keys
//!   (`AIza…`), Mem0 keys (`m0-…`), JSON web tokens (`eyJ….…`);
//! - the credential after `Bearer `, and the password of a URL
//!   (`scheme://user:PASSWORD@host`);
//! - the value of an assignment whose name says it is secret: `password`,
//!   `passwd`, `passphrase`, `secret`, `token`, `api_key`/`apikey`/`api-key`,
//!   `access_key`, `private_key`, `credential` anywhere in the name
//!   (`DB_PASSWORD=…`, `"client_secret": "…"`, `GITHUB_TOKEN: …`), and the
//!   whole rest of an `Authorization:` line.

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// What replaces a private key block.
pub const REDACTED_KEY: &str = "[redacted private key]";

/// `text` with its secrets replaced, and how many there were.
pub fn redact(text: &str) -> (String, usize) {
    let (text, a) = private_keys(text);
    let (text, b) = tokens(&text);
    let (text, c) = url_passwords(&text);
    let (text, d) = assignments(&text);
    (text, a + b + c + d)
}

/// A token recognised by its prefix: the prefix, then at least `min` (and,
/// when `max` is set, at most `max`) characters of its alphabet.
struct Token {
    prefix: &'static str,
    alphabet: fn(char) -> bool,
    min: usize,
    max: Option<usize>,
}

fn upper_digit(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}
fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}
fn alnum_underscore(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}
fn alnum_dash(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}
fn url_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}
fn jwt(c: char) -> bool {
    url_safe(c) || c == '.'
}
/// RFC 6750's b64token.
fn b64token(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~+/=".contains(c)
}

#[rustfmt::skip]
const TOKENS: &[Token] = &[
    Token { prefix: "AKIA", alphabet: upper_digit, min: 16, max: Some(16) },
    Token { prefix: "ASIA", alphabet: upper_digit, min: 16, max: Some(16) },
    Token { prefix: "sk-", alphabet: url_safe, min: 20, max: None },
    Token { prefix: "ghp_", alphabet: alnum, min: 20, max: None },
    Token { prefix: "gho_", alphabet: alnum, min: 20, max: None },
    Token { prefix: "ghu_", alphabet: alnum, min: 20, max: None },
    Token { prefix: "ghs_", alphabet: alnum, min: 20, max: None },
    Token { prefix: "ghr_", alphabet: alnum, min: 20, max: None },
    Token { prefix: "github_pat_", alphabet: alnum_underscore, min: 20, max: None },
    Token { prefix: "xoxb-", alphabet: alnum_dash, min: 10, max: None },
    Token { prefix: "xoxp-", alphabet: alnum_dash, min: 10, max: None },
    Token { prefix: "xoxa-", alphabet: alnum_dash, min: 10, max: None },
    Token { prefix: "xoxr-", alphabet: alnum_dash, min: 10, max: None },
    Token { prefix: "xoxs-", alphabet: alnum_dash, min: 10, max: None },
    Token { prefix: "xoxe-", alphabet: alnum_dash, min: 10, max: None },
    Token { prefix: "AIza", alphabet: url_safe, min: 30, max: None },
    Token { prefix: "m0-", alphabet: url_safe, min: 20, max: None },
    Token { prefix: "eyJ", alphabet: jwt, min: 30, max: None },
];

/// Whether a token may start at byte `i` of `s`: not inside a word.
fn at_word_start(s: &str, i: usize) -> bool {
    s[..i]
        .chars()
        .next_back()
        .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-'))
}

/// The end (byte index) of the run of `alphabet` characters from `from`.
fn run_end(s: &str, from: usize, alphabet: fn(char) -> bool) -> usize {
    s[from..]
        .char_indices()
        .find(|&(_, c)| !alphabet(c))
        .map_or(s.len(), |(i, _)| from + i)
}

fn tokens(s: &str) -> (String, usize) {
    let mut out = String::with_capacity(s.len());
    let mut n = 0;
    let mut i = 0;
    'scan: while i < s.len() {
        let rest = &s[i..];
        if at_word_start(s, i) {
            for t in TOKENS {
                if !rest.starts_with(t.prefix) {
                    continue;
                }
                let body = i + t.prefix.len();
                let end = run_end(s, body, t.alphabet);
                let len = end - body;
                let fits = len >= t.min && t.max.is_none_or(|m| len == m);
                let jwt_shaped = t.prefix != "eyJ" || s[body..end].matches('.').count() >= 2;
                if fits && jwt_shaped {
                    out.push_str(REDACTED);
                    n += 1;
                    i = end;
                    continue 'scan;
                }
            }
            // `Bearer <credential>`: the credential goes, the word stays.
            if rest
                .get(..7)
                .is_some_and(|w| w.eq_ignore_ascii_case("bearer "))
            {
                let body = i + 7 + (rest[7..].len() - rest[7..].trim_start_matches(' ').len());
                let end = run_end(s, body, b64token);
                if end - body >= 8 && &s[body..end] != REDACTED {
                    out.push_str(&s[i..body]);
                    out.push_str(REDACTED);
                    n += 1;
                    i = end;
                    continue 'scan;
                }
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    (out, n)
}

fn private_keys(s: &str) -> (String, usize) {
    let mut out = String::with_capacity(s.len());
    let mut n = 0;
    let mut rest = s;
    while let Some(b) = rest.find("-----BEGIN ") {
        let header_end = rest[b + 11..]
            .find("-----")
            .map(|e| b + 11 + e)
            .filter(|&e| !rest[b..e].contains('\n'));
        let Some(header_end) = header_end else {
            out.push_str(&rest[..b + 11]);
            rest = &rest[b + 11..];
            continue;
        };
        if !rest[b..header_end].contains("PRIVATE KEY") {
            out.push_str(&rest[..header_end]);
            rest = &rest[header_end..];
            continue;
        }
        out.push_str(&rest[..b]);
        out.push_str(REDACTED_KEY);
        n += 1;
        // To the end of `-----END …-----`, or of the text.
        let after = header_end + 5;
        rest = match rest[after..].find("-----END ") {
            Some(e) => {
                let e = after + e + 9;
                match rest[e..].find("-----") {
                    Some(close) => &rest[e + close + 5..],
                    None => "",
                }
            }
            None => "",
        };
    }
    out.push_str(rest);
    (out, n)
}

fn url_passwords(s: &str) -> (String, usize) {
    let mut out = String::with_capacity(s.len());
    let mut n = 0;
    let mut rest = s;
    while let Some(p) = rest.find("://") {
        let auth_start = p + 3;
        out.push_str(&rest[..auth_start]);
        rest = &rest[auth_start..];
        // user:password@ before any '/', whitespace or another '@'.
        let end = rest
            .find(|c: char| c == '/' || c == '@' || c.is_whitespace())
            .unwrap_or(rest.len());
        if rest[end..].starts_with('@')
            && let Some(colon) = rest[..end].find(':')
            && colon + 1 < end
            && &rest[colon + 1..end] != REDACTED
        {
            out.push_str(&rest[..colon + 1]);
            out.push_str(REDACTED);
            n += 1;
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    (out, n)
}

/// Words in a name that say its value is secret.
const SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "access_key",
    "accesskey",
    "private_key",
    "credential",
];

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

fn assignments(s: &str) -> (String, usize) {
    let mut out = String::with_capacity(s.len());
    let mut n = 0;
    let mut i = 0;
    while i < s.len() {
        let c = s[i..].chars().next().unwrap_or(' ');
        if !name_char(c) || !at_name_start(s, i) {
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        let end = run_end(s, i, name_char);
        let name = s[i..end].to_ascii_lowercase();
        out.push_str(&s[i..end]);
        i = end;
        let authorization = name == "authorization";
        if !authorization && !SECRET_NAMES.iter().any(|w| name.contains(w)) {
            continue;
        }
        let Some((value_start, value_end)) = value_after(s, end, authorization) else {
            continue;
        };
        if s[value_start..value_end].trim() == REDACTED {
            continue;
        }
        out.push_str(&s[end..value_start]);
        out.push_str(REDACTED);
        n += 1;
        i = value_end;
    }
    (out, n)
}

fn at_name_start(s: &str, i: usize) -> bool {
    s[..i].chars().next_back().is_none_or(|c| !name_char(c))
}

/// The value after a name at byte `from`: an optional closing quote,
/// spaces, `=` or `:` (not `==`, `=>` or `::`), spaces, then a quoted
/// string or a run up to whitespace or punctuation; at least 3 characters,
/// not a `$VARIABLE`. For `Authorization`, the rest of the line.
fn value_after(s: &str, from: usize, rest_of_line: bool) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let mut j = from;
    if j < b.len() && (b[j] == b'"' || b[j] == b'\'') {
        j += 1;
    }
    while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
        j += 1;
    }
    if j >= b.len() || !(b[j] == b'=' || b[j] == b':') {
        return None;
    }
    if j + 1 < b.len() && (b[j + 1] == b'=' || b[j + 1] == b'>' || b[j + 1] == b':') {
        return None;
    }
    j += 1;
    while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
        j += 1;
    }
    if rest_of_line {
        let end = s[j..].find('\n').map_or(s.len(), |e| j + e);
        return (end > j).then_some((j, end));
    }
    let (start, end) = match b.get(j) {
        Some(&q @ (b'"' | b'\'' | b'`')) => {
            let close = s[j + 1..].find(q as char)?;
            (j + 1, j + 1 + close)
        }
        _ => {
            let end = s[j..]
                .find(|c: char| c.is_whitespace() || ",;&)}]<>\"'`".contains(c))
                .map_or(s.len(), |e| j + e);
            (j, end)
        }
    };
    let value = &s[start..end];
    (value.chars().count() >= 3 && !value.starts_with('$') && !value.contains('\n'))
        .then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fake secrets, one per pattern, built at run time so that no scanner
    /// mistakes this file for a leak.
    fn fake(prefix: &str, body: &str) -> String {
        format!("{prefix}{body}")
    }

    #[test]
    fn every_pattern_is_redacted_in_place() {
        let pem = format!(
            "{}\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nAbCdEf==\n{}",
            "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----"
        );
        let cases: Vec<(String, &str)> = vec![
            (fake("AKIA", "IOSFODNN7EXAMPLE"), "[redacted]"),
            (fake("ASIA", "Z2QXEXAMPLE12345"), "[redacted]"),
            (
                fake("sk-", "proj-abcdefghijklmnopqrstuvwxyz0123"),
                "[redacted]",
            ),
            (
                fake("sk-ant-", "api03-AbCdEfGhIjKlMnOpQrStUv-wxyz"),
                "[redacted]",
            ),
            (
                fake("ghp_", "0123456789abcdefghijABCDEFGHIJ0123"),
                "[redacted]",
            ),
            (
                fake("github_pat_", "11ABCDEFG0123456789_abcdefghijkl"),
                "[redacted]",
            ),
            (fake("xoxb-", "1234567890-abcdefghij"), "[redacted]"),
            (
                fake("AIza", "SyD-0123456789abcdefghijklmnopqrstu"),
                "[redacted]",
            ),
            (fake("m0-", "AbCdEfGhIjKlMnOpQrStUvWx"), "[redacted]"),
            (
                fake(
                    "eyJ",
                    "hbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlLXNpZw",
                ),
                "[redacted]",
            ),
            (fake("Bearer ", "abc.def-ghi_jkl"), "Bearer [redacted]"),
            (
                fake("https://deploy:", "hunter2pass@db.example.com/x"),
                "https://deploy:[redacted]@db.example.com/x",
            ),
            (
                fake("DB_PASSWORD=", "correct-horse"),
                "DB_PASSWORD=[redacted]",
            ),
            (
                fake("\"client_secret\": \"", "s3cr3t-value\""),
                "\"client_secret\": \"[redacted]\"",
            ),
            (
                fake("GITHUB_TOKEN: ", "abcdef123"),
                "GITHUB_TOKEN: [redacted]",
            ),
            (fake("api-key = '", "k-12345'"), "api-key = '[redacted]'"),
            (
                fake("Authorization: Basic ", "dXNlcjpwYXNz"),
                "Authorization: [redacted]",
            ),
            (pem, "[redacted private key]"),
        ];
        for (secret, want) in cases {
            // The end of a line ends an `Authorization:` header's value.
            let text = format!("before {secret}\nafter");
            let (got, n) = redact(&text);
            assert_eq!(got, format!("before {want}\nafter"), "{secret}");
            assert_eq!(n, 1, "{secret}");
        }
    }

    #[test]
    fn a_key_block_without_its_end_goes_to_the_end() {
        let text = format!(
            "see\n{}\nMIIabc\nmore",
            "-----BEGIN OPENSSH PRIVATE KEY-----"
        );
        assert_eq!(
            redact(&text),
            ("see\n[redacted private key]".to_string(), 1)
        );
        // A public key or a certificate stays.
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        assert_eq!(redact(cert), (cert.to_string(), 0));
    }

    #[test]
    fn ordinary_words_stay() {
        for text in [
            "ask-me-anything and task-list and disk-usage",
            "the sk- prefix and sk-short",
            "AKIA is a prefix; AKIAshort",
            "a token is valid; the password field; secrets management",
            "token == other; token => x; token::Kind",
            "password: $DB_PASSWORD and token=${TOKEN}",
            "https://example.com/path and ssh://host:22/x",
            "Bearer of bad news",
            "m0-queue and m0-short",
            "the variable `access_key_id` names it",
            "use ghp_ tokens",
        ] {
            assert_eq!(redact(text), (text.to_string(), 0), "{text}");
        }
    }

    #[test]
    fn several_in_one_text_and_unicode_around_them() {
        let text = format!(
            "clé {} puis {} — fini",
            fake("sk-ant-", "api03-AbCdEfGhIjKlMnOpQrStUv"),
            fake("password=", "été-2026")
        );
        let (got, n) = redact(&text);
        assert_eq!(got, "clé [redacted] puis password=[redacted] — fini");
        assert_eq!(n, 2);
    }
}
