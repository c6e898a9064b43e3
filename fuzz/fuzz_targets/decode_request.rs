//! Any frame body: `decode_request` returns a request, an immediate answer or an error,
//! and never panics, aborts or allocates without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tributary::kafka::decode_request(bytes::Bytes::copy_from_slice(data));
});
