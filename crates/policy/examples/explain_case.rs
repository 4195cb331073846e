//! Debug helper: explains one conformance case (`cargo run --example explain_case -- <path>`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // developer tooling: a panic is the report
fn main() {
    let path = std::env::args().nth(1).unwrap_or_default();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let policy = match &v["policy"] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match headway_policy::explain(&policy, &v["topology"].to_string()) {
        Ok(out) => println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default()),
        Err(e) => println!("refused: {e}"),
    }
}
