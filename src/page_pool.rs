//! The process's Rust allocator: the system allocator, except for blocks of exactly
//! [`BLOCK`] bytes, which come page-aligned from a pool of their own.
//!
//! Why: every open HTTP/1.1 connection holds hyper's read and write buffers, 8 KiB each,
//! and a streaming response writes only the first few hundred bytes of either. From glibc
//! each buffer sits between other chunks whose boundary tags and contents touch the pages
//! around it, so its unwritten pages count in the resident set anyway. Page-aligned and
//! apart, a buffer costs only the pages actually written.
//!
//! Must not: allocate (it is the allocator), write into a block it hands out or takes back
//! (that would bring the block's pages in), or serve any other size. Given-back blocks are
//! kept for the next connection, as glibc keeps its free chunks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The size of hyper's buffers (`INIT_BUFFER_SIZE`, the read strategy's first size).
pub const BLOCK: usize = 8192;
const PAGE: usize = 4096;
/// Blocks mapped at a time when the pool is empty: 2 MiB.
const BLOCKS_PER_MAP: usize = 256;

/// The global allocator; its pool is [`POOL`], one per process.
pub struct PagePoolAllocator;

struct Locked {
    locked: AtomicBool,
    pool: UnsafeCell<Pool>,
    /// `pool.free_len` as last written under the lock, for `give` to read before it takes
    /// the lock (a hint: it only decides whether a block's pages go back).
    idle: AtomicUsize,
}

static POOL: Locked = Locked::new();

/// Where blocks come from: those given back first (most recent first, their pages already
/// in memory), then the untouched rest of the last mapping.
struct Pool {
    /// A stack of given-back blocks, in a mapping of its own: a link written into a free
    /// block would bring in a page of it that may never be written otherwise (a connection's
    /// second read buffer usually is not).
    free: *mut *mut u8,
    free_len: usize,
    /// The next never-used block and the end of its mapping.
    fresh: *mut u8,
    fresh_end: *mut u8,
}

// SAFETY: `pool` is only read or written while `locked` is held (see `with_pool`).
unsafe impl Sync for Locked {}

/// A child of `fork()` has one thread: if another held the lock at the fork, nobody will
/// release it there.
extern "C" fn unlock_in_child() {
    POOL.locked.store(false, Ordering::Release);
}

/// Registers [`unlock_in_child`]; called once, when the module is loaded.
pub fn register_fork_handler() {
    // SAFETY: the handler is a plain function with no preconditions.
    unsafe { libc::pthread_atfork(None, None, Some(unlock_in_child)) };
}

impl Locked {
    const fn new() -> Self {
        Locked {
            locked: AtomicBool::new(false),
            idle: AtomicUsize::new(0),
            pool: UnsafeCell::new(Pool {
                free: ptr::null_mut(),
                free_len: 0,
                fresh: ptr::null_mut(),
                fresh_end: ptr::null_mut(),
            }),
        }
    }

    fn with_pool<R>(&self, f: impl FnOnce(&mut Pool) -> R) -> R {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: the flag above gives this thread sole access until it is cleared below.
        let result = f(unsafe { &mut *self.pool.get() });
        self.locked.store(false, Ordering::Release);
        result
    }

    fn take(&self) -> *mut u8 {
        self.with_pool(|pool| {
            if pool.free_len > 0 {
                pool.free_len -= 1;
                self.idle.store(pool.free_len, Ordering::Relaxed);
                // SAFETY: entries below `free_len` were written by `give`.
                return unsafe { pool.free.add(pool.free_len).read() };
            }
            if pool.fresh == pool.fresh_end {
                let run = map(BLOCK * BLOCKS_PER_MAP);
                if run.is_null() {
                    return ptr::null_mut();
                }
                pool.fresh = run;
                // SAFETY: the end of the mapping just made.
                pool.fresh_end = unsafe { run.add(BLOCK * BLOCKS_PER_MAP) };
            }
            let block = pool.fresh;
            // SAFETY: `fresh` is below `fresh_end`, which is a whole number of blocks away.
            pool.fresh = unsafe { block.add(BLOCK) };
            block
        })
    }

    fn give(&self, block: *mut u8) {
        // Beyond a few MiB of idle buffers (after thousands of connections closed), each
        // one given back also gives its pages back, as glibc trims its heap: the block stays
        // ours, and reads as zeros when it is next written. Done before the block is on the
        // free list, where another thread could take it and write into it at once.
        if self.idle.load(Ordering::Relaxed) >= KEEP_RESIDENT {
            // SAFETY: a whole block of one of our mappings, no longer in use by anyone.
            unsafe { libc::madvise(block.cast(), BLOCK, libc::MADV_DONTNEED) };
        }
        let kept = self.with_pool(|pool| {
            if pool.free.is_null() {
                pool.free = map(FREE_STACK_SLOTS * size_of::<*mut u8>()).cast();
            }
            if pool.free.is_null() || pool.free_len == FREE_STACK_SLOTS {
                return false;
            }
            // SAFETY: `free_len` is below the stack's slot count.
            unsafe { pool.free.add(pool.free_len).write(block) };
            pool.free_len += 1;
            self.idle.store(pool.free_len, Ordering::Relaxed);
            true
        });
        if !kept {
            // More blocks given back than the stack holds (64 GiB of them).
            // SAFETY: a whole block of one of our mappings, no longer in use by anyone.
            unsafe { libc::munmap(block.cast(), BLOCK) };
        }
    }
}

/// Given-back blocks kept in memory as they are, for the connections to come (4 MiB).
const KEEP_RESIDENT: usize = 512;

/// Given-back blocks the free stack can hold (its mapping is reserved, not touched, up
/// front): 64 GiB of buffers.
const FREE_STACK_SLOTS: usize = 8 << 20;

/// An anonymous mapping of `len` bytes, untouched; null if the system refuses it.
fn map(len: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        base.cast()
    }
}

fn pooled(layout: Layout) -> bool {
    layout.size() == BLOCK && layout.align() <= PAGE
}

// SAFETY: pooled blocks are BLOCK bytes, page-aligned (so any alignment up to a page holds),
// each handed out once until it is given back; every other layout goes to `System` as is.
unsafe impl GlobalAlloc for PagePoolAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if pooled(layout) {
            POOL.take()
        } else {
            // SAFETY: the caller's contract for `alloc`, passed on.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if pooled(layout) {
            POOL.give(block)
        } else {
            // SAFETY: `block` came from `System.alloc` with this layout (not pooled).
            unsafe { System.dealloc(block, layout) }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align(new_size, layout.align());
        match new_layout {
            Ok(new_layout) if !pooled(layout) && !pooled(new_layout) => {
                // SAFETY: both sides are the system allocator's; the caller's contract holds.
                unsafe { System.realloc(block, layout, new_size) }
            }
            Ok(new_layout) => {
                // SAFETY: a fresh block of the new layout, then the old one's bytes copied
                // and the old one released, as `GlobalAlloc::realloc` describes.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
            Err(_) => ptr::null_mut(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_page_aligned_distinct_and_reused_latest_first() {
        let pool = Locked::new();
        let (a, b) = (pool.take(), pool.take());
        assert!(!a.is_null() && !b.is_null());
        assert_ne!(a, b);
        assert_eq!(a as usize % PAGE, 0);
        assert_eq!(b as usize % PAGE, 0);
        unsafe {
            a.write_bytes(0xAB, BLOCK);
            b.write_bytes(0xCD, BLOCK);
            assert_eq!(*a.add(BLOCK - 1), 0xAB);
            assert_eq!(*b, 0xCD);
        }
        pool.give(a);
        pool.give(b);
        assert_eq!(pool.take(), b);
        assert_eq!(pool.take(), a);
    }

    #[test]
    fn a_mapping_runs_out_and_another_follows() {
        let pool = Locked::new();
        let blocks: Vec<_> = (0..BLOCKS_PER_MAP + 1).map(|_| pool.take()).collect();
        assert!(blocks
            .iter()
            .all(|b| !b.is_null() && *b as usize % PAGE == 0));
        let mut sorted = blocks.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), blocks.len());
    }

    #[test]
    fn blocks_given_back_past_the_resident_few_read_as_zeros() {
        let pool = Locked::new();
        let blocks: Vec<_> = (0..KEEP_RESIDENT + 2).map(|_| pool.take()).collect();
        for &b in &blocks {
            unsafe { b.write_bytes(0xEE, BLOCK) };
            pool.give(b);
        }
        // The last two were given back with KEEP_RESIDENT blocks idle already.
        let last = pool.take();
        assert_eq!(last, *blocks.last().unwrap());
        assert!((0..BLOCK).all(|i| unsafe { *last.add(i) } == 0));
        // One of the resident few keeps its bytes.
        let resident = blocks[KEEP_RESIDENT - 1];
        assert_eq!(unsafe { *resident }, 0xEE);
    }

    #[test]
    fn other_sizes_and_growth_into_and_out_of_the_pool_keep_their_bytes() {
        let alloc = PagePoolAllocator;
        let small = Layout::from_size_align(100, 8).unwrap();
        unsafe {
            let p = alloc.alloc(small);
            p.write_bytes(7, 100);
            let grown = alloc.realloc(p, small, BLOCK);
            assert_eq!(grown as usize % PAGE, 0);
            assert!((0..100).all(|i| *grown.add(i) == 7));
            let big = alloc.realloc(grown, Layout::from_size_align(BLOCK, 8).unwrap(), 3 * BLOCK);
            assert!((0..100).all(|i| *big.add(i) == 7));
            alloc.dealloc(big, Layout::from_size_align(3 * BLOCK, 8).unwrap());
        }
    }
}
