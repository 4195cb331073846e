//! A HuJSON reader that remembers where every value is.
//!
//! HuJSON is JSON plus `//` and `/* */` comments and trailing commas, the
//! format Tailscale's policy files use. This module turns the text into a
//! small tree ([`Json`]) whose nodes carry their byte offset, so that later
//! validation can say *where* a bad value is (line and column) and not only
//! *what* is wrong. It knows nothing about the policy language.

use crate::error::{ErrorKind, PolicyError, Position};

/// A parsed JSON value and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Json {
    pub value: JsonValue,
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JsonValue {
    Null,
    Bool(bool),
    /// Kept as written; converted by the reader that knows the expected range.
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Members in text order (duplicates kept; the policy reader rejects them).
    Object(Vec<Member>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Member {
    pub key: String,
    pub key_offset: usize,
    pub value: Json,
}

impl Json {
    pub fn type_name(&self) -> &'static str {
        match self.value {
            JsonValue::Null => "null",
            JsonValue::Bool(_) => "boolean",
            JsonValue::Number(_) => "number",
            JsonValue::String(_) => "string",
            JsonValue::Array(_) => "array",
            JsonValue::Object(_) => "object",
        }
    }

    /// Converts to a `serde_json::Value` (for capability arguments, which are opaque JSON).
    pub fn to_serde(&self) -> serde_json::Value {
        match &self.value {
            JsonValue::Null => serde_json::Value::Null,
            JsonValue::Bool(b) => serde_json::Value::Bool(*b),
            JsonValue::Number(n) => serde_json::from_str::<serde_json::Number>(n)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            JsonValue::String(s) => serde_json::Value::String(s.clone()),
            JsonValue::Array(items) => {
                serde_json::Value::Array(items.iter().map(Json::to_serde).collect())
            }
            JsonValue::Object(members) => serde_json::Value::Object(
                members
                    .iter()
                    .map(|m| (m.key.clone(), m.value.to_serde()))
                    .collect(),
            ),
        }
    }
}

/// Maps byte offsets of a text to line/column positions.
#[derive(Debug, Clone)]
pub(crate) struct LineIndex {
    line_starts: Vec<usize>,
    text: String,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            line_starts,
            text: text.to_owned(),
        }
    }

    pub fn position(&self, offset: usize) -> Position {
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let end = offset.min(self.text.len());
        let column = self
            .text
            .get(start..end)
            .map_or(end - start, |s| s.chars().count())
            + 1;
        Position { line, column }
    }
}

/// Parses HuJSON text into a positioned tree.
pub(crate) fn parse(text: &str) -> Result<Json, PolicyError> {
    let mut p = Parser {
        bytes: text.as_bytes(),
        text,
        pos: 0,
        depth: 0,
    };
    p.skip_space()?;
    let value = p.value()?;
    p.skip_space()?;
    if p.pos < p.bytes.len() {
        return Err(p.error(p.pos, "invalid character after top-level value"));
    }
    Ok(value)
}

/// Deep nesting is refused rather than risking the stack on hostile input.
const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    bytes: &'a [u8],
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, offset: usize, message: &str) -> PolicyError {
        let position = LineIndex::new(self.text).position(offset);
        PolicyError {
            kind: ErrorKind::Syntax,
            message: format!("invalid HuJSON: {message}"),
            path: String::new(),
            position: Some(position),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Skips whitespace and comments.
    fn skip_space(&mut self) -> Result<(), PolicyError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.pos += 1,
                Some(b'/') => match self.bytes.get(self.pos + 1) {
                    Some(b'/') => {
                        while let Some(c) = self.peek() {
                            if c == b'\n' {
                                break;
                            }
                            self.pos += 1;
                        }
                    }
                    Some(b'*') => {
                        let start = self.pos;
                        self.pos += 2;
                        loop {
                            match self.peek() {
                                None => return Err(self.error(start, "unterminated /* comment")),
                                Some(b'*') if self.bytes.get(self.pos + 1) == Some(&b'/') => {
                                    self.pos += 2;
                                    break;
                                }
                                Some(_) => self.pos += 1,
                            }
                        }
                    }
                    _ => {
                        return Err(self.error(
                            self.pos,
                            "invalid character '/' (a comment starts with // or /*)",
                        ));
                    }
                },
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self) -> Result<Json, PolicyError> {
        let offset = self.pos;
        let value = match self.peek() {
            None => return Err(self.error(offset, "unexpected end of input, expected a value")),
            Some(b'{') => self.object()?,
            Some(b'[') => self.array()?,
            Some(b'"') => JsonValue::String(self.string()?),
            Some(b't') => self.literal("true", JsonValue::Bool(true))?,
            Some(b'f') => self.literal("false", JsonValue::Bool(false))?,
            Some(b'n') => self.literal("null", JsonValue::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(c) => {
                return Err(self.error(
                    offset,
                    &format!(
                        "invalid character {:?} looking for beginning of value",
                        c as char
                    ),
                ));
            }
        };
        Ok(Json { value, offset })
    }

    fn literal(&mut self, word: &str, value: JsonValue) -> Result<JsonValue, PolicyError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error(self.pos, &format!("invalid literal, expected {word}")))
        }
    }

    fn number(&mut self) -> Result<JsonValue, PolicyError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.pos;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.pos += 1;
            }
            p.pos > s
        };
        if !digits(self) {
            return Err(self.error(start, "invalid number"));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err(self.error(start, "invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.error(start, "invalid number"));
            }
        }
        Ok(JsonValue::Number(self.text[start..self.pos].to_owned()))
    }

    fn string(&mut self) -> Result<String, PolicyError> {
        let start = self.pos;
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error(start, "unterminated string"));
            };
            match c {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    let esc_at = self.pos;
                    self.pos += 1;
                    let e = self
                        .peek()
                        .ok_or_else(|| self.error(start, "unterminated string"))?;
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4(esc_at)?;
                            let ch = if (0xD800..0xDC00).contains(&hi) {
                                // A surrogate pair must follow.
                                if self.bytes.get(self.pos) == Some(&b'\\')
                                    && self.bytes.get(self.pos + 1) == Some(&b'u')
                                {
                                    self.pos += 2;
                                    let lo = self.hex4(esc_at)?;
                                    char::from_u32(
                                        0x10000
                                            + ((hi - 0xD800) << 10)
                                            + (lo.wrapping_sub(0xDC00) & 0x3FF),
                                    )
                                } else {
                                    None
                                }
                            } else {
                                char::from_u32(hi)
                            };
                            out.push(ch.unwrap_or('\u{FFFD}'));
                        }
                        _ => return Err(self.error(esc_at, "invalid escape in string")),
                    }
                }
                0x00..=0x1F => return Err(self.error(self.pos, "control character in string")),
                _ => {
                    // Copy one UTF-8 character; the input is a &str so boundaries are valid.
                    let rest = &self.text[self.pos..];
                    let ch = rest.chars().next().unwrap_or('\u{FFFD}');
                    out.push(ch);
                    self.pos += ch.len_utf8();
                }
            }
        }
    }

    fn hex4(&mut self, esc_at: usize) -> Result<u32, PolicyError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error(esc_at, "invalid \\u escape"))?;
        let v = u32::from_str_radix(digits, 16)
            .map_err(|_| self.error(esc_at, "invalid \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }

    fn enter(&mut self) -> Result<(), PolicyError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(self.pos, "nesting too deep"));
        }
        Ok(())
    }

    fn array(&mut self) -> Result<JsonValue, PolicyError> {
        self.enter()?;
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_space()?;
            match self.peek() {
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                None => return Err(self.error(self.pos, "unexpected end of input in array")),
                _ => {}
            }
            items.push(self.value()?);
            self.skip_space()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.error(self.pos, "expected ',' or ']' after array element")),
            }
        }
        self.depth -= 1;
        Ok(JsonValue::Array(items))
    }

    fn object(&mut self) -> Result<JsonValue, PolicyError> {
        self.enter()?;
        self.pos += 1;
        let mut members = Vec::new();
        loop {
            self.skip_space()?;
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                Some(b'"') => {}
                None => return Err(self.error(self.pos, "unexpected end of input in object")),
                _ => return Err(self.error(self.pos, "expected a quoted member name")),
            }
            let key_offset = self.pos;
            let key = self.string()?;
            self.skip_space()?;
            if self.peek() != Some(b':') {
                return Err(self.error(self.pos, "expected ':' after member name"));
            }
            self.pos += 1;
            self.skip_space()?;
            let value = self.value()?;
            members.push(Member {
                key,
                key_offset,
                value,
            });
            self.skip_space()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.error(self.pos, "expected ',' or '}' after object member")),
            }
        }
        self.depth -= 1;
        Ok(JsonValue::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(j: &Json) -> Vec<String> {
        match &j.value {
            JsonValue::Object(m) => m.iter().map(|m| m.key.clone()).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn plain_json() {
        let j = parse(r#"{"a": [1, "x", true, null], "b": {"c": -1.5e3}}"#).unwrap();
        assert_eq!(keys(&j), ["a", "b"]);
        assert_eq!(
            j.to_serde(),
            serde_json::json!({"a": [1, "x", true, null], "b": {"c": -1500.0}})
        );
    }

    #[test]
    fn comments_and_trailing_commas() {
        let text = "// header\n{\n  /* block\n  comment */ \"a\": [1, 2,], // tail\n  \"b\": {\"c\": 1,},\n}\n";
        let j = parse(text).unwrap();
        assert_eq!(
            j.to_serde(),
            serde_json::json!({"a": [1, 2], "b": {"c": 1}})
        );
    }

    #[test]
    fn offsets_map_to_lines_and_columns() {
        let text = "{\n  \"acls\": [\n    {\"x\": 1}\n  ]\n}";
        let j = parse(text).unwrap();
        let JsonValue::Object(m) = &j.value else {
            panic!()
        };
        let JsonValue::Array(items) = &m[0].value.value else {
            panic!()
        };
        let idx = LineIndex::new(text);
        assert_eq!(
            idx.position(m[0].key_offset),
            Position { line: 2, column: 3 }
        );
        assert_eq!(
            idx.position(items[0].offset),
            Position { line: 3, column: 5 }
        );
    }

    #[test]
    fn escapes_and_unicode() {
        let j = parse(r#""a\"b\\c\u00e9\ud83d\ude00é""#).unwrap();
        assert_eq!(j.value, JsonValue::String("a\"b\\cé😀é".into()));
    }

    #[test]
    fn syntax_errors_have_positions() {
        for (text, line, column, needle) in [
            ("{\"a\": [1, 2}", 1, 12, "expected ',' or ']'"),
            ("{\n  \"a\": tru\n}", 2, 8, "expected true"),
            ("{\"a\": 1} x", 1, 10, "after top-level value"),
            ("/* open", 1, 1, "unterminated /* comment"),
            ("{\"a\": \"x}", 1, 7, "unterminated string"),
            ("{a: 1}", 1, 2, "quoted member name"),
            ("", 1, 1, "unexpected end of input"),
            ("{\"a\": / }", 1, 7, "comment starts with"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Syntax, "{text}");
            assert_eq!(
                err.position,
                Some(Position { line, column }),
                "{text}: {err}"
            );
            assert!(err.message.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(&text).unwrap_err().message.contains("too deep"));
    }
}
