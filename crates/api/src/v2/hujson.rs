//! HuJSON to JSON: comments and trailing commas become spaces, so that a
//! policy can be served as `application/json` and edited as a JSON value.
//! Lines and columns are kept. Whether the text is valid is for the policy
//! engine (or serde) to say; this only strips what JSON does not allow.

/// `text` with comments and trailing commas blanked out.
pub(crate) fn standardize(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = bytes.to_vec();
    let mut i = 0;
    // Where the last comma outside strings is, while only blanks follow it.
    let mut pending_comma: Option<usize> = None;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                pending_comma = None;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |e| i + 2 + e + 2);
                for (j, b) in out.iter_mut().enumerate().take(end).skip(i) {
                    if bytes[j] != b'\n' {
                        *b = b' ';
                    }
                }
                i = end;
            }
            b',' => {
                pending_comma = Some(i);
                i += 1;
            }
            b'}' | b']' => {
                if let Some(c) = pending_comma.take() {
                    out[c] = b' ';
                }
                i += 1;
            }
            b if b.is_ascii_whitespace() => i += 1,
            _ => {
                pending_comma = None;
                i += 1;
            }
        }
    }
    // Only ASCII bytes were replaced, by ASCII spaces: still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_trailing_commas_go_strings_stay() {
        let text = "// head\n{\n  \"a\": [1, 2,], /* x, */\n  \"b // not\": \"c /* no */,\", \"q\": \"\\\"\",\n}\n";
        let json = standardize(text);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": [1, 2], "b // not": "c /* no */,", "q": "\""})
        );
        assert_eq!(json.lines().count(), text.lines().count());
    }

    #[test]
    fn plain_json_is_unchanged() {
        let text = r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}"#;
        assert_eq!(standardize(text), text);
    }

    #[test]
    fn unterminated_things_do_not_panic() {
        for text in ["\"abc", "/* open", "{\"a\": \"\\", "//", "/"] {
            let _ = standardize(text);
        }
    }
}
