//! The process's allocator: mimalloc for everything but the few big
//! buffers, which go to the system allocator and back to the kernel the
//! moment they are freed.
//!
//! Sessions allocate and free dozens of small objects, often on different
//! worker threads, where glibc's malloc spent a tenth of the server's CPU
//! (arena locks, consolidation); mimalloc's thread-local free lists are
//! cheaper. mimalloc keeps freed pages for a while before giving them
//! back, which a busy server wants (a message's buffers are reused within
//! microseconds; giving them back at once cost about an eighth of the CPU
//! per message in page faults and `madvise`). But it gives them back only
//! when some thread allocates again, and the biggest buffers of all, an
//! argon2id verification's 19 MiB, are freed on a blocking-pool thread
//! that may never allocate again: an idle server would hold them.
//!
//! So an allocation of [`BIG`] or more is the system allocator's, which
//! maps it on its own (`tune_allocator` in `serve.rs` fixes glibc's
//! threshold, which otherwise grows after such a free) and unmaps it when
//! it is freed. Which allocator a block belongs to follows from its size
//! alone: Rust hands `dealloc` and `realloc` the layout the block was
//! allocated with.
//!
//! The `mimalloc` crate asks for every block through `mi_malloc_aligned`,
//! which checks the alignment and looks for a block that happens to fit it
//! on every call. Nearly every Rust allocation asks for no more than
//! mimalloc's natural alignment (a word), so those go to `mi_malloc` and
//! `mi_realloc` directly, as the standard library's own `System` does with
//! `malloc` (measured: about 45 allocations per message, 1.5k
//! instructions fewer per message).

use std::alloc::{GlobalAlloc, Layout, System};

use libmimalloc_sys::{mi_malloc, mi_realloc, mi_zalloc};
use mimalloc::MiMalloc;

/// Blocks this big or bigger are the system allocator's.
pub const BIG: usize = 1 << 20;

pub struct Allocator;

fn big(size: usize) -> bool {
    size >= BIG
}

/// Every mimalloc block is a whole number of words from a word-aligned
/// start, so a word is the alignment `mi_malloc` always gives. (Sixteen
/// bytes is not: blocks of the 8-byte class sit 8 bytes apart.)
const NATURAL_ALIGN: usize = std::mem::size_of::<usize>();

fn natural(align: usize) -> bool {
    align <= NATURAL_ALIGN
}

#[allow(unsafe_code)] // the GlobalAlloc contract, passed on unchanged
                      // SAFETY: every call is forwarded to one of two allocators with the
                      // caller's arguments, and a block is always freed or resized by the one
                      // that allocated it (chosen by its size, which the caller passes back
                      // unchanged); a block that changes sides in `realloc` is copied into a
                      // fresh one from the other allocator and the old one freed by its own.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if big(layout.size()) {
            unsafe { System.alloc(layout) }
        } else if natural(layout.align()) {
            unsafe { mi_malloc(layout.size()).cast() }
        } else {
            unsafe { MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if big(layout.size()) {
            unsafe { System.alloc_zeroed(layout) }
        } else if natural(layout.align()) {
            unsafe { mi_zalloc(layout.size()).cast() }
        } else {
            unsafe { MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if big(layout.size()) {
            unsafe { System.dealloc(ptr, layout) }
        } else {
            unsafe { MiMalloc.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (big(layout.size()), big(new_size)) {
            (false, false) if natural(layout.align()) => unsafe {
                mi_realloc(ptr.cast(), new_size).cast()
            },
            (false, false) => unsafe { MiMalloc.realloc(ptr, layout, new_size) },
            (true, true) => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: the caller guarantees `new_size`, rounded up to
                // the alignment, does not overflow (GlobalAlloc::realloc).
                let new_layout =
                    unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    // SAFETY: both blocks are valid for the smaller size
                    // and distinct (the new one was just allocated).
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)] // driving the allocator by hand
    fn every_block_has_the_alignment_it_asked_for() {
        let a = Allocator;
        let mut blocks = Vec::new();
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in (1..=300).chain([1000, 4096, 70_000, BIG + 1]) {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero layout; each block is freed below with
                // the layout it has then.
                unsafe {
                    let p = a.alloc(layout);
                    assert_eq!(p as usize % align, 0, "alloc {size} aligned {align}");
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "zeroed {size} aligned {align}");
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    let grown = size * 3 + 5;
                    let q = a.realloc(p, layout, grown);
                    assert_eq!(q as usize % align, 0, "realloc {size} aligned {align}");
                    blocks.push((q, Layout::from_size_align(grown, align).unwrap()));
                    blocks.push((z, layout));
                }
            }
        }
        for (p, layout) in blocks {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { a.dealloc(p, layout) };
        }
    }

    #[test]
    #[allow(unsafe_code)] // driving the allocator by hand
    fn blocks_cross_between_the_allocators_with_their_bytes() {
        let a = Allocator;
        for (from, to) in [
            (100, BIG + 100),
            (BIG + 100, 100),
            (BIG, BIG * 2),
            (64, 4096),
        ] {
            let layout = Layout::from_size_align(from, 16).unwrap();
            // SAFETY: a non-zero layout; the block is written within its
            // size, resized, read within the smaller size, and freed with
            // its final layout.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                for i in 0..from.min(to) {
                    *p.add(i) = (i % 251) as u8;
                }
                let q = a.realloc(p, layout, to);
                assert!(!q.is_null());
                for i in 0..from.min(to) {
                    assert_eq!(*q.add(i), (i % 251) as u8, "{from} -> {to} at {i}");
                }
                a.dealloc(q, Layout::from_size_align(to, 16).unwrap());
            }
        }
    }
}
