//! Peer-death monitor: one thread per process, started on first use,
//! sleeping in `epoll_wait` on the sockets of shared-memory channels. When
//! a socket's peer end is closed everywhere (the peer died or dropped its
//! last handle), it tells the endpoint, which wakes its futex sleepers.
//!
//! So a waiter parked on a futex learns of a `kill -9` within microseconds,
//! and nothing polls on a timer: an idle process stays idle.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rustix::event::epoll;

/// Told when the peer is gone.
pub trait PeerGone: Send + Sync {
    /// The peer end of the watched socket is closed.
    fn peer_gone(&self);
}

struct Monitor {
    epoll: OwnedFd,
    watched: Mutex<HashMap<u64, Weak<dyn PeerGone>>>,
    next: AtomicU64,
}

static MONITOR: OnceLock<io::Result<Arc<Monitor>>> = OnceLock::new();

fn monitor() -> io::Result<&'static Arc<Monitor>> {
    MONITOR
        .get_or_init(|| {
            let m = Arc::new(Monitor {
                epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
                watched: Mutex::new(HashMap::new()),
                next: AtomicU64::new(1),
            });
            let run = Arc::clone(&m);
            std::thread::Builder::new().name("conduit-monitor".into()).spawn(move || run.run())?;
            Ok(m)
        })
        .as_ref()
        .map_err(|e| io::Error::new(e.kind(), e.to_string()))
}

impl Monitor {
    fn run(&self) {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(16);
        loop {
            events.clear();
            if epoll::wait(self.epoll.as_fd(), rustix::buffer::spare_capacity(&mut events), None).is_err() {
                continue; // EINTR
            }
            for ev in &events {
                let data = ev.data;
                let key = data.u64();
                let target = self.watched.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                if let Some(t) = target.and_then(|w| w.upgrade()) {
                    t.peer_gone();
                }
            }
        }
    }
}

/// A registration; dropping it (before closing the socket) ends it.
#[derive(Debug)]
pub struct Watch {
    key: u64,
    fd: std::os::fd::RawFd,
}

/// Watch `sock` for its peer's end closing; `target` is told once.
pub fn watch(sock: BorrowedFd<'_>, target: Weak<dyn PeerGone>) -> io::Result<Watch> {
    let m = monitor()?;
    let key = m.next.fetch_add(1, Ordering::Relaxed);
    m.watched.lock().unwrap_or_else(|p| p.into_inner()).insert(key, target);
    let flags = epoll::EventFlags::RDHUP | epoll::EventFlags::HUP | epoll::EventFlags::ONESHOT;
    epoll::add(m.epoll.as_fd(), sock, epoll::EventData::new_u64(key), flags)?;
    Ok(Watch { key, fd: std::os::fd::AsRawFd::as_raw_fd(&sock) })
}

impl Watch {
    /// Stop watching; call while the socket is still open.
    pub fn end(&self, sock: BorrowedFd<'_>) {
        debug_assert_eq!(std::os::fd::AsRawFd::as_raw_fd(&sock), self.fd);
        if let Ok(m) = monitor() {
            let _ = epoll::delete(m.epoll.as_fd(), sock);
            m.watched.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
        }
    }
}
