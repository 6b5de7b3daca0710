//! Logs and metrics intake validation on any bytes: never panics, and an
//! accepted request decodes again and counts the same items.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::{Batch, Request, Signal};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let signal = if which & 1 == 0 { Signal::Logs } else { Signal::Metrics };
    if let Ok(r) = Request::parse(signal, bytes::Bytes::copy_from_slice(body)) {
        let items = r.items;
        let b = Batch::new(signal, r);
        let d = match signal {
            Signal::Logs => b.decode_logs_each().skipped_items,
            _ => b.decode_metrics_each().skipped_items,
        };
        assert_eq!(d, 0, "accepted request failed to decode ({items} items)");
    }
});
