//! The Debian package ships the man page and shell completions committed under
//! `contrib/` (so `cargo deb` needs no build script). They are generated from the
//! CLI definition by `wsvault generate`; this fails when the committed copies no
//! longer match what the current binary generates.

use std::path::Path;

const FILES: [&str; 4] = [
    "man/wsvault.1",
    "completions/wsvault.bash",
    "completions/_wsvault",
    "completions/wsvault.fish",
];

#[test]
fn committed_man_page_and_completions_match_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsvault"))
        .arg("generate")
        .arg(dir.path())
        .output()
        .expect("run wsvault generate");
    assert!(
        out.status.success(),
        "wsvault generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let pages = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("man"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let fresh_pages = pages(dir.path());
    assert_eq!(fresh_pages, pages(&contrib), "contrib/man/ pages differ");
    assert!(
        fresh_pages.contains(&"wsvault-run.1".to_string()),
        "{fresh_pages:?}"
    );
    let files = FILES
        .iter()
        .map(|f| f.to_string())
        .chain(fresh_pages.iter().map(|p| format!("man/{p}")));
    for file in files {
        let file = file.as_str();
        let fresh = std::fs::read_to_string(dir.path().join(file))
            .unwrap_or_else(|e| panic!("generate did not write {file}: {e}"));
        let committed = std::fs::read_to_string(contrib.join(file)).unwrap_or_default();
        assert!(
            fresh == committed,
            "contrib/{file} is stale: run `cargo run -- generate contrib` and commit it"
        );
    }
    let page = std::fs::read_to_string(dir.path().join(FILES[0])).unwrap();
    for needle in ["wsvault\\-check\\-config(1)", "wsvault\\-migrate(1)"] {
        assert!(page.contains(needle), "man page lacks {needle}");
    }
    assert!(
        !page.contains("generate") && !fresh_pages.iter().any(|p| p.contains("generate")),
        "the hidden packaging subcommand leaked into the man page"
    );
}
