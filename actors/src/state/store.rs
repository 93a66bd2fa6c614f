//! The node's local store: one sled database holding every partition's table shards and the
//! source offsets they reflect, stamped with the Kafka cluster it was written against.
//!
//! The stamp (`CLUSTER_ID`, a text file beside sled's files) keeps offsets of one cluster from
//! ever being applied to another: a previous run's embedded broker, or a reset test cluster,
//! has other offsets and other data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::error::{Error, Result};
use crate::model::names::{data_prefix, global_tree_name, offset_key, tree_name};
use crate::state::shard::stored_offset_at;
use crate::state::spec::{TableKey, TableSpec, TableValue};
use crate::state::table::{GlobalTable, Table};

const STAMP: &str = "CLUSTER_ID";

/// What to do when the store was written against another Kafka cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnClusterMismatch {
    /// Refuse to start with [`Error::ClusterMismatch`]: the safe choice for a real cluster.
    Fail,
    /// Move the old store aside (`<path>.stale-<unix-seconds>`) with a warning and start empty:
    /// right for an embedded broker, whose data died with its process.
    Archive,
}

/// The node's sled database and where it lives.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    path: Arc<Path>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Opens (or creates) the store at `path` for Kafka cluster `cluster_id`.
    ///
    /// # Errors
    /// The directory cannot be created or written, another process holds the store's lock, or
    /// the store belongs to another cluster and `on_mismatch` is [`OnClusterMismatch::Fail`].
    pub fn open(
        path: &Path,
        cluster_id: &str,
        on_mismatch: OnClusterMismatch,
        cache_bytes: u64,
    ) -> Result<Store> {
        let stamp = path.join(STAMP);
        match std::fs::read_to_string(&stamp) {
            Ok(stored) if stored.trim() == cluster_id => {}
            Ok(stored) => {
                let stored = stored.trim().to_owned();
                match on_mismatch {
                    OnClusterMismatch::Fail => {
                        return Err(Error::ClusterMismatch {
                            path: path.to_path_buf(),
                            stored,
                            actual: cluster_id.to_owned(),
                        })
                    }
                    OnClusterMismatch::Archive => {
                        let aside = archive_path(path, "stale");
                        std::fs::rename(path, &aside)
                            .map_err(io("cannot move the stale store aside to", &aside))?;
                        tracing::warn!(
                            store = %path.display(), moved_to = %aside.display(),
                            stale_cluster = %stored, cluster = %cluster_id,
                            "the store was written against another Kafka cluster (a previous \
                             embedded broker?): moved it aside and starting with empty tables"
                        );
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if path.join("sled").exists() {
                    return Err(Error::ClusterMismatch {
                        path: path.to_path_buf(),
                        stored: "<unstamped>".into(),
                        actual: cluster_id.to_owned(),
                    });
                }
            }
            Err(e) => return Err(io("cannot read", &stamp)(e)),
        }
        std::fs::create_dir_all(path).map_err(io("cannot create store directory", path))?;
        // Tables may hold personal data: the store is its owner's only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                .map_err(io("cannot make the store directory owner-only", path))?;
        }
        let tmp = path.join(format!("{STAMP}.tmp"));
        std::fs::write(&tmp, cluster_id).map_err(io("cannot write to store directory", path))?;
        std::fs::rename(&tmp, &stamp).map_err(io("cannot write", &stamp))?;
        Self::open_db(path, cache_bytes)
    }

    /// Opens an existing store without a cluster check, to read it (tests, the CLI).
    ///
    /// # Errors
    /// As [`Store::open`], minus the cluster check.
    pub fn open_existing(path: &Path) -> Result<Store> {
        if !path.join("sled").exists() {
            return Err(io("no store at", path)(std::io::ErrorKind::NotFound.into()));
        }
        Self::open_db(path, 16 << 20)
    }

    fn open_db(path: &Path, cache_bytes: u64) -> Result<Store> {
        let dir = path.join("sled");
        let fresh = !dir.exists();
        let open = || {
            let config = sled::Config::new()
                .path(&dir)
                .cache_capacity(cache_bytes)
                .flush_every_ms(Some(1000));
            // sled panics on some damage instead of returning an error.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || config.open()))
                .unwrap_or_else(|_| {
                    Err(sled::Error::Unsupported(
                        "sled panicked while opening".into(),
                    ))
                })
        };
        let db = match open() {
            Ok(db) => db,
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                return Err(Error::StoreLocked {
                    path: path.to_path_buf(),
                })
            }
            Err(e @ (sled::Error::Corruption { .. } | sled::Error::Unsupported(_))) => {
                let aside = archive_path(&dir, "corrupt");
                std::fs::rename(&dir, &aside)
                    .map_err(io("cannot move the corrupt store aside to", &aside))?;
                tracing::error!(store = %path.display(), moved_to = %aside.display(), error = %e,
                    "the store is corrupt: moved it aside; every table partition will be \
                     rebuilt from its changelog");
                open().map_err(|e| Error::store(path, e))?
            }
            Err(e) => return Err(Error::store(path, e)),
        };
        if fresh {
            tracing::info!(store = %path.display(),
                "new local store: table partitions will be restored from their changelogs");
        }
        Ok(Store {
            db,
            path: Arc::from(path),
        })
    }

    /// A store in memory only, gone when dropped (the test driver's).
    ///
    /// # Errors
    /// sled could not create it.
    pub fn temporary() -> Result<Store> {
        let path: Arc<Path> = Arc::from(Path::new("(temporary store)"));
        // Nothing to flush to: no flusher thread.
        let db = sled::Config::new()
            .temporary(true)
            .flush_every_ms(None)
            .open()
            .map_err(|e| Error::store(&path, e))?;
        Ok(Store { db, path })
    }

    /// The sled database.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The store's directory.
    pub fn path(&self) -> &Arc<Path> {
        &self.path
    }

    /// This store's node id: made once, kept in the store. A node restarted on its store gets
    /// the same id, so its transactional producer (`<app>-<node id>`) fences the crashed
    /// instance at once and aborts its open transaction, instead of waiting out its timeout.
    ///
    /// # Errors
    /// The store failed.
    pub fn node_id(&self) -> Result<String> {
        const KEY: &[u8] = b"m/node-id";
        if let Some(id) = self.db.get(KEY).map_err(|e| Error::store(&self.path, e))? {
            return Ok(String::from_utf8_lossy(&id).into_owned());
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let id = format!("{:x}", nanos ^ (u128::from(std::process::id()) << 64));
        self.db
            .insert(KEY, id.as_bytes())
            .and_then(|_| self.db.flush().map(|_| ()))
            .map_err(|e| Error::store(&self.path, e))?;
        Ok(id)
    }

    /// The next offset of `topic`/`partition` whose effects the store holds, if it has any
    /// (`topic` leads its task).
    ///
    /// # Errors
    /// The store failed.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>> {
        self.task_offset(topic, topic, partition)
    }

    /// The next offset of `topic`/`partition` whose effects the tree of the task led by `lead`
    /// holds, if it has any.
    ///
    /// # Errors
    /// The store failed.
    pub fn task_offset(&self, lead: &str, topic: &str, partition: i32) -> Result<Option<i64>> {
        let name = tree_name(lead, partition);
        if !self
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == name.as_bytes())
        {
            return Ok(None);
        }
        let tree = self
            .db
            .open_tree(name)
            .map_err(|e| Error::store(&self.path, e))?;
        stored_offset_at(&tree, &offset_key(lead, topic), &self.path)
    }

    /// The next changelog offset of `table` this store applied for `topic`/`partition`.
    ///
    /// # Errors
    /// The store failed.
    pub fn changelog_applied(&self, topic: &str, partition: i32, table: &str) -> Result<i64> {
        let tree = self
            .db
            .open_tree(tree_name(topic, partition))
            .map_err(|e| Error::store(&self.path, e))?;
        applied(&tree, table, &self.path)
    }

    /// Every committed key and value of `table`, over all partitions in this store.
    ///
    /// # Errors
    /// The store failed or holds bytes that do not decode with the table's codecs.
    pub fn table_contents<K: TableKey, V: TableValue>(
        &self,
        table: &Table<K, V>,
    ) -> Result<HashMap<K, V>> {
        let mut out = HashMap::new();
        for name in self.db.tree_names() {
            if name.starts_with(b"partition/") {
                self.decode_into(&name, &table.spec(), &mut out)?;
            }
        }
        Ok(out)
    }

    /// Every key and value of the global `table` as this node holds it.
    ///
    /// # Errors
    /// The store failed or holds bytes that do not decode with the table's codecs.
    pub fn global_contents<K: TableKey, V: TableValue>(
        &self,
        table: &GlobalTable<K, V>,
    ) -> Result<HashMap<K, V>> {
        let mut out = HashMap::new();
        let spec = table.spec();
        self.decode_into(global_tree_name(&spec.name).as_bytes(), &spec, &mut out)?;
        Ok(out)
    }

    /// The value of `key` in the global `table` as this node holds it (the copy every node
    /// keeps by tailing the table's changelog), as timers and queries read it.
    ///
    /// # Errors
    /// The store failed, the key does not encode, or the value does not decode.
    pub fn global_get<K: TableKey, V: TableValue>(
        &self,
        table: &GlobalTable<K, V>,
        key: &K,
    ) -> Result<Option<V>> {
        let spec = table.spec();
        let tree = self
            .db
            .open_tree(global_tree_name(&spec.name))
            .map_err(|e| Error::store(&self.path, e))?;
        let stored = [
            data_prefix(&spec.name),
            spec.key_codec.encode("table key", key)?,
        ]
        .concat();
        let raw = tree.get(stored).map_err(|e| Error::store(&self.path, e))?;
        raw.map(|v| spec.value_codec.decode("table value", &v))
            .transpose()
    }

    /// Decodes every entry of `spec`'s table in tree `tree` into `out`.
    fn decode_into<K: TableKey, V: TableValue>(
        &self,
        tree: &[u8],
        spec: &TableSpec,
        out: &mut HashMap<K, V>,
    ) -> Result<()> {
        let prefix = data_prefix(&spec.name);
        let tree = self
            .db
            .open_tree(tree)
            .map_err(|e| Error::store(&self.path, e))?;
        for item in tree.scan_prefix(&prefix) {
            let (k, v) = item.map_err(|e| Error::store(&self.path, e))?;
            let key = spec.key_codec.decode("table key", &k[prefix.len()..])?;
            out.insert(key, spec.value_codec.decode("table value", &v)?);
        }
        Ok(())
    }

    /// Writes everything to disk (used at shutdown; commits flush their own writes).
    ///
    /// # Errors
    /// The store failed (disk full, I/O error).
    pub fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| Error::store(&self.path, e))
    }
}

/// `<path>.<why>-<unix seconds>`: where a store that cannot be used is moved.
fn archive_path(path: &Path, why: &str) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{why}-{secs}"));
    path.with_file_name(name)
}

/// The next changelog offset the tree has applied for `table` (0 when none).
pub(crate) fn applied(tree: &sled::Tree, table: &str, path: &Path) -> Result<i64> {
    let raw = tree
        .get(crate::model::names::applied_key(table))
        .map_err(|e| Error::store(path, e))?;
    Ok(raw
        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map_or(0, i64::from_be_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_cluster_fails_or_is_archived_never_mixed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let store = Store::open(&path, "cluster-a", OnClusterMismatch::Fail, 1 << 20).unwrap();
        store
            .db()
            .open_tree("partition/t/0")
            .unwrap()
            .insert(b"m/offset", &7i64.to_be_bytes())
            .unwrap();
        store.flush().unwrap();
        drop(store);

        let err = Store::open(&path, "cluster-b", OnClusterMismatch::Fail, 1 << 20).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("cluster-a") && text.contains("cluster-b"),
            "{text}"
        );
        assert!(text.contains(&path.display().to_string()), "{text}");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o777,
                0o700,
                "the store is its owner's only: {mode:o}"
            );
        }
        let same = Store::open(&path, "cluster-a", OnClusterMismatch::Fail, 1 << 20).unwrap();
        assert_eq!(same.next_offset("t", 0).unwrap(), Some(7));
        drop(same);

        let fresh = Store::open(&path, "cluster-b", OnClusterMismatch::Archive, 1 << 20).unwrap();
        assert_eq!(fresh.next_offset("t", 0).unwrap(), None);
        let archived = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("store.stale-"))
            .count();
        assert_eq!(archived, 1);
    }

    #[test]
    fn a_corrupt_store_is_moved_aside_and_a_held_one_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let store = Store::open(&path, "c", OnClusterMismatch::Fail, 1 << 20).unwrap();
        store.db().insert(b"k", b"v").unwrap();
        store.flush().unwrap();
        let err = Store::open(&path, "c", OnClusterMismatch::Fail, 1 << 20).unwrap_err();
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
        drop(store);

        std::fs::write(path.join("sled").join("conf"), b"not a sled config").unwrap();
        let reopened = Store::open(&path, "c", OnClusterMismatch::Fail, 1 << 20).unwrap();
        assert!(reopened.db().get(b"k").unwrap().is_none(), "a fresh store");
        let aside = std::fs::read_dir(&path)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("sled.corrupt-"))
            .count();
        assert_eq!(aside, 1, "the damaged store is kept aside for inspection");
    }
}
