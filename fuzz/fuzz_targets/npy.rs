//! Fuzz target: arbitrary bytes through the runtime's .npy reader (the reader compiled
//! executables use for their inputs). Any error is fine; a panic, abort, hang or allocation
//! beyond the limit is a bug. An accepted array must hold exactly the elements its shape
//! names and survive a write/read round trip unchanged.

#![no_main]

use dync_runtime::npy::{read_npy_bytes, write_npy_bytes};
use libfuzzer_sys::fuzz_target;

/// Largest array the target accepts (bytes of data), far below libFuzzer's RSS limit.
const MAX_BYTES: u64 = 1 << 24;

fuzz_target!(|data: &[u8]| {
    let Ok(arr) = read_npy_bytes(data, MAX_BYTES) else {
        return;
    };
    // numpy allows huge dims next to a zero one (the array is empty).
    let elems = if arr.shape.contains(&0) {
        Some(0)
    } else {
        arr.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    };
    assert_eq!(
        elems,
        Some(arr.len()),
        "shape {:?} vs data length",
        arr.shape
    );
    let bytes = write_npy_bytes(&arr).expect("an array read back is writable");
    let again = read_npy_bytes(&bytes, MAX_BYTES).expect("a written array reads back");
    assert_eq!(again.shape, arr.shape);
    assert_eq!(again.dtype(), arr.dtype());
    assert_eq!(again.len(), arr.len());
    // Bitwise equality of the data (NaN payloads included): re-encoding gives the same bytes.
    assert_eq!(write_npy_bytes(&again).expect("writable"), bytes);
});
