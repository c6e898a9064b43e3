use std::fs;

use super::*;

const PID: i64 = 1000;

/// Header of an idempotent batch of `records` records; offsets are assigned by the caller.
fn batch(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
    BatchHeader {
        base_offset: 0,
        batch_length: 0,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: records - 1,
        base_timestamp: 1_000,
        max_timestamp: 1_000 + i64::from(base_sequence),
        producer_id,
        producer_epoch: epoch,
        base_sequence,
        records_count: records,
    }
}

/// A tiny leader: checks, then appends at the log end and updates, like the produce path.
struct Leader {
    state: ProducerStateManager,
    log_end: i64,
    /// Everything appended, to replay.
    appended: Vec<(BatchHeader, i64)>,
}

impl Leader {
    fn new() -> Leader {
        Leader {
            state: ProducerStateManager::new(),
            log_end: 0,
            appended: Vec::new(),
        }
    }

    /// Returns the check's outcome; appends on `Check::Append`.
    fn produce(&mut self, header: BatchHeader) -> std::result::Result<Check, ProducerError> {
        let check = self.state.check(&header)?;
        if check == Check::Append {
            let base = self.log_end;
            let mut stored = header;
            stored.base_offset = base;
            self.state.update(&stored, base, stored.max_timestamp);
            self.appended.push((stored, base));
            self.log_end = stored.next_offset();
        }
        Ok(check)
    }
}

fn appended(result: std::result::Result<Check, ProducerError>) {
    assert_eq!(result, Ok(Check::Append));
}

#[test]
fn in_order_batches_are_appended_and_remembered() {
    let mut l = Leader::new();
    appended(l.produce(batch(PID, 0, 0, 3)));
    appended(l.produce(batch(PID, 0, 3, 2)));
    appended(l.produce(batch(PID, 0, 5, 1)));
    let e = l.state.producer(PID).unwrap();
    assert_eq!(e.producer_epoch, 0);
    assert_eq!(e.last_seq(), Some(5));
    assert_eq!(
        e.batches.back().copied(),
        Some(BatchMetadata {
            first_seq: 5,
            last_seq: 5,
            first_offset: 5,
            last_offset: 5,
            timestamp: 1_005,
        })
    );
    assert_eq!(l.log_end, 6);
}

#[test]
fn retry_of_last_batch_is_a_duplicate_with_original_offsets() {
    let mut l = Leader::new();
    appended(l.produce(batch(PID, 0, 0, 3)));
    appended(l.produce(batch(PID, 0, 3, 4)));
    assert_eq!(
        l.produce(batch(PID, 0, 3, 4)),
        Ok(Check::Duplicate {
            base_offset: 3,
            last_offset: 6,
            timestamp: 1_003,
        })
    );
    assert_eq!(l.log_end, 7, "a duplicate is not appended");
}

#[test]
fn retry_of_fifth_last_batch_is_a_duplicate() {
    let mut l = Leader::new();
    for seq in 0..5 {
        appended(l.produce(batch(PID, 0, seq * 2, 2)));
    }
    assert_eq!(
        l.produce(batch(PID, 0, 0, 2)),
        Ok(Check::Duplicate {
            base_offset: 0,
            last_offset: 1,
            timestamp: 1_000,
        })
    );
}

/// A client has at most five requests in flight, so a retry of the sixth-last batch can't
/// be a legitimate retry; like Kafka, it is out of order (the expected sequence is next).
#[test]
fn retry_of_sixth_last_batch_is_out_of_order() {
    let mut l = Leader::new();
    for seq in 0..6 {
        appended(l.produce(batch(PID, 0, seq, 1)));
    }
    assert_eq!(
        l.state.producer(PID).unwrap().batches.len(),
        NUM_BATCHES_TO_RETAIN
    );
    let err = l.produce(batch(PID, 0, 0, 1)).unwrap_err();
    assert_eq!(
        err,
        ProducerError::OutOfOrderSequence {
            producer_id: PID,
            producer_epoch: 0,
            base_sequence: 0,
            expected_sequence: 6,
        }
    );
    assert_eq!(err.kafka_error_code(), 45);
    // The second-last is still remembered.
    assert!(matches!(
        l.produce(batch(PID, 0, 1, 1)),
        Ok(Check::Duplicate { base_offset: 1, .. })
    ));
}

#[test]
fn sequence_gap_is_out_of_order() {
    let mut l = Leader::new();
    appended(l.produce(batch(PID, 0, 0, 2)));
    let err = l.produce(batch(PID, 0, 3, 1)).unwrap_err();
    assert_eq!(
        err,
        ProducerError::OutOfOrderSequence {
            producer_id: PID,
            producer_epoch: 0,
            base_sequence: 3,
            expected_sequence: 2,
        }
    );
    // A batch overlapping the last one without matching it exactly is out of order too.
    assert!(l.produce(batch(PID, 0, 1, 1)).is_err());
    assert_eq!(l.log_end, 2);
}

#[test]
fn older_epoch_is_fenced() {
    let mut l = Leader::new();
    appended(l.produce(batch(PID, 1, 0, 1)));
    appended(l.produce(batch(PID, 2, 0, 1)));
    let err = l.produce(batch(PID, 1, 1, 1)).unwrap_err();
    assert_eq!(
        err,
        ProducerError::ProducerFenced {
            producer_id: PID,
            batch_epoch: 1,
            current_epoch: 2,
        }
    );
    assert_eq!(err.kafka_error_code(), 47);
    // Even an exact retry of a batch of the old epoch: its metadata was cleared by the bump.
    assert!(matches!(
        l.produce(batch(PID, 1, 0, 1)),
        Err(ProducerError::ProducerFenced { .. })
    ));
}

#[test]
fn epoch_bump_restarts_sequence_at_zero() {
    let mut l = Leader::new();
    appended(l.produce(batch(PID, 0, 0, 10)));
    assert_eq!(
        l.produce(batch(PID, 1, 10, 1)),
        Err(ProducerError::OutOfOrderSequence {
            producer_id: PID,
            producer_epoch: 1,
            base_sequence: 10,
            expected_sequence: 0,
        })
    );
    appended(l.produce(batch(PID, 1, 0, 1)));
    let e = l.state.producer(PID).unwrap();
    assert_eq!(e.producer_epoch, 1);
    assert_eq!(e.batches.len(), 1, "the old epoch's batches are forgotten");
    appended(l.produce(batch(PID, 1, 1, 1)));
}

#[test]
fn sequence_wraps_from_i32_max_to_zero() {
    assert_eq!(increment_sequence(i32::MAX, 1), 0);
    assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    let mut l = Leader::new();
    // First batch of an unknown producer at a high sequence: accepted (KIP-360).
    appended(l.produce(batch(PID, 0, i32::MAX - 1, 4)));
    assert_eq!(l.state.producer(PID).unwrap().last_seq(), Some(1));
    assert!(matches!(
        l.produce(batch(PID, 0, i32::MAX - 1, 4)),
        Ok(Check::Duplicate {
            base_offset: 0,
            last_offset: 3,
            ..
        })
    ));
    appended(l.produce(batch(PID, 0, 2, 1)));

    let mut l = Leader::new();
    appended(l.produce(batch(PID, 0, i32::MAX, 1)));
    appended(l.produce(batch(PID, 0, 0, 1)));
}

#[test]
fn unknown_producer_is_accepted_at_any_sequence() {
    let l = Leader::new();
    assert_eq!(l.state.check(&batch(PID, 3, 0, 1)), Ok(Check::Append));
    assert_eq!(l.state.check(&batch(PID, 3, 42, 1)), Ok(Check::Append));
}

#[test]
fn non_idempotent_and_control_batches_are_ignored() {
    let mut l = Leader::new();
    appended(l.produce(batch(-1, -1, -1, 3)));
    appended(l.produce(batch(-1, -1, -1, 3)));
    let mut marker = batch(PID, 0, -1, 1);
    marker.attributes = 0x30; // transactional + control
    appended(l.produce(marker));
    assert!(l.state.is_empty());
    assert_eq!(l.log_end, 7);
}

#[test]
fn truncate_to_drops_batches_at_and_after_the_offset() {
    let mut l = Leader::new();
    appended(l.produce(batch(PID, 0, 0, 2))); // offsets 0..=1
    appended(l.produce(batch(PID + 1, 0, 0, 2))); // 2..=3
    appended(l.produce(batch(PID, 0, 2, 2))); // 4..=5
    appended(l.produce(batch(PID, 0, 4, 2))); // 6..=7

    let mut s = l.state.clone();
    s.truncate_to(5); // cuts into 4..=5: the whole batch goes
    let e = s.producer(PID).unwrap();
    assert_eq!(e.last_seq(), Some(1));
    assert_eq!(e.batches.len(), 1);
    assert!(s.producer(PID + 1).is_some());
    assert_eq!(s.check(&batch(PID, 0, 2, 2)), Ok(Check::Append));

    s.truncate_to(2);
    assert!(s.producer(PID + 1).is_none(), "no batch left: removed");
    assert_eq!(s.len(), 1);
    s.truncate_to(0);
    assert!(s.is_empty());

    // Truncating at the log end changes nothing.
    let mut s = l.state.clone();
    s.truncate_to(8);
    assert_eq!(s, l.state);
}

#[test]
fn producers_expire_after_expiration_ms_without_appends() {
    let mut s = ProducerStateManager::new();
    s.update(&batch(1, 0, 0, 1), 0, 1_000);
    s.update(&batch(2, 0, 0, 1), 1, 5_000);
    assert_eq!(s.remove_expired(10_999, 10_000), Vec::<i64>::new());
    assert_eq!(s.remove_expired(11_000, 10_000), vec![1]);
    assert!(s.producer(1).is_none());
    // An append refreshes the clock.
    s.update(&batch(2, 0, 1, 1), 2, 20_000);
    assert_eq!(s.remove_expired(29_999, 10_000), Vec::<i64>::new());
    assert_eq!(
        s.remove_expired(
            20_000 + DEFAULT_PRODUCER_ID_EXPIRATION_MS,
            DEFAULT_PRODUCER_ID_EXPIRATION_MS
        ),
        vec![2]
    );
    assert!(s.is_empty());
}

fn sample_state() -> Leader {
    let mut l = Leader::new();
    for seq in 0..7 {
        appended(l.produce(batch(PID, 2, seq * 3, 3)));
    }
    appended(l.produce(batch(7, 0, 0, 1)));
    appended(l.produce(batch(i64::MAX, i16::MAX, i32::MAX, 2)));
    l
}

#[test]
fn snapshot_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let l = sample_state();
    l.state.write_snapshot(dir.path(), l.log_end).unwrap();
    assert!(dir.path().join("00000000000000000024.snapshot").exists());
    assert_eq!(list_snapshot_offsets(dir.path()).unwrap(), vec![24]);
    let (offset, loaded) = read_latest_snapshot(dir.path()).unwrap().unwrap();
    assert_eq!(offset, 24);
    assert_eq!(loaded, l.state);
    // All five batches survive, so duplicates are still detected after a restart.
    assert!(matches!(
        loaded.check(&batch(PID, 2, 6, 3)),
        Ok(Check::Duplicate { base_offset: 6, .. })
    ));

    let empty = tempfile::tempdir().unwrap();
    assert_eq!(read_latest_snapshot(empty.path()).unwrap(), None);
    ProducerStateManager::new()
        .write_snapshot(empty.path(), 0)
        .unwrap();
    assert_eq!(
        read_latest_snapshot(empty.path()).unwrap(),
        Some((0, ProducerStateManager::new()))
    );
}

#[test]
fn corrupt_newest_snapshot_falls_back_to_older() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = sample_state();
    let older = l.state.clone();
    l.state.write_snapshot(dir.path(), 10).unwrap();
    appended(l.produce(batch(7, 0, 1, 1)));
    l.state.write_snapshot(dir.path(), 20).unwrap();
    l.state.write_snapshot(dir.path(), 30).unwrap();

    // 30: a flipped body byte (bad CRC); 20: truncated.
    let p30 = snapshot_path(dir.path(), 30);
    let mut bytes = fs::read(&p30).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&p30, bytes).unwrap();
    let p20 = snapshot_path(dir.path(), 20);
    let bytes = fs::read(&p20).unwrap();
    fs::write(&p20, &bytes[..bytes.len() - 3]).unwrap();
    // Not snapshots: ignored.
    fs::write(dir.path().join("00000000000000000040.snapshot.tmp"), b"x").unwrap();
    fs::write(dir.path().join("junk.snapshot"), b"x").unwrap();

    assert_eq!(read_latest_snapshot(dir.path()).unwrap(), Some((10, older)));
    assert!(p30.exists(), "corrupt snapshots are left for inspection");
}

#[test]
fn decode_rejects_bad_version_crc_and_layout() {
    let good = sample_state().state.encode_snapshot();
    assert!(ProducerStateManager::decode_snapshot(&good).is_ok());

    let mut bad_version = good.clone();
    bad_version[1] = 9;
    assert_eq!(
        ProducerStateManager::decode_snapshot(&bad_version),
        Err(CorruptSnapshot::UnknownVersion(9))
    );
    let mut bad_crc = good.clone();
    bad_crc[SNAPSHOT_HEADER_SIZE + 5] ^= 1;
    assert!(matches!(
        ProducerStateManager::decode_snapshot(&bad_crc),
        Err(CorruptSnapshot::CrcMismatch { .. })
    ));
    assert_eq!(
        ProducerStateManager::decode_snapshot(&good[..4]),
        Err(CorruptSnapshot::Truncated)
    );

    // A body with a valid CRC but a bad layout.
    let with_body = |body: &[u8]| {
        let mut out = SNAPSHOT_VERSION.to_be_bytes().to_vec();
        out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
        out.extend_from_slice(body);
        ProducerStateManager::decode_snapshot(&out)
    };
    let mut trailing = good[SNAPSHOT_HEADER_SIZE..].to_vec();
    trailing.push(0);
    assert_eq!(
        with_body(&trailing),
        Err(CorruptSnapshot::Invalid("trailing bytes"))
    );
    assert_eq!(
        with_body(&(-1i32).to_be_bytes()),
        Err(CorruptSnapshot::Invalid("negative producer count"))
    );
    let mut six_batches = 1i32.to_be_bytes().to_vec();
    six_batches.extend_from_slice(&[0; ENTRY_FIXED_SIZE - 1]);
    six_batches.push(6);
    six_batches.extend_from_slice(&[0; 6 * BATCH_SIZE]);
    assert_eq!(
        with_body(&six_batches),
        Err(CorruptSnapshot::Invalid(
            "more than 5 batches for a producer"
        ))
    );
}

#[test]
fn snapshot_retention_helpers_delete_by_offset() {
    let dir = tempfile::tempdir().unwrap();
    let s = ProducerStateManager::new();
    for offset in [5, 10, 15, 20] {
        s.write_snapshot(dir.path(), offset).unwrap();
    }
    assert_eq!(delete_snapshots_after(dir.path(), 15).unwrap(), vec![20]);
    assert_eq!(
        delete_snapshots_older_than(dir.path(), 10).unwrap(),
        vec![5]
    );
    assert_eq!(list_snapshot_offsets(dir.path()).unwrap(), vec![10, 15]);
    assert_eq!(read_latest_snapshot(dir.path()).unwrap().unwrap().0, 15);
    let missing = dir.path().join("nope");
    assert_eq!(list_snapshot_offsets(&missing).unwrap(), Vec::<i64>::new());
}

#[test]
fn replay_of_batch_headers_equals_incremental_state() {
    let mut l = sample_state();
    appended(l.produce(batch(-1, -1, -1, 4)));
    appended(l.produce(batch(7, 1, 0, 2))); // epoch bump
    let mut replayed = ProducerStateManager::new();
    replayed.load_from_batches(l.appended.iter().copied());
    assert_eq!(replayed, l.state);

    // Snapshot in the middle + replay of the rest gives the same state.
    let dir = tempfile::tempdir().unwrap();
    let (head, tail) = l.appended.split_at(4);
    let mut partial = ProducerStateManager::new();
    partial.load_from_batches(head.iter().copied());
    let snapshot_offset = head.last().unwrap().0.next_offset();
    partial.write_snapshot(dir.path(), snapshot_offset).unwrap();
    let (offset, mut recovered) = read_latest_snapshot(dir.path()).unwrap().unwrap();
    assert_eq!(offset, snapshot_offset);
    recovered.load_from_batches(tail.iter().copied());
    assert_eq!(recovered, l.state);
}
