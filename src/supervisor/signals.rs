//! The supervisor's signals, taken synchronously: blocked for the supervising thread (and
//! the threads it starts) and collected with `sigtimedwait`, so there is no handler code
//! running at random points. Worker processes get a clean mask back before `exec`.

use std::io;

pub const WATCHED: [libc::c_int; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGCHLD,
];

/// Blocks the watched signals until dropped (then the previous mask comes back).
pub struct BlockedSignals {
    set: libc::sigset_t,
    previous: libc::sigset_t,
}

impl BlockedSignals {
    pub fn block() -> io::Result<BlockedSignals> {
        // SAFETY: sigset_t is plain data; both sets are initialised by sigemptyset before
        // use, and pthread_sigmask only reads `set` and writes `previous`.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigemptyset(&mut previous);
            for sig in WATCHED {
                libc::sigaddset(&mut set, sig);
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous);
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(BlockedSignals { set, previous })
        }
    }

    /// A pending watched signal, if any; never blocks.
    pub fn take(&self) -> Option<libc::c_int> {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `self.set` is an initialised sigset; a null siginfo pointer is allowed.
        let sig = unsafe { sigtimedwait(&self.set, std::ptr::null_mut(), &zero) };
        (sig > 0).then_some(sig)
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `block`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
        }
    }
}

/// For a child between fork and exec: no blocked signals. Async-signal-safe.
pub fn unblock_all_in_child() -> io::Result<()> {
    // SAFETY: sigemptyset and sigprocmask are async-signal-safe and only touch `empty`.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(target_os = "macos"))]
use libc::sigtimedwait;

/// macOS has no sigtimedwait: poll the pending set instead.
#[cfg(target_os = "macos")]
unsafe fn sigtimedwait(
    set: *const libc::sigset_t,
    _info: *mut libc::siginfo_t,
    _timeout: *const libc::timespec,
) -> libc::c_int {
    let mut pending: libc::sigset_t = std::mem::zeroed();
    libc::sigpending(&mut pending);
    for sig in WATCHED {
        if libc::sigismember(&pending, sig) == 1 && libc::sigismember(set, sig) == 1 {
            let mut one: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut one);
            libc::sigaddset(&mut one, sig);
            let mut got = 0;
            libc::sigwait(&one, &mut got);
            return got;
        }
    }
    -1
}
