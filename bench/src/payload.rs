//! Message payloads: pseudo-random bytes, so that compression codecs (when asked for)
//! and compressing filesystems see realistic, not trivially compressible, data.
//!
//! One buffer is filled once; each message is a window into it at a varying offset,
//! so producing costs no allocation or copy on our side beyond librdkafka's own.

/// Span of distinct window offsets, so consecutive messages differ.
const OFFSETS: usize = 4096;

/// Fills `buf` from a xorshift64 generator seeded with `seed` (never zero).
pub fn fill_pseudo_random(buf: &mut [u8], seed: u64) {
    let mut state = seed | 1;
    for chunk in buf.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// The payload source for one produce run.
pub struct Payloads {
    buf: Vec<u8>,
    message_bytes: usize,
}

impl Payloads {
    pub fn new(message_bytes: usize) -> Self {
        let mut buf = vec![0u8; message_bytes + OFFSETS];
        fill_pseudo_random(&mut buf, 0x7269_6275_7461_7279);
        Self { buf, message_bytes }
    }

    /// The payload of message number `index`: always `message_bytes` long.
    pub fn get(&self, index: u64) -> &[u8] {
        // 7919 is prime, so the offsets cycle through all of 0..OFFSETS.
        let start = (index.wrapping_mul(7919) % OFFSETS as u64) as usize;
        &self.buf[start..start + self.message_bytes]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_requested_size_and_vary() {
        let payloads = Payloads::new(100);
        assert_eq!(payloads.get(0).len(), 100);
        assert_eq!(payloads.get(u64::MAX).len(), 100);
        assert_ne!(payloads.get(0), payloads.get(1));
    }

    #[test]
    fn fill_handles_lengths_that_are_not_a_multiple_of_eight() {
        let mut buf = [0u8; 13];
        fill_pseudo_random(&mut buf, 1);
        assert!(buf.iter().any(|&b| b != 0));
    }
}
