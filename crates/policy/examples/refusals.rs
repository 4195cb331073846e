//! Debug helper: prints our refusal next to Tailscale's for every refused corpus case.

#![allow(clippy::unwrap_used, clippy::expect_used)] // developer tooling: a panic is the report
fn main() {
    let dir = std::env::args().nth(1).unwrap_or_default();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if v["accepted"] != serde_json::Value::Bool(false) {
            continue;
        }
        let policy = match &v["policy"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let ours = match headway_policy::explain(&policy, &v["topology"].to_string()) {
            Ok(_) => "ACCEPTED".to_owned(),
            Err(e) => e.to_string().replace('\n', " | "),
        };
        println!(
            "{}\n   tailscale: {}\n   headway:   {}",
            v["id"], v["error"], ours
        );
    }
}
