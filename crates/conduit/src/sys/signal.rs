//! Signals: send (`kill`, `sigqueue`, `pidfd_send_signal`), block and
//! unblock in the calling thread, read the pending set, and read a
//! delivered signal's `siginfo_t`.

use std::io;
use std::os::fd::BorrowedFd;

/// What a delivered signal said about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// The signal number.
    pub signal: i32,
    /// The sending process, when a process sent it (`kill`, `sigqueue`,
    /// `tgkill`).
    pub pid: Option<u32>,
    /// Its real uid.
    pub uid: Option<u32>,
    /// The value `sigqueue` attached (its `sival_int`).
    pub value: Option<i32>,
}

/// Read `info` (filled in by the kernel for a delivered signal).
pub fn info(info: &libc::siginfo_t) -> Info {
    let code = info.si_code;
    // SI_MESGQ: a POSIX queue's notice (mq_notify), naming the process
    // that sent the message, with the value given at registration.
    let from_process = matches!(code, libc::SI_USER | libc::SI_QUEUE | libc::SI_TKILL | libc::SI_MESGQ);
    // SAFETY: the kernel filled `info` for a delivered signal; the pid and
    // uid members are valid for the codes of a sending process, the value
    // for SI_QUEUE, which are the only cases read.
    let (pid, uid, value) = unsafe {
        if from_process {
            let value =
                matches!(code, libc::SI_QUEUE | libc::SI_MESGQ).then(|| info.si_value().sival_ptr as usize as i32);
            (Some(info.si_pid() as u32), Some(info.si_uid()), value)
        } else {
            (None, None, None)
        }
    };
    Info { signal: info.si_signo, pid, uid, value }
}

/// `mq_notify`: signal `signal` with `value` when a message arrives on the
/// empty queue `mq` (`None`: cancel this process's registration).
pub fn mq_notify(mq: BorrowedFd<'_>, notice: Option<(i32, i32)>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: sigevent is plain data; zeroed is a valid value, then the
    // three fields SIGEV_SIGNAL uses are set.
    let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
    let r = match notice {
        Some((signal, value)) => {
            sev.sigev_notify = libc::SIGEV_SIGNAL;
            sev.sigev_signo = signal;
            sev.sigev_value = libc::sigval { sival_ptr: value as isize as *mut libc::c_void };
            // SAFETY: `mq` is an open queue descriptor (mqd_t is an fd on
            // Linux); `sev` lives across the call.
            unsafe { libc::mq_notify(mq.as_raw_fd(), &sev) }
        }
        // SAFETY: as above; a null sigevent cancels.
        None => unsafe { libc::mq_notify(mq.as_raw_fd(), std::ptr::null()) },
    };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Messages waiting on the POSIX queue `mq` (`mq_getattr`; never closes
/// a descriptor, which would end this process's `mq_notify`).
pub fn mq_waiting(mq: BorrowedFd<'_>) -> io::Result<i64> {
    use std::os::fd::AsRawFd;
    // SAFETY: mq_attr is plain data; the kernel fills it.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: `mq` is an open queue descriptor; `attr` lives across the call.
    let r = unsafe { libc::mq_getattr(mq.as_raw_fd(), &mut attr) };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(attr.mq_curmsgs) }
}

/// `kill(pid, signal)`.
pub fn kill(pid: u32, signal: i32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    let r = unsafe { libc::kill(pid as libc::pid_t, signal) };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `sigqueue(pid, signal, value)`: the receiver reads `value`.
pub fn queue(pid: u32, signal: i32, value: i32) -> io::Result<()> {
    let v = libc::sigval { sival_ptr: value as isize as *mut libc::c_void };
    // SAFETY: integer arguments and a sigval by value.
    let r = unsafe { libc::sigqueue(pid as libc::pid_t, signal, v) };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `pidfd_send_signal(pidfd, signal)`: never another process that reused
/// the pid.
pub fn pidfd_send(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    let sig = rustix::process::Signal::from_named_raw(signal)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no signal {signal}")))?;
    Ok(rustix::process::pidfd_send_signal(pidfd, sig)?)
}

fn sigset(signals: &[i32]) -> io::Result<libc::sigset_t> {
    // SAFETY: an all-zero sigset_t is valid storage for sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for these calls.
    unsafe { libc::sigemptyset(&mut set) };
    for &s in signals {
        // SAFETY: as above.
        if unsafe { libc::sigaddset(&mut set, s) } == -1 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no signal {s}")));
        }
    }
    Ok(set)
}

/// Block (`true`) or unblock `signals` in the calling thread.
pub fn mask(signals: &[i32], block: bool) -> io::Result<()> {
    let set = sigset(signals)?;
    let how = if block { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK };
    // SAFETY: `set` is a valid sigset_t; no old set is asked for.
    let r = unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) };
    if r != 0 { Err(io::Error::from_raw_os_error(r)) } else { Ok(()) }
}

/// The signals pending for the calling thread or the process (blocked,
/// not yet delivered), among 1..=64.
pub fn pending() -> io::Result<Vec<i32>> {
    let mut set = sigset(&[])?;
    // SAFETY: `set` is a valid out-pointer.
    if unsafe { libc::sigpending(&mut set) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `set` was filled by sigpending; sigismember only reads it.
    Ok((1..=64).filter(|&s| unsafe { libc::sigismember(&set, s) } == 1).collect())
}
