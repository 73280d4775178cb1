//! The loop thread's doorbell: a file descriptor the event loop watches with `add_reader`.
//!
//! Linux uses an eventfd (one fd, a counter); other platforms a non-blocking pipe. Either way
//! `ring()` may be called from any thread and `clear()` only from the loop thread.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct Doorbell {
    read: OwnedFd,
    /// Same fd as `read` for an eventfd.
    write: Option<OwnedFd>,
}

impl Doorbell {
    #[cfg(target_os = "linux")]
    pub fn new() -> io::Result<Doorbell> {
        // SAFETY: eventfd has no memory preconditions; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        let read = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Doorbell { read, write: None })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn new() -> io::Result<Doorbell> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe() to fill.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        for fd in fds {
            // SAFETY: both fds were just created by pipe() and are valid.
            unsafe {
                libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        // SAFETY: both fds come from pipe() and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Doorbell {
            read,
            write: Some(write),
        })
    }

    pub fn fileno(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Makes the fd readable. A full pipe or a saturated counter already means "readable",
    /// so errors are ignored.
    pub fn ring(&self) {
        let fd = self.write.as_ref().unwrap_or(&self.read).as_raw_fd();
        let one: u64 = 1;
        let len = if self.write.is_some() { 1 } else { 8 };
        // SAFETY: writes `len` (<= 8) bytes from a live u64 to an fd this struct owns.
        unsafe {
            libc::write(fd, (&one as *const u64).cast(), len);
        }
    }

    /// Makes the fd unreadable again.
    pub fn clear(&self) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads at most 64 bytes into a live 64-byte buffer from an owned fd.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 || self.write.is_none() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn ring_then_clear() {
        let d = Doorbell::new().unwrap();
        assert!(!readable(d.fileno()));
        d.ring();
        d.ring();
        assert!(readable(d.fileno()));
        d.clear();
        assert!(!readable(d.fileno()));
    }
}
