//! `headway man`: the manual pages, rendered from the same clap definitions
//! as `--help`, so the pages cannot drift from the binary.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::Cli;

/// Without `dir`, prints `headway(1)`. With it, writes `headway.1` and a
/// page per subcommand (`headway-users.1`, `headway-users-create.1`, ...)
/// into `dir`, creating it.
pub fn run(dir: Option<&Path>) -> anyhow::Result<()> {
    let command = Cli::command();
    match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("rendering the manual page")?;
            crate::output::write_stdout(&String::from_utf8_lossy(&page))
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the directory {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("writing manual pages into {}", dir.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

    use super::*;

    #[test]
    fn writes_a_page_per_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        run(Some(dir.path())).unwrap();
        let main = std::fs::read_to_string(dir.path().join("headway.1")).unwrap();
        assert!(
            main.starts_with(".ie \\n(.g .ds Aq"),
            "not roff: {main:.80}"
        );
        assert!(main.contains(".TH headway 1"), "{main:.200}");
        assert!(main.contains("headway\\-serve(1)"), "no SEE ALSO of serve");
        for page in ["headway-serve.1", "headway-users-create.1", "headway-man.1"] {
            assert!(dir.path().join(page).is_file(), "{page} missing");
        }
        // Hidden aliases get no page of their own.
        assert!(!dir.path().join("headway-configtest.1").exists());
    }
}
