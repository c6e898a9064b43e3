//! Unit tests of the leader epoch cache: assignment rules, `end_offset_for`, truncation from
//! either end and the checkpoint file.

use std::fs;

use super::*;

fn entries(cache: &LeaderEpochCache) -> Vec<(i32, i64)> {
    cache
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

/// A cache in a fresh directory holding `assignments`.
fn cache_with(assignments: &[(i32, i64)]) -> (tempfile::TempDir, LeaderEpochCache) {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = LeaderEpochCache::new(dir.path());
    cache.assign_all(assignments.iter().copied()).unwrap();
    (dir, cache)
}

fn reloaded(dir: &tempfile::TempDir) -> Vec<(i32, i64)> {
    entries(&LeaderEpochCache::load(dir.path()).unwrap().unwrap())
}

#[test]
fn assign_keeps_epochs_and_start_offsets_strictly_increasing() {
    let (dir, mut cache) = cache_with(&[]);
    assert_eq!(cache.latest_epoch(), None);
    assert!(cache.assign(0, 0).unwrap());
    assert!(!cache.assign(0, 5).unwrap(), "same epoch: no new entry");
    assert!(cache.assign(2, 10).unwrap());
    assert!(!cache.assign(1, 20).unwrap(), "older epoch ignored");
    assert!(
        !cache.assign(3, 9).unwrap(),
        "start before the latest entry ignored"
    );
    assert!(
        !cache.assign(UNDEFINED_EPOCH, 30).unwrap(),
        "undefined epoch ignored"
    );
    assert!(cache.assign(4, 12).unwrap());
    assert_eq!(entries(&cache), vec![(0, 0), (2, 10), (4, 12)]);
    assert_eq!(cache.latest_epoch(), Some(4));
    assert_eq!(reloaded(&dir), entries(&cache), "every change is persisted");
}

#[test]
fn a_newer_epoch_at_the_same_start_offset_replaces_the_latest_entry() {
    let (dir, mut cache) = cache_with(&[(0, 0), (1, 5)]);
    assert!(cache.assign(3, 5).unwrap());
    assert_eq!(entries(&cache), vec![(0, 0), (3, 5)]);
    assert_eq!(reloaded(&dir), vec![(0, 0), (3, 5)]);
}

#[test]
fn end_offset_for_follows_kafka() {
    let (_dir, cache) = cache_with(&[(1, 0), (2, 3), (5, 5)]);
    let leo = 9;
    // The latest epoch ends at the log end.
    assert_eq!(cache.end_offset_for(5, leo), Some((5, 9)));
    // Above the latest: the latest epoch, up to the log end.
    assert_eq!(cache.end_offset_for(7, leo), Some((5, 9)));
    // An epoch in the cache ends where the next one starts.
    assert_eq!(cache.end_offset_for(1, leo), Some((1, 3)));
    assert_eq!(cache.end_offset_for(2, leo), Some((2, 5)));
    // An epoch missing from the cache: the largest one below it.
    assert_eq!(cache.end_offset_for(3, leo), Some((2, 5)));
    assert_eq!(cache.end_offset_for(4, leo), Some((2, 5)));
    // Below the first entry, undefined, and an empty cache: undefined.
    assert_eq!(cache.end_offset_for(0, leo), None);
    assert_eq!(cache.end_offset_for(UNDEFINED_EPOCH, leo), None);
    let (_dir, empty) = cache_with(&[]);
    assert_eq!(empty.end_offset_for(0, leo), None);
}

#[test]
fn truncate_from_end_removes_entries_starting_at_or_after_the_end() {
    let (dir, mut cache) = cache_with(&[(0, 0), (2, 10), (4, 12)]);
    assert!(
        !cache.truncate_from_end(13).unwrap(),
        "nothing at or after 13"
    );
    assert!(cache.truncate_from_end(12).unwrap());
    assert_eq!(entries(&cache), vec![(0, 0), (2, 10)]);
    assert!(cache.truncate_from_end(5).unwrap());
    assert_eq!(entries(&cache), vec![(0, 0)]);
    assert_eq!(reloaded(&dir), vec![(0, 0)]);
    assert!(cache.truncate_from_end(0).unwrap());
    assert!(entries(&cache).is_empty());
    assert!(reloaded(&dir).is_empty());
}

#[test]
fn truncate_from_start_moves_the_first_kept_entry_up() {
    let (dir, mut cache) = cache_with(&[(1, 5), (2, 10), (4, 12)]);
    assert!(
        !cache.truncate_from_start(3).unwrap(),
        "below the first entry"
    );
    assert!(!cache.truncate_from_start(5).unwrap(), "at the first entry");
    assert!(cache.truncate_from_start(7).unwrap());
    assert_eq!(entries(&cache), vec![(1, 7), (2, 10), (4, 12)]);
    assert!(cache.truncate_from_start(10).unwrap());
    assert_eq!(entries(&cache), vec![(2, 10), (4, 12)]);
    assert!(cache.truncate_from_start(20).unwrap());
    assert_eq!(entries(&cache), vec![(4, 20)]);
    assert_eq!(reloaded(&dir), vec![(4, 20)]);
    // The end offset of the epoch before still answers from the remaining entries.
    assert_eq!(cache.end_offset_for(4, 25), Some((4, 25)));
    assert_eq!(cache.end_offset_for(3, 25), None);
}

#[test]
fn clear_empties_the_file_too() {
    let (dir, mut cache) = cache_with(&[(0, 0), (1, 4)]);
    cache.clear().unwrap();
    assert_eq!(cache.latest_epoch(), None);
    assert!(reloaded(&dir).is_empty());
}

#[test]
fn the_file_uses_kafkas_text_format() {
    let (dir, _cache) = cache_with(&[(0, 0), (3, 42)]);
    let text = fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).unwrap();
    assert_eq!(text, "0\n2\n0 0\n3 42\n");
    assert!(
        !dir.path()
            .join(format!("{LEADER_EPOCH_CHECKPOINT_FILE}.tmp"))
            .exists(),
        "the temporary file was renamed"
    );
}

#[test]
fn a_missing_file_loads_as_none() {
    let dir = tempfile::tempdir().unwrap();
    assert!(LeaderEpochCache::load(dir.path()).unwrap().is_none());
}

#[test]
fn unreadable_files_load_as_none_so_the_log_rebuilds_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE);
    for bad in [
        &b""[..],
        b"1\n1\n0 0\n",      // unknown version
        b"0\n2\n0 0\n",      // fewer entries than announced
        b"0\n1\n0 0\n1 5\n", // more entries than announced
        b"0\n2\n1 0\n1 5\n", // epochs not increasing
        b"0\n2\n0 5\n1 5\n", // start offsets not increasing
        b"0\n1\n0 x\n",      // not a number
        b"0\n1\n0 0 0\n",    // three fields
        b"0\n1\n-1 0\n",     // undefined epoch stored
        b"\xff\xfe\n",       // not text
    ] {
        fs::write(&path, bad).unwrap();
        assert!(
            LeaderEpochCache::load(dir.path()).unwrap().is_none(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    fs::write(&path, b"0\n2\n0 0\n7 19\n").unwrap();
    assert_eq!(reloaded(&dir), vec![(0, 0), (7, 19)]);
}
