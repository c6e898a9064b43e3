//! Any bytes: splitting and validating record batches, and decoding the records of those
//! that validate, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary::log::batch;

fuzz_target!(|data: &[u8]| {
    if let Ok(batches) = batch::split_batches(data) {
        for (start, header) in batches {
            let end = start + header.total_size();
            if let Ok(_header) = batch::validate_batch(&data[start..end]) {
                let _ = batch::decode_records(&data[start..end]);
            }
        }
    }
    let _ = batch::validate_batch(data);
});
