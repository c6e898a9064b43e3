//! Any bytes: splitting and validating record batches, and decoding the records of those
//! that validate, never panics. Random bytes almost never carry a correct CRC-32C, so each
//! input is also tried with its length, magic and CRC fixed up, which lets the fuzzer reach
//! the record-structure checks and the record decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary::log::batch;

fn check(data: &[u8]) {
    if let Ok(batches) = batch::split_batches(data) {
        for (start, header) in batches {
            let end = start + header.total_size();
            if batch::validate_batch(&data[start..end]).is_ok() {
                let _ = batch::decode_records(&data[start..end]);
            }
        }
    }
    if batch::validate_batch(data).is_ok() {
        let _ = batch::decode_records(data);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= 61 {
        let mut fixed = data.to_vec();
        let batch_length = (fixed.len() - 12) as i32;
        fixed[8..12].copy_from_slice(&batch_length.to_be_bytes());
        fixed[16] = 2;
        let crc = crc32c::crc32c(&fixed[21..]);
        fixed[17..21].copy_from_slice(&crc.to_be_bytes());
        check(&fixed);
    }
});
