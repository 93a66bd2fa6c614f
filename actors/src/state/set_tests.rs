//! A partition's table shards: cache, commit into sled with offset and counts, rollback, errors.

use super::*;
use crate::state::shard::stored_offset;

fn open(db: &sled::Db, table: &Table<String, u64>) -> TableSet {
    let path: Arc<Path> = Arc::from(Path::new("/mem"));
    TableSet::open(db, path, "app".into(), "t".into(), 0, vec![table.spec()], 2).unwrap()
}

fn apply(set: &mut TableSet, next: i64) {
    let staged = set.stage_lead(next).unwrap();
    set.tree().apply_batch(staged.batch).unwrap();
    set.committed(&staged.counts);
}

#[test]
fn writes_are_cached_then_stored_with_offset_and_count() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let t = Table::<String, u64>::new("c");
    let mut set = open(&db, &t);
    for url in ["/a", "/b", "/a"] {
        set.view(&t)
            .unwrap()
            .update(url.into(), |n| n.unwrap_or(0) + 1)
            .unwrap();
        set.end_event();
    }
    assert!(set.is_dirty());
    assert!(
        set.tree().is_empty(),
        "nothing reaches sled before a commit"
    );
    apply(&mut set, 3);
    assert!(!set.is_dirty());
    assert_eq!(
        stored_offset(set.tree(), Path::new("/mem")).unwrap(),
        Some(3)
    );
    let mut reopened = open(&db, &t);
    assert_eq!(reopened.key_counts().next().map(|(_, n)| n), Some(2));
    let mut items = reopened.view(&t).unwrap().items().unwrap();
    items.sort();
    assert_eq!(items, vec![("/a".into(), 2), ("/b".into(), 1)]);
}

#[test]
fn a_failed_event_is_rolled_back_entirely() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let t = Table::<String, u64>::new("c");
    let mut set = open(&db, &t);
    set.view(&t).unwrap().insert("/a".into(), 1).unwrap();
    set.end_event();
    let mut view = set.view(&t).unwrap();
    view.update("/a".into(), |n| n.unwrap_or(0) + 10).unwrap();
    view.update("/a".into(), |n| n.unwrap_or(0) + 10).unwrap();
    view.insert("/new".into(), 5).unwrap();
    set.rollback_event();
    let mut view = set.view(&t).unwrap();
    assert_eq!(view.get(&"/a".into()).unwrap(), Some(1));
    assert_eq!(view.get(&"/new".into()).unwrap(), None);
}

#[test]
fn deletes_keep_key_counts_exact_and_trimmed_cache_rereads_sled() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let t = Table::<String, u64>::new("c");
    let mut set = open(&db, &t);
    for (i, k) in ["a", "b", "c"].iter().enumerate() {
        set.view(&t).unwrap().insert((*k).into(), i as u64).unwrap();
    }
    set.end_event();
    apply(&mut set, 1);
    set.view(&t).unwrap().remove(&"b".into()).unwrap();
    set.view(&t).unwrap().remove(&"zz".into()).unwrap();
    set.end_event();
    apply(&mut set, 2);
    assert_eq!(set.key_counts().next().map(|(_, n)| n), Some(2));
    assert_eq!(set.view(&t).unwrap().get(&"c".into()).unwrap(), Some(2));
}

#[test]
fn undeclared_and_mistyped_tables_are_clear_errors() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let t = Table::<String, u64>::new("c");
    let mut set = open(&db, &t);
    let other = Table::<String, u64>::new("other");
    let err = set.view(&other).err().unwrap();
    assert!(err.to_string().contains("not declared"), "{err}");
    set.view(&t).unwrap();
    let mistyped = Table::<String, String>::new("c");
    assert!(matches!(
        set.view(&mistyped).err(),
        Some(Error::TableTypeMismatch { .. })
    ));
}
