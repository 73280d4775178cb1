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

/// A one-shot timer whose fd becomes readable when it fires (Linux: a timerfd). Used by the
/// local engine to turn when held stream chunks are due; elsewhere there is none and chunks
/// are never held.
pub struct Alarm {
    fd: OwnedFd,
}

impl Alarm {
    #[cfg(target_os = "linux")]
    pub fn new() -> Option<Alarm> {
        // SAFETY: timerfd_create takes no pointers; the result is checked before use.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        // SAFETY: `fd` was just returned by timerfd_create and is owned by nobody else.
        (fd >= 0).then(|| Alarm {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn new() -> Option<Alarm> {
        None
    }

    pub fn fileno(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Fires once, `after` from now (replacing any earlier setting).
    #[cfg(target_os = "linux")]
    pub fn set(&self, after: std::time::Duration) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                // A zero value would disarm the timer instead.
                tv_nsec: after.subsec_nanos().max(1) as libc::c_long,
            },
        };
        // SAFETY: a valid itimerspec for an fd this struct owns; the old value is not asked.
        unsafe {
            libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut());
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn set(&self, _after: std::time::Duration) {}

    /// Stops a pending alarm and makes the fd unreadable if it already fired.
    #[cfg(target_os = "linux")]
    pub fn disarm(&self) {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let spec = libc::itimerspec {
            it_interval: zero,
            it_value: zero,
        };
        let mut expirations = [0u8; 8];
        // SAFETY: a valid itimerspec for an fd this struct owns, then a read of at most 8
        // bytes into a live 8-byte buffer.
        unsafe {
            libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut());
            libc::read(
                self.fd.as_raw_fd(),
                expirations.as_mut_ptr().cast(),
                expirations.len(),
            );
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn disarm(&self) {}
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

    #[cfg(target_os = "linux")]
    #[test]
    fn alarm_fires_once_and_disarms() {
        let a = Alarm::new().unwrap();
        assert!(!readable(a.fileno()));
        a.set(std::time::Duration::from_micros(200));
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(readable(a.fileno()));
        a.disarm();
        assert!(!readable(a.fileno()));
        // Disarmed before it fires: it never does.
        a.set(std::time::Duration::from_micros(200));
        a.disarm();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(!readable(a.fileno()));
    }
}
