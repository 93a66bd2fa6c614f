//! The hot path's internal steps, reachable from outside the crate for the criterion
//! micro-benchmarks (`benches/hot_path.rs`). Not a stable API.

use std::path::Path;
use std::sync::Arc;

use crate::state::set::TableSet;
use crate::state::table::Table;

/// One partition's count table (URL -> count), updated and committed the way the partition
/// actor does it.
pub struct CountShard {
    set: TableSet,
    table: Table<String, u64>,
    next: i64,
}

impl CountShard {
    /// Opens the shard in `db`, keeping at most `cached` clean keys in memory after a commit.
    pub fn open(db: &sled::Db, cached: usize) -> Self {
        let table = Table::<String, u64>::new("counts").key_codec(crate::Codec::String);
        let path: Arc<Path> = Arc::from(Path::new("bench"));
        let spec = vec![table.spec()];
        let set = TableSet::open(db, path, "bench".into(), "views".into(), 0, spec, cached)
            .expect("opening the bench shard");
        CountShard {
            set,
            table,
            next: 0,
        }
    }

    /// One event's table work: `key`'s count plus one (through the cache), then the end of
    /// the event (its undo log dropped). Returns the new count.
    pub fn increment(&mut self, key: &str) -> u64 {
        let n = self
            .set
            .view(&self.table)
            .and_then(|mut v| v.update(key.to_owned(), |n| n.unwrap_or(0) + 1))
            .expect("updating the bench shard");
        self.set.end_event();
        self.next += 1;
        n
    }

    /// The store half of a commit: the dirty entries, key count and offset staged into one
    /// batch and applied to the tree, then flushed to disk when `flush`. Returns how many
    /// changelog writes the commit carried.
    pub fn commit(&mut self, db: &sled::Db, flush: bool) -> usize {
        let staged = self.set.stage_lead(self.next).expect("staging");
        let writes = staged.changes.iter().map(|(_, _, w)| w.len()).sum();
        self.set
            .tree()
            .apply_batch(staged.batch)
            .expect("applying the batch");
        if flush {
            db.flush().expect("flushing");
        }
        self.set.committed(&staged.counts);
        writes
    }
}
