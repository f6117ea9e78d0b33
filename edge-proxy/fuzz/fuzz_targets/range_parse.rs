//! The edge's `Range` evaluation (edge-proxy/src/policy/ranges.rs, included by path so the fuzz
//! build does not need the S3/HTTP runtime): no panic, no out-of-bounds or amplifying answer.
#![no_main]

#[path = "../../src/policy/ranges.rs"]
#[allow(dead_code)]
mod ranges;

use libfuzzer_sys::fuzz_target;
use ranges::{evaluate, RangeOutcome};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (len_bytes, header) = data.split_at(8);
    let mut len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    // Mostly small bodies (where the edge cases are), sometimes huge.
    if len_bytes[7] & 0x80 == 0 {
        len %= 4096;
    }
    match evaluate(Some(header), len) {
        RangeOutcome::Full | RangeOutcome::Unsatisfiable => {}
        RangeOutcome::Partial { start, end } => {
            assert!(start <= end, "{start} > {end}");
            assert!(end < len, "end {end} beyond len {len}");
        }
    }
    assert_eq!(evaluate(None, len), RangeOutcome::Full);
});
