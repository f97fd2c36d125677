//! The man page and shell completions, generated from the clap definition so they
//! cannot drift from the real command line. `wsvault generate contrib` refreshes the
//! copies in `contrib/` that the Debian package ships (a test fails when they are
//! stale), so `cargo deb` needs no build script and no extra step.

use super::Cli;
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// Writes `dir/man/wsvault*.1` and `dir/completions/{wsvault.bash,_wsvault,wsvault.fish}`
/// and returns the paths written.
pub fn write_all(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man_dir = dir.join("man");
    std::fs::create_dir_all(&man_dir)?;
    // wsvault.1 plus one page per visible subcommand (wsvault-run.1, …), which the
    // main page refers to.
    clap_mangen::generate_to(Cli::command(), &man_dir)?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&man_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    written.extend(pages);

    let comp_dir = dir.join("completions");
    std::fs::create_dir_all(&comp_dir)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut Cli::command(), "wsvault", &comp_dir)?;
        written.push(path);
    }
    Ok(written)
}
