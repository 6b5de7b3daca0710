//! The WAL's record walk and acknowledgement reader on any segment bytes:
//! never panics; records found lie inside the data, back to back.
#![no_main]

use exporters::engine::wal::record::{acks, walk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (found, torn) = walk(data, 0);
    let mut next = 0;
    for r in &found {
        assert_eq!(r.offset, next);
        next = r.offset + r.len;
        assert!(next <= data.len());
    }
    assert_eq!(torn.unwrap_or(data.len()), next);
    let _ = acks(data);
});
