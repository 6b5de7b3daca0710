//! Writing rows with COPY: every table of a batch in one transaction (a
//! retry after a lost connection cannot duplicate half a batch), each COPY
//! under a savepoint. A COPY the database refuses for its data is split in
//! halves until the refused rows are alone; those are counted and skipped,
//! the rest of the batch is written.

use sqlx::{PgPool, Postgres, Transaction};

use super::rows::Rows;

/// COPY data is sent in pieces of at most this many bytes.
const CHUNK: usize = 1 << 20;

/// Whether an error is about the database being unreachable or busy (try
/// again) rather than about the data or the schema.
pub fn retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08: connection, 53: resources, 57: shutdown / cannot connect
            // now, 40: serialization/deadlock, 28: auth (may be fixed).
            ["08", "53", "57", "40", "28"]
                .iter()
                .any(|c| code.starts_with(c))
        }
        _ => false,
    }
}

/// Whether the database refused the rows themselves (bad value, check
/// constraint): class 22 (data exception) or 23 (integrity).
fn bad_data(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23")))
}

async fn copy(
    tx: &mut Transaction<'_, Postgres>,
    statement: &str,
    data: &[u8],
) -> Result<(), sqlx::Error> {
    let mut c = tx.copy_in_raw(statement).await?;
    for piece in data.chunks(CHUNK) {
        if let Err(e) = c.send(piece).await {
            let _ = c.abort("send failed").await;
            return Err(e);
        }
    }
    c.finish().await.map(|_| ())
}

/// Copies `rows` into `table`; returns how many rows were refused.
async fn copy_table(
    tx: &mut Transaction<'_, Postgres>,
    schema: &str,
    table: &str,
    columns: &str,
    rows: &Rows,
) -> Result<usize, sqlx::Error> {
    let statement = format!("COPY {schema}.{table} ({columns}) FROM STDIN");
    let mut bad = 0;
    let mut todo = vec![(0, rows.len())];
    while let Some((lo, hi)) = todo.pop() {
        sqlx::query("SAVEPOINT observatory_copy")
            .execute(&mut **tx)
            .await?;
        match copy(tx, &statement, rows.range(lo, hi)).await {
            Ok(()) => {
                sqlx::query("RELEASE SAVEPOINT observatory_copy")
                    .execute(&mut **tx)
                    .await?;
            }
            Err(e) if bad_data(&e) => {
                sqlx::query("ROLLBACK TO SAVEPOINT observatory_copy")
                    .execute(&mut **tx)
                    .await?;
                if hi - lo == 1 {
                    bad += 1;
                    tracing::warn!(table, error = %e, "row refused by the database; skipped");
                } else {
                    let mid = lo + (hi - lo) / 2;
                    todo.push((mid, hi));
                    todo.push((lo, mid));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(bad)
}

/// Writes every non-empty table in one transaction; returns refused rows.
pub async fn write(
    pool: &PgPool,
    schema: &str,
    tables: &[(&str, &str, &Rows)],
) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut bad = 0;
    for (table, columns, rows) in tables {
        if !rows.is_empty() {
            bad += copy_table(&mut tx, schema, table, columns, rows).await?;
        }
    }
    tx.commit().await?;
    Ok(bad)
}
