//! The `dync` binary's global allocator: the system allocator, asking for transparent huge
//! pages (`madvise(MADV_HUGEPAGE)`) for large blocks.
//!
//! A compile moves a model's weights through several large buffers (the file's bytes, the
//! decoded tensors, the passes' results, the packed weights blob). With 4 KiB pages, the first
//! touch of each costs a page fault per 4 KiB — about 45 000 per copy of dy-resnet50's 175 MB,
//! a third of its compile's CPU time; with 2 MiB pages, one per 2 MiB. On systems whose THP mode
//! is `madvise` (the kernel's default), huge pages are only used where requested; in mode
//! `always` the request changes nothing, and in mode `never` (or without THP) it is ignored.
//!
//! Only blocks of at least [`MIN_BYTES`] are advised, each its 2 MiB-aligned interior (whole
//! huge pages inside the block, so no other allocation's memory changes). The advice changes
//! how pages are backed, never their contents; its errors are ignored (it is a hint).

use std::alloc::{GlobalAlloc, Layout, System};

/// The huge page size the interior is aligned to (x86-64 and 4 KiB-page aarch64).
const HUGE: usize = 2 << 20;
/// Blocks of at least this many bytes are advised (smaller ones hold no huge page).
const MIN_BYTES: usize = HUGE;

pub struct HugePageAlloc;

#[global_allocator]
static GLOBAL: HugePageAlloc = HugePageAlloc;

/// Asks for huge pages in the 2 MiB-aligned interior of the `len` bytes at `p`.
fn advise(p: *mut u8, len: usize) {
    if p.is_null() || len < MIN_BYTES {
        return;
    }
    let start = p.addr();
    let Some(end) = start.checked_add(len) else {
        return;
    };
    let lo = start.next_multiple_of(HUGE);
    let hi = end - end % HUGE;
    if hi > lo {
        // SAFETY: [lo, hi) lies inside the block just allocated; MADV_HUGEPAGE changes how its
        // pages are backed, not their contents, and touches no memory.
        unsafe {
            libc::madvise(p.with_addr(lo).cast(), hi - lo, libc::MADV_HUGEPAGE);
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments and returns its result;
// `advise` only gives a hint about the returned block.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        advise(p, new_size);
        p
    }
}
