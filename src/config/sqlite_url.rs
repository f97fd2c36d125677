//! Refuses SQLite URLs that would keep nothing on disk.
//!
//! sqlx happily opens `sqlite::memory:`, `?mode=memory`, SQLite URI filenames such
//! as `file::memory:`, and an empty file name (what `sqlite://$DB` becomes when `DB`
//! is unset, which SQLite turns into a temporary database deleted at close). The
//! daemon would then run, report `lost=0`, and leave no row behind: for a recorder
//! that is the worst failure, so the config is refused before anything starts.
//!
//! The URL is read the way sqlx reads it (`sqlite://` or `sqlite:` prefix, the
//! query after the first `?`, a percent-decoded file name opened with
//! `SQLITE_OPEN_URI`), so what is checked here is what the store would open.

use percent_encoding::percent_decode_str;
use sqlx::sqlite::SqliteConnectOptions;
use std::str::FromStr;

/// Why `url` (a `sqlite:` storage URL) keeps nothing on disk, or whether sqlx cannot
/// read it at all; `Ok` for a URL naming a database file.
pub(super) fn check(url: &str) -> Result<(), String> {
    const USE: &str = "use sqlite://PATH naming a database file";
    // The same prefix handling as `SqliteConnectOptions::from_str`.
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (database, query) = match rest.split_once('?') {
        Some((d, q)) => (d, Some(q)),
        None => (rest, None),
    };
    if database == ":memory:" || query.is_some_and(query_is_memory) {
        return Err(in_memory(url, USE));
    }
    let file = percent_decode_str(database).decode_utf8_lossy();
    if file.trim().is_empty() {
        return Err(format!(
            "`{url}` names no file (an empty variable expanded into the URL?); SQLite \
             would use a temporary database deleted at exit, so every record would be \
             lost; {USE}"
        ));
    }
    if file == ":memory:" || file.strip_prefix("file:").is_some_and(uri_is_memory) {
        return Err(in_memory(url, USE));
    }
    SqliteConnectOptions::from_str(url)
        .map(drop)
        .map_err(|e| format!("`{url}` is not a SQLite URL sqlx can open: {e}"))
}

fn in_memory(url: &str, advice: &str) -> String {
    format!(
        "`{url}` is an in-memory SQLite database: nothing would reach the disk and \
         every record would be lost at exit; {advice}"
    )
}

/// `mode=memory` or the `memdb` VFS among URL query parameters.
fn query_is_memory(query: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| (k == "mode" && v == "memory") || (k == "vfs" && v == "memdb"))
}

/// A SQLite URI filename (the part after `file:`) that opens an in-memory or
/// temporary database: path `:memory:` or empty, `mode=memory`, or `vfs=memdb`.
/// See <https://www.sqlite.org/uri.html>.
fn uri_is_memory(uri: &str) -> bool {
    let uri = uri.split('#').next().unwrap_or_default();
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri, None),
    };
    // `file://authority/path`: only an empty authority or `localhost` is allowed.
    let path = match path.strip_prefix("//") {
        Some(rest) => rest.find('/').map(|i| &rest[i..]).unwrap_or_default(),
        None => path,
    };
    let path = percent_decode_str(path).decode_utf8_lossy();
    path.is_empty() || path == ":memory:" || query.is_some_and(query_is_memory)
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn files_pass_and_memory_does_not() {
        for ok in [
            "sqlite://vault.db",
            "sqlite:vault.db",
            "sqlite:///var/lib/wsvault/vault.db",
            "sqlite://vault.db?mode=rwc",
            "sqlite://file:vault.db",
            "sqlite://file:///var/lib/vault.db",
            "sqlite://memory.db",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite:",
            "sqlite://",
            "sqlite://%20",
            "sqlite://?mode=memory",
            "sqlite://x.db?mode=memory&cache=shared",
            "sqlite://%3Amemory%3A",
            "sqlite://file::memory:",
            "sqlite://file:",
            "sqlite://file://localhost",
            "sqlite://file:x.db%3Fmode=memory",
            "sqlite://file:x.db%3Fvfs=memdb",
            "sqlite://x.db?vfs=memdb",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
        assert!(
            check("sqlite://x.db?colour=blue")
                .unwrap_err()
                .contains("unknown query parameter")
        );
    }
}
