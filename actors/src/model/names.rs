//! Every name the runtime writes, in one place: internal topics, headers, and the layout of
//! the sled store. Renaming one here renames it everywhere.
//!
//! Layout of a task's tree (`partition/<lead topic>/<partition>`; a task is partition `p` of a
//! co-partitioned group of topics, named after its lead, the first topic by name):
//! - `d/<table>\0<key bytes>` -> value bytes, encoded with the table's codecs (a windowed
//!   table keeps its stream time under `STREAM_TIME_KEY` after that prefix);
//! - `m/offset` -> the lead topic's next source offset to read, written in the same batch as
//!   the data, so the store always says which events its tables already contain; `m/offset/<topic>`
//!   the same for each other topic of the group;
//! - `m/count/<table>` -> number of keys of that table in this partition;
//! - `m/changelog/<table>` -> the next changelog offset applied (standbys and restores).

// Internal topics.

/// The changelog topic of `table` in app `app_id`.
pub fn changelog_topic(app_id: &str, table: &str) -> String {
    format!("{app_id}-{table}-changelog")
}

/// The members topic of app `app_id`.
pub fn members_topic(app_id: &str) -> String {
    format!("{app_id}-members")
}

/// The dead-letter topic of `agent` in app `app_id`.
pub fn dead_letter_topic(app_id: &str, agent: &str) -> String {
    format!("{app_id}-{agent}-dlq")
}

/// The internal topic `agent`'s events are re-keyed through, in app `app_id`.
pub fn repartition_topic(app_id: &str, agent: &str) -> String {
    format!("{app_id}-{agent}-repartition")
}

/// The header [`Event::emit`](crate::Event::emit) puts on every record: `<topic>/<partition>/<offset>` of the
/// event that produced it, so any output can be traced back to its input.
pub const SOURCE_HEADER: &str = "faust-source";

/// Header on a dead letter whose payload was cut to fit the dead-letter topic: the original
/// payload's size in bytes.
pub const ORIGINAL_SIZE_HEADER: &str = "faust-original-size";
/// Header on a dead letter stamped with the time of sending because the topic refused the
/// source record's own timestamp: that timestamp (ms, decimal).
pub const SOURCE_TIMESTAMP_HEADER: &str = "faust-source-timestamp";

// The sled store's layout.

/// Key of the lead topic's next source offset in a task's tree.
pub(crate) const OFFSET_KEY: &[u8] = b"m/offset";

/// Key of `topic`'s next source offset in the tree of the task led by `lead`.
pub(crate) fn offset_key(lead: &str, topic: &str) -> Vec<u8> {
    if lead == topic {
        OFFSET_KEY.to_vec()
    } else {
        [OFFSET_KEY, b"/", topic.as_bytes()].concat()
    }
}

/// Name of the sled tree holding this node's full copy of global table `table`.
pub(crate) fn global_tree_name(table: &str) -> String {
    format!("global/{table}")
}

/// Name of the sled tree holding partition `partition` of `topic`.
pub(crate) fn tree_name(topic: &str, partition: i32) -> String {
    format!("partition/{topic}/{partition}")
}

/// Key, in a partition tree, of the number of keys `table` holds there.
pub(crate) fn count_key(table: &str) -> Vec<u8> {
    [b"m/count/".as_slice(), table.as_bytes()].concat()
}

/// The prefix of every key of `table` in a partition tree.
pub(crate) fn data_prefix(table: &str) -> Vec<u8> {
    [b"d/".as_slice(), table.as_bytes(), b"\0"].concat()
}

/// Key, in a partition tree, of the next changelog offset applied for `table`.
pub(crate) fn applied_key(table: &str) -> Vec<u8> {
    [b"m/changelog/".as_slice(), table.as_bytes()].concat()
}

/// The key of a table's stream time, after the table's prefix.
pub(crate) const STREAM_TIME_KEY: &[u8] = b"\x00stream-time";
