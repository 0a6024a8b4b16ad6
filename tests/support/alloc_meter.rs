//! A counting global allocator: the heap bytes live right now and their high-water mark since
//! the last [`reset_peak`], over every thread of the process.
//!
//! Included with `#[path]` by `tests/memory.rs` and `benches/memory.rs` (and by nothing else:
//! it installs itself as the `#[global_allocator]` of the binary that includes it).
//!
//! What it counts: the sizes requested from the allocator (`Layout::size`), not the allocator's
//! own rounding or bookkeeping. A `realloc` counts as the change in size (old block released,
//! new block taken at the same instant), as dhat does: growing a 8 MiB `Vec` to 16 MiB moves the
//! count from 8 to 16 MiB, not to 24 MiB for the copy a `realloc` may or may not need.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counted.
pub struct Meter;

#[global_allocator]
static METER: Meter = Meter;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn taken(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn released(bytes: usize) {
    CURRENT.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and only
// updates two counters on the side.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            taken(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            taken(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        released(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                taken(new_size - layout.size());
            } else {
                released(layout.size() - new_size);
            }
        }
        new
    }
}

/// Heap bytes live now.
pub fn current() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// The most heap bytes live at any instant since the last [`reset_peak`].
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Starts a new measurement: the peak becomes the bytes live now, which are returned (the
/// base to subtract from a later [`peak`]).
pub fn reset_peak() -> usize {
    let now = current();
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// Runs `f` and returns its result with the heap it added at its peak and the heap it left
/// allocated, both relative to the bytes live when it started.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Added) {
    let base = reset_peak();
    let value = f();
    let added = Added {
        peak: peak().saturating_sub(base),
        retained: current().saturating_sub(base),
    };
    (value, added)
}

/// Heap added by a measured piece of work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Added {
    /// The most bytes live at once beyond the start's.
    pub peak: usize,
    /// Bytes still live at the end beyond the start's.
    pub retained: usize,
}
