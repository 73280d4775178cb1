//! The metrics of all workers in one place: a shared file mapping with one `MetricsBlock`
//! slot per worker, created by the supervisor and mapped by each worker (`FERRICORN_METRICS_
//! FILE`, `FERRICORN_METRICS_SLOT`). The supervisor sums the slots when scraped and, when a
//! worker goes, folds its counters into a `retired` block before the slot is reused, so
//! totals never go backwards.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{render, MetricsBlock};

pub const SLOTS: usize = 64;

pub struct SharedMetrics {
    path: PathBuf,
    base: *mut MetricsBlock,
    retired: &'static MetricsBlock,
    owner: [Option<usize>; SLOTS],
    listener: TcpListener,
}

/// Maps `slots` blocks of the file at `path` (created and sized by the caller or here).
pub fn map_file(path: &Path, create: bool) -> io::Result<*mut MetricsBlock> {
    let size = SLOTS * std::mem::size_of::<MetricsBlock>();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .open(path)?;
    if create {
        file.set_len(size as u64)?;
    }
    // SAFETY: maps `size` bytes of a file we just opened read-write and sized; the mapping
    // outlives the file handle, is page-aligned (enough for the atomics) and zero-filled.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr.cast())
}

/// A worker's own block in the shared file.
pub fn worker_block(path: &Path, slot: usize) -> io::Result<&'static MetricsBlock> {
    if slot >= SLOTS {
        return Err(io::Error::other("metrics slot out of range"));
    }
    let base = map_file(path, false)?;
    // SAFETY: `base` maps SLOTS zero-initialised (or previously written) blocks of atomics;
    // the mapping is never unmapped, so the reference is valid for the process's life.
    Ok(unsafe { &*base.add(slot) })
}

impl SharedMetrics {
    pub fn new(listener: TcpListener) -> io::Result<SharedMetrics> {
        let dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!("ferricorn-metrics-{}", std::process::id()));
        let base = map_file(&path, true)?;
        listener.set_nonblocking(true)?;
        Ok(SharedMetrics {
            path,
            base,
            retired: MetricsBlock::leaked(),
            owner: [None; SLOTS],
            listener,
        })
    }

    fn block(&self, slot: usize) -> &MetricsBlock {
        // SAFETY: slot < SLOTS, within the live mapping made in `new`.
        unsafe { &*self.base.add(slot) }
    }

    pub fn listener_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// A free slot for a new worker, cleared; environment variables that hand it over.
    pub fn assign(&mut self, worker: usize) -> Option<Vec<(String, String)>> {
        let slot = self.owner.iter().position(Option::is_none)?;
        self.owner[slot] = Some(worker);
        self.block(slot).clear();
        Some(vec![
            (
                "FERRICORN_METRICS_FILE".into(),
                self.path.display().to_string(),
            ),
            ("FERRICORN_METRICS_SLOT".into(), slot.to_string()),
        ])
    }

    /// The worker is gone: keep its counters, free its slot.
    pub fn release(&mut self, worker: usize) {
        if let Some(slot) = self.owner.iter().position(|o| *o == Some(worker)) {
            self.retired.absorb_counters(self.block(slot));
            self.block(slot).clear();
            self.owner[slot] = None;
        }
    }

    /// Answers pending scrapes (a minimal HTTP/1.0 exchange per connection).
    pub fn serve(&self, pids: &[u32]) {
        while let Ok((mut conn, _)) = self.listener.accept() {
            let _ = conn.set_nonblocking(false);
            let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = conn.set_write_timeout(Some(Duration::from_millis(500)));
            let mut head = [0u8; 1024];
            let n = conn.read(&mut head).unwrap_or(0);
            let wanted = head[..n].starts_with(b"GET /metrics");
            let (status, body) = if wanted {
                let mut blocks: Vec<&MetricsBlock> = vec![self.retired];
                blocks.extend((0..SLOTS).map(|s| self.block(s)));
                ("200 OK", render(&blocks, pids))
            } else {
                (
                    "404 Not Found",
                    "Not Found: metrics are at /metrics\n".to_string(),
                )
            };
            let _ = write!(
                conn,
                "HTTP/1.0 {status}\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    }
}

impl Drop for SharedMetrics {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
