#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

//! config-example.yaml documents every key: each setting has a comment
//! above it, or belongs to a run of settings (no blank line between) that
//! one comment introduces. (That every key the server accepts is in the
//! file, with its default, is tested in src/tests.rs.)

const EXAMPLE: &str = include_str!("../../../config-example.yaml");

#[test]
fn every_setting_in_the_example_has_a_comment() {
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    let mut undocumented = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') || text.starts_with('-') || text == "---" {
            continue;
        }
        let Some((key, value)) = text.split_once(':') else {
            continue;
        };
        // A section header (`database:`) introduces keys; it needs no comment.
        if value.trim().is_empty() {
            continue;
        }
        let documented = lines[..i]
            .iter()
            .rev()
            .map(|l| l.trim())
            .take_while(|l| !l.is_empty())
            .any(|l| l.starts_with('#'));
        if !documented {
            undocumented.push(format!("line {}: {key}", i + 1));
        }
    }
    assert!(
        undocumented.is_empty(),
        "settings in config-example.yaml without a comment above them:\n{}",
        undocumented.join("\n")
    );
}
