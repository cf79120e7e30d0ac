//! [`SqliteStore`]: the embedded, encrypted-at-rest [`CredentialStore`] (feature `sqlite`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::codec;
use crate::error::VaultError;
use crate::key::{CredentialKey, Owner, ProviderId};
use crate::master::{MasterKey, MasterKeys, RowId, open_record, rewrap, seal_record};
use crate::store::{CredentialStore, DeletedRecord, StoredCredential};

/// The schema version this build writes and reads (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// Read connections opened by [`SqliteStore::open`].
pub const DEFAULT_READERS: usize = 4;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const RECORD_ID_LEN: usize = 16;

const SCHEMA: &str = "
CREATE TABLE credentials (
    tenant      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    provider    TEXT    NOT NULL,
    record_id   BLOB    NOT NULL,
    revision    INTEGER NOT NULL,
    key_id      TEXT    NOT NULL,
    wrapped_key BLOB    NOT NULL,
    ciphertext  BLOB    NOT NULL,
    PRIMARY KEY (tenant, subject, provider)
) WITHOUT ROWID;
CREATE INDEX credentials_key_id ON credentials (key_id);
";

fn storage(context: &str) -> impl FnOnce(rusqlite::Error) -> VaultError + '_ {
    move |e| VaultError::Storage(format!("{context}: {e}"))
}

/// What [`SqliteStore::rotate`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotateReport {
    /// Rows whose data key was re-wrapped under the new master key.
    pub rewrapped: u64,
    /// Rows that vanished or were rewritten while the rotation ran (nothing to do).
    pub skipped: u64,
}

/// A [`CredentialStore`] in one SQLite file (bundled SQLite, WAL, busy timeout, versioned
/// schema), every record encrypted at rest.
///
/// Each record is sealed with AES-256-GCM under its own random data key, and the data key is
/// sealed under the primary [`MasterKey`] of the ring; the key's id is stored beside the row.
/// Both layers bind the row's tenant, subject, provider and a random record id as associated
/// data: a ciphertext copied into another row, a tampered byte or a wrong master key give
/// [`VaultError::Decrypt`], never garbage.
///
/// Reads go through a small pool of connections ([`DEFAULT_READERS`]), writes through one
/// writer connection; WAL lets readers run beside the writer.
///
/// ```
/// use ema_jose::UnixTime;
/// use ema_vault::{Credential, CredentialKey, CredentialStore, MasterKey, MasterKeys, Secret,
///                 SqliteStore, StaticSecret, StoredCredential};
///
/// let dir = std::env::temp_dir().join(format!("ema-vault-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let key = MasterKey::generate()?;
/// let store = SqliteStore::open(dir.join("vault.db"), MasterKeys::new(key))?;
/// let id = CredentialKey::new("acme", "alice", "db")?;
/// let secret = Credential::Static(StaticSecret::new(Secret::new("pw".to_owned())));
/// store.put(&id, &StoredCredential::new(secret, UnixTime::from_secs(1)))?;
/// assert_eq!(store.get(&id)?.unwrap().credential.secret().expose(), "pw");
/// # drop(store);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SqliteStore {
    path: PathBuf,
    keys: MasterKeys,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("keys", &self.keys.ids())
            .field("readers", &self.readers.len())
            .finish_non_exhaustive()
    }
}

fn connect(path: &Path) -> Result<Connection, VaultError> {
    let conn = Connection::open(path).map_err(storage("cannot open the database"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(storage("cannot set the busy timeout"))?;
    Ok(conn)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], VaultError> {
    let mut bytes = [0_u8; N];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| VaultError::Storage("the random number generator failed".to_owned()))?;
    Ok(bytes)
}

/// A revision: random, positive, fits SQLite's INTEGER.
fn new_revision() -> Result<i64, VaultError> {
    let value = u64::from_be_bytes(random_bytes::<8>()?) >> 1;
    Ok(i64::try_from(value.max(1)).unwrap_or(1))
}

fn revision_u64(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or_default()
}

/// A row as read from the table.
struct Row {
    record_id: Vec<u8>,
    revision: i64,
    key_id: String,
    wrapped_key: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` with [`DEFAULT_READERS`] read
    /// connections.
    pub fn open(path: impl AsRef<Path>, keys: MasterKeys) -> Result<Self, VaultError> {
        Self::open_with_readers(path, keys, DEFAULT_READERS)
    }

    /// Opens the store with `readers` read connections (at least one).
    pub fn open_with_readers(
        path: impl AsRef<Path>,
        keys: MasterKeys,
        readers: usize,
    ) -> Result<Self, VaultError> {
        let path = path.as_ref().to_path_buf();
        let writer = connect(&path)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(storage("cannot switch to WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(VaultError::Storage(format!(
                "the database stays in journal mode `{mode}`; WAL is required (is it in memory?)"
            )));
        }
        writer
            .execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(storage("cannot set synchronous"))?;
        Self::migrate(&writer)?;
        let readers = (0..readers.max(1))
            .map(|_| {
                let conn = connect(&path)?;
                conn.execute_batch("PRAGMA query_only = 1")
                    .map_err(storage("cannot open a read connection"))?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<Vec<_>, VaultError>>()?;
        Ok(Self {
            path,
            keys,
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    fn migrate(conn: &Connection) -> Result<(), VaultError> {
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(storage("cannot read the schema version"))?;
        match version {
            0 => conn
                .execute_batch(&format!(
                    "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))
                .map_err(storage("cannot create the schema")),
            SCHEMA_VERSION => Ok(()),
            other => Err(VaultError::Storage(format!(
                "the database has schema version {other}; this build reads version {SCHEMA_VERSION}"
            ))),
        }
    }

    /// The key ring.
    pub fn keys(&self) -> &MasterKeys {
        &self.keys
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        let n = self.readers.len().max(1);
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Some(Ok(guard)) = self.readers.get((start + i) % n).map(Mutex::try_lock) {
                return guard;
            }
        }
        match self.readers.get(start) {
            Some(reader) => reader.lock().unwrap_or_else(PoisonError::into_inner),
            // `readers` is never empty (at least one is opened); fall back to the writer.
            None => self.writer(),
        }
    }

    fn open_row(
        &self,
        tenant: &str,
        subject: &str,
        provider: &str,
        row: &Row,
    ) -> Result<StoredCredential, VaultError> {
        let id = RowId {
            tenant,
            subject,
            provider,
            record_id: &row.record_id,
        };
        let plaintext = open_record(
            &self.keys,
            &id,
            &row.key_id,
            &row.wrapped_key,
            &row.ciphertext,
        )
        .map_err(VaultError::Decrypt)?;
        let record = codec::decode(&plaintext).map_err(|e| {
            VaultError::Decrypt(format!(
                "record {tenant}/{subject}/{provider} opened but does not decode: {e}"
            ))
        })?;
        Ok(record.with_revision(revision_u64(row.revision)))
    }

    /// Seals `record` for `key` under the primary key: (record id, sealed).
    fn seal(
        &self,
        key: &CredentialKey,
        record: &StoredCredential,
    ) -> Result<([u8; RECORD_ID_LEN], crate::master::Sealed), VaultError> {
        let record_id = random_bytes::<RECORD_ID_LEN>()?;
        let id = RowId {
            tenant: key.tenant(),
            subject: key.subject(),
            provider: key.provider().as_str(),
            record_id: &record_id,
        };
        let plaintext = codec::encode(record).map_err(VaultError::Storage)?;
        let sealed =
            seal_record(self.keys.primary(), &id, &plaintext).map_err(VaultError::Storage)?;
        Ok((record_id, sealed))
    }

    /// How many rows each master key id wraps.
    pub fn key_usage(&self) -> Result<Vec<(String, u64)>, VaultError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT key_id, COUNT(*) FROM credentials GROUP BY key_id ORDER BY key_id",
            )
            .map_err(storage("cannot count keys"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(storage("cannot count keys"))?;
        rows.map(|row| {
            row.map(|(id, n)| (id, revision_u64(n)))
                .map_err(storage("cannot count keys"))
        })
        .collect()
    }

    /// Re-wraps every record's data key under `new_key`, one row per transaction.
    ///
    /// Interrupting it (a crash, a kill) leaves every row readable with either key: open the
    /// store with a ring holding both and run it again to finish. The payloads are not
    /// re-encrypted (their data keys do not change). After it completes, open the store with
    /// `new_key` as the primary key so new records are sealed under it.
    pub fn rotate(&self, new_key: &MasterKey) -> Result<RotateReport, VaultError> {
        self.rotate_with_progress(new_key, &mut |_| {})
    }

    /// [`rotate`](Self::rotate), calling `progress` with the number of rows done after each
    /// committed row.
    pub fn rotate_with_progress(
        &self,
        new_key: &MasterKey,
        progress: &mut dyn FnMut(u64),
    ) -> Result<RotateReport, VaultError> {
        let pending: Vec<(String, String, String)> = {
            let conn = self.reader();
            let mut stmt = conn
                .prepare(
                    "SELECT tenant, subject, provider FROM credentials WHERE key_id <> ?1 \
                     ORDER BY tenant, subject, provider",
                )
                .map_err(storage("cannot list rows to rotate"))?;
            let rows = stmt
                .query_map([new_key.id()], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .map_err(storage("cannot list rows to rotate"))?;
            rows.collect::<Result<_, _>>()
                .map_err(storage("cannot list rows to rotate"))?
        };
        let mut report = RotateReport::default();
        for (tenant, subject, provider) in pending {
            let mut conn = self.writer();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(storage("cannot begin a rotation step"))?;
            let row: Option<(Vec<u8>, String, Vec<u8>)> = tx
                .query_row(
                    "SELECT record_id, key_id, wrapped_key FROM credentials \
                     WHERE tenant = ?1 AND subject = ?2 AND provider = ?3",
                    params![tenant, subject, provider],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(storage("cannot read a row to rotate"))?;
            let Some((record_id, key_id, wrapped_key)) = row else {
                report.skipped += 1;
                continue;
            };
            if key_id == new_key.id() {
                report.skipped += 1;
                continue;
            }
            let id = RowId {
                tenant: &tenant,
                subject: &subject,
                provider: &provider,
                record_id: &record_id,
            };
            let wrapped = rewrap(&self.keys, new_key, &id, &key_id, &wrapped_key)
                .map_err(VaultError::Decrypt)?;
            tx.execute(
                "UPDATE credentials SET key_id = ?1, wrapped_key = ?2 \
                 WHERE tenant = ?3 AND subject = ?4 AND provider = ?5 AND record_id = ?6",
                params![new_key.id(), wrapped, tenant, subject, provider, record_id],
            )
            .map_err(storage("cannot write a rotated row"))?;
            tx.commit()
                .map_err(storage("cannot commit a rotated row"))?;
            drop(conn);
            report.rewrapped += 1;
            progress(report.rewrapped);
        }
        Ok(report)
    }

    fn read_row(conn: &Connection, key: &CredentialKey) -> Result<Option<Row>, VaultError> {
        let mut stmt = conn
            .prepare_cached(
                "SELECT record_id, revision, key_id, wrapped_key, ciphertext FROM credentials \
                 WHERE tenant = ?1 AND subject = ?2 AND provider = ?3",
            )
            .map_err(storage("cannot read a credential"))?;
        stmt.query_row(
            params![key.tenant(), key.subject(), key.provider().as_str()],
            |row| {
                Ok(Row {
                    record_id: row.get(0)?,
                    revision: row.get(1)?,
                    key_id: row.get(2)?,
                    wrapped_key: row.get(3)?,
                    ciphertext: row.get(4)?,
                })
            },
        )
        .optional()
        .map_err(storage("cannot read a credential"))
    }
}

impl CredentialStore for SqliteStore {
    fn get(&self, key: &CredentialKey) -> Result<Option<StoredCredential>, VaultError> {
        let row = Self::read_row(&self.reader(), key)?;
        row.map(|row| self.open_row(key.tenant(), key.subject(), key.provider().as_str(), &row))
            .transpose()
    }

    fn put(&self, key: &CredentialKey, record: &StoredCredential) -> Result<u64, VaultError> {
        let (record_id, sealed) = self.seal(key, record)?;
        let revision = new_revision()?;
        let conn = self.writer();
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO credentials \
                 (tenant, subject, provider, record_id, revision, key_id, wrapped_key, ciphertext) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (tenant, subject, provider) DO UPDATE SET \
                 record_id = excluded.record_id, revision = excluded.revision, \
                 key_id = excluded.key_id, wrapped_key = excluded.wrapped_key, \
                 ciphertext = excluded.ciphertext",
            )
            .map_err(storage("cannot write a credential"))?;
        stmt.execute(params![
            key.tenant(),
            key.subject(),
            key.provider().as_str(),
            record_id.as_slice(),
            revision,
            sealed.key_id,
            sealed.wrapped_key,
            sealed.ciphertext
        ])
        .map_err(storage("cannot write a credential"))?;
        Ok(revision_u64(revision))
    }

    fn compare_and_swap(
        &self,
        key: &CredentialKey,
        expected: u64,
        record: &StoredCredential,
    ) -> Result<Option<u64>, VaultError> {
        let Ok(expected) = i64::try_from(expected) else {
            return Ok(None);
        };
        let (record_id, sealed) = self.seal(key, record)?;
        let revision = new_revision()?;
        let conn = self.writer();
        let mut stmt = conn
            .prepare_cached(
                "UPDATE credentials SET record_id = ?1, revision = ?2, key_id = ?3, \
                 wrapped_key = ?4, ciphertext = ?5 \
                 WHERE tenant = ?6 AND subject = ?7 AND provider = ?8 AND revision = ?9",
            )
            .map_err(storage("cannot update a credential"))?;
        let changed = stmt
            .execute(params![
                record_id.as_slice(),
                revision,
                sealed.key_id,
                sealed.wrapped_key,
                sealed.ciphertext,
                key.tenant(),
                key.subject(),
                key.provider().as_str(),
                expected
            ])
            .map_err(storage("cannot update a credential"))?;
        Ok((changed == 1).then(|| revision_u64(revision)))
    }

    fn delete(
        &self,
        key: &CredentialKey,
    ) -> Result<Option<Result<StoredCredential, VaultError>>, VaultError> {
        let row = {
            let conn = self.writer();
            let mut stmt = conn
                .prepare_cached(
                    "DELETE FROM credentials WHERE tenant = ?1 AND subject = ?2 AND provider = ?3 \
                     RETURNING record_id, revision, key_id, wrapped_key, ciphertext",
                )
                .map_err(storage("cannot delete a credential"))?;
            stmt.query_row(
                params![key.tenant(), key.subject(), key.provider().as_str()],
                |row| {
                    Ok(Row {
                        record_id: row.get(0)?,
                        revision: row.get(1)?,
                        key_id: row.get(2)?,
                        wrapped_key: row.get(3)?,
                        ciphertext: row.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(storage("cannot delete a credential"))?
        };
        Ok(
            row.map(|row| {
                self.open_row(key.tenant(), key.subject(), key.provider().as_str(), &row)
            }),
        )
    }

    fn delete_owner(&self, owner: &Owner) -> Result<Vec<DeletedRecord>, VaultError> {
        let rows = owner_rows(
            &self.writer(),
            "DELETE FROM credentials WHERE tenant = ?1 AND subject = ?2 \
             RETURNING provider, record_id, revision, key_id, wrapped_key, ciphertext",
            owner,
            "cannot delete credentials",
        )?;
        let mut deleted = Vec::with_capacity(rows.len());
        for (provider, row) in rows {
            let record = self.open_row(owner.tenant(), owner.subject(), &provider, &row);
            let provider = ProviderId::new(provider)
                .map_err(|e| VaultError::Storage(format!("a stored provider id is bad: {e}")))?;
            deleted.push((provider, record));
        }
        deleted.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(deleted)
    }

    fn list_owner(&self, owner: &Owner) -> Result<Vec<(ProviderId, StoredCredential)>, VaultError> {
        let rows = owner_rows(
            &self.reader(),
            "SELECT provider, record_id, revision, key_id, wrapped_key, ciphertext \
             FROM credentials WHERE tenant = ?1 AND subject = ?2 ORDER BY provider",
            owner,
            "cannot list credentials",
        )?;
        rows.into_iter()
            .map(|(provider, row)| {
                let record = self.open_row(owner.tenant(), owner.subject(), &provider, &row)?;
                let provider = ProviderId::new(provider).map_err(|e| {
                    VaultError::Storage(format!("a stored provider id is bad: {e}"))
                })?;
                Ok((provider, record))
            })
            .collect()
    }
}

/// Runs `sql` (a query or a `DELETE ... RETURNING` of `provider, record_id, revision, key_id,
/// wrapped_key, ciphertext` for `?1` = tenant, `?2` = subject) and collects its rows; `what`
/// names the operation in a storage error.
fn owner_rows(
    conn: &Connection,
    sql: &str,
    owner: &Owner,
    what: &'static str,
) -> Result<Vec<(String, Row)>, VaultError> {
    let mut stmt = conn.prepare_cached(sql).map_err(storage(what))?;
    let rows = stmt
        .query_map(params![owner.tenant(), owner.subject()], |row| {
            Ok((
                row.get(0)?,
                Row {
                    record_id: row.get(1)?,
                    revision: row.get(2)?,
                    key_id: row.get(3)?,
                    wrapped_key: row.get(4)?,
                    ciphertext: row.get(5)?,
                },
            ))
        })
        .map_err(storage(what))?;
    rows.collect::<Result<_, _>>().map_err(storage(what))
}
