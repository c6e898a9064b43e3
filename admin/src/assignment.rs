//! The consumer protocol's assignment bytes (`ConsumerProtocolAssignment`), which
//! DescribeGroups returns opaque in each member's `member_assignment`.
//!
//! ```text
//! version: i16
//! assigned_partitions: i32 count, then per topic: topic (i16 length + UTF-8),
//!                      partitions (i32 count + i32 each)
//! user_data: i32 length + bytes (ignored; -1 for null)
//! ```
//!
//! Every version so far starts with these fields and is not flexible, so one decoder
//! reads them all.

use crate::TopicPartition;

/// The partitions of a consumer protocol assignment, sorted. `None` for bytes that do not
/// parse; empty bytes are an empty assignment (a member that joined but was not assigned
/// yet).
pub fn decode_assignment(bytes: &[u8]) -> Option<Vec<TopicPartition>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader(bytes);
    let _version = r.i16()?;
    let topics = r.i32()?;
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let len = r.i16()?;
        let name = std::str::from_utf8(r.take(usize::try_from(len).ok()?)?).ok()?;
        let n = r.i32()?;
        for _ in 0..n.max(0) {
            // Each partition reads 4 bytes, so a bogus count runs out of input before it
            // can make `out` large.
            out.push(TopicPartition::new(name, r.i32()?));
        }
    }
    out.sort();
    Some(out)
}

/// Big-endian reads from a byte slice; `None` past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(version: i16, topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&version.to_be_bytes());
        b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for (topic, partitions) in topics {
            b.extend_from_slice(&(topic.len() as i16).to_be_bytes());
            b.extend_from_slice(topic.as_bytes());
            b.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                b.extend_from_slice(&p.to_be_bytes());
            }
        }
        b.extend_from_slice(&(-1i32).to_be_bytes()); // null user data
        b
    }

    #[test]
    fn consumer_assignment_decodes_sorted() {
        let b = assignment(1, &[("ord", &[5, 1]), ("audit", &[0])]);
        assert_eq!(
            decode_assignment(&b),
            Some(vec![
                TopicPartition::new("audit", 0),
                TopicPartition::new("ord", 1),
                TopicPartition::new("ord", 5),
            ])
        );
        // Version 3 (KIP-792 adds no field to the assignment) reads the same.
        assert_eq!(
            decode_assignment(&assignment(3, &[("t", &[0])])).map(|a| a.len()),
            Some(1)
        );
    }

    #[test]
    fn empty_bytes_are_an_empty_assignment_and_truncated_bytes_none() {
        assert_eq!(decode_assignment(&[]), Some(vec![]));
        let b = assignment(1, &[("ord", &[5, 1])]);
        assert_eq!(decode_assignment(&b[..7]), None);
        assert_eq!(decode_assignment(&b[..b.len() - 8]), None);
        // A count of two billion partitions with no bytes behind it.
        let mut bogus = assignment(0, &[("t", &[])]);
        bogus.truncate(2 + 4 + 2 + 1);
        bogus.extend_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_assignment(&bogus), None);
    }
}
