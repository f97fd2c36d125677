//! Sorts database errors into "try the same batch again later" and "this record can
//! never be stored", the split ARCHITECTURE.md §1 (retry, rejected) is built on.
//!
//! Retrying a permanent error would stall the writer forever on one bad value;
//! rejecting on a retriable one would lose data during a mere outage. When unsure the
//! rule is: an error about the *connection or the server* is retriable, an error
//! about the *statement's values* is permanent. This module only decides; it never
//! retries, logs or touches a connection.

use super::Backend;

/// What the writer should do with a failed batch or record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The database or the path to it is unavailable: keep the batch and retry it.
    Retriable,
    /// The database refuses these values: store the refused record in `rejected`.
    Permanent,
}

/// Classifies an error returned by `backend`.
pub fn classify(backend: Backend, err: &sqlx::Error) -> ErrorClass {
    use sqlx::Error as E;
    match err {
        E::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            match backend {
                Backend::Sqlite => sqlite_code(code),
                Backend::Postgres => postgres_sqlstate(code),
            }
        }
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::BeginFailed
        // The connection believes it is still inside a transaction (one SQLite rolled
        // back by itself after an I/O error): a fresh connection fixes it, the
        // values are not at fault.
        | E::InvalidSavePointStatement => ErrorClass::Retriable,
        _ => ErrorClass::Permanent,
    }
}

/// SQLite reports extended result codes as decimal text; the primary code is the low byte.
fn sqlite_code(code: &str) -> ErrorClass {
    let Ok(extended) = code.parse::<i32>() else {
        return ErrorClass::Retriable;
    };
    match extended & 0xff {
        // BUSY, LOCKED, NOMEM, READONLY, INTERRUPT, IOERR, CORRUPT, FULL, CANTOPEN,
        // PROTOCOL, NOLFS, NOTADB: the file or the process is in trouble, not the values.
        5 | 6 | 7 | 8 | 9 | 10 | 11 | 13 | 14 | 15 | 22 | 26 => ErrorClass::Retriable,
        // CONSTRAINT, MISMATCH, TOOBIG, RANGE, ERROR (e.g. malformed JSON) and the rest.
        _ => ErrorClass::Permanent,
    }
}

/// PostgreSQL SQLSTATE classes that mean "the server or connection", not "the row".
fn postgres_sqlstate(code: &str) -> ErrorClass {
    let retriable = code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources (disk full, too many connections)
        || code.starts_with("58") // system error (I/O)
        || code.starts_with("57P") // admin/crash shutdown, cannot connect now
        || code == "57014" // query canceled (statement timeout)
        || code == "40001" // serialization failure
        || code == "40P01" // deadlock detected
        || code == "55P03" // lock not available
        || code == "25P03" // idle-in-transaction timeout
        || code.is_empty();
    if retriable {
        ErrorClass::Retriable
    } else {
        ErrorClass::Permanent
    }
}

/// The database's own words for a refusal, as stored in `rejected.error`: the
/// message plus the code (SQLSTATE or SQLite extended code), without sqlx's prefix.
pub fn error_text(err: &sqlx::Error) -> String {
    match err.as_database_error() {
        Some(db) => match db.code() {
            Some(code) => format!("{} [code {code}]", db.message()),
            None => db.message().to_string(),
        },
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_busy_and_io_retry_constraints_do_not() {
        assert_eq!(sqlite_code("5"), ErrorClass::Retriable);
        assert_eq!(sqlite_code("517"), ErrorClass::Retriable); // BUSY_SNAPSHOT
        assert_eq!(sqlite_code("3338"), ErrorClass::Retriable); // IOERR_FSYNC
        assert_eq!(sqlite_code("275"), ErrorClass::Permanent); // CONSTRAINT_CHECK
        assert_eq!(sqlite_code("20"), ErrorClass::Permanent); // MISMATCH
    }

    #[test]
    fn postgres_connection_classes_retry_data_classes_do_not() {
        for c in ["08006", "53100", "57P01", "40001", "40P01", "55P03"] {
            assert_eq!(postgres_sqlstate(c), ErrorClass::Retriable, "{c}");
        }
        for c in ["22P02", "23514", "42P01", "23505"] {
            assert_eq!(postgres_sqlstate(c), ErrorClass::Permanent, "{c}");
        }
    }

    #[test]
    fn transport_errors_retry() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify(Backend::Postgres, &io), ErrorClass::Retriable);
        assert_eq!(
            classify(Backend::Sqlite, &sqlx::Error::PoolTimedOut),
            ErrorClass::Retriable
        );
    }

    #[test]
    fn a_connection_stuck_in_a_transaction_is_retried_not_rejected() {
        assert_eq!(
            classify(Backend::Sqlite, &sqlx::Error::InvalidSavePointStatement),
            ErrorClass::Retriable
        );
        assert_eq!(sqlite_code("13"), ErrorClass::Retriable); // FULL
        assert_eq!(sqlite_code("778"), ErrorClass::Retriable); // IOERR_WRITE
        assert_eq!(sqlite_code("14"), ErrorClass::Retriable); // CANTOPEN
    }
}
