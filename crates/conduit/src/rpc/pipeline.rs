//! Calls in flight together on one connection: a reader thread takes the
//! answers and hands each to the call that waits for it (a task's waker,
//! or a parked thread). A client switches to this the first time an
//! `async` call is made on it; until then a blocking call reads its own
//! answer, with no thread between.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Poll, Waker};
use std::time::Instant;

use super::{Answer, CANCEL, Call, Carried, RpcError, sent_error};
use crate::channel::{Receiver, Sender};
use crate::error::Error;

#[derive(Debug, Default)]
struct State {
    slots: HashMap<u64, Slot>,
    /// The server is gone: every waiting call ends.
    dead: bool,
}

#[derive(Debug, Default)]
struct Slot {
    outcome: Option<Answer>,
    waker: Option<Waker>,
    thread: Option<std::thread::Thread>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The pipelined side of a client.
#[derive(Debug)]
pub(crate) struct Pipeline {
    tx: Sender<Call>,
    shared: Arc<Shared>,
    next: AtomicU64,
}

fn wake(slot: &mut Slot) {
    if let Some(w) = slot.waker.take() {
        w.wake();
    }
    if let Some(t) = slot.thread.take() {
        t.unpark();
    }
}

impl Pipeline {
    /// Take over the connection's answers (`rx`) with a reader thread;
    /// call numbers go on from `next`.
    pub fn start(
        tx: Sender<Call>,
        rx: Receiver<Answer>,
        next: u64,
        corrupted: Arc<AtomicU64>,
    ) -> Result<Pipeline, Error> {
        let shared = Arc::new(Shared::default());
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        std::thread::Builder::new().name("conduit-rpc-answers".into()).spawn(move || {
            loop {
                let got = rx.recv();
                let Some(shared) = weak.upgrade() else { return };
                let mut st = shared.lock();
                match got {
                    Ok(answer) => {
                        // Unknown ids: late answers to calls given up.
                        if let Some(slot) = st.slots.get_mut(&answer.id) {
                            slot.outcome = Some(answer);
                            wake(slot);
                        }
                    }
                    Err(crate::RecvError::Failed(Error::Wire(_))) => {
                        corrupted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        st.dead = true;
                        st.slots.values_mut().for_each(wake);
                        return;
                    }
                }
            }
        })?;
        Ok(Pipeline { tx, shared, next: AtomicU64::new(next) })
    }

    fn send(&self, call: &Call) -> Result<(), RpcError> {
        self.tx.send_ref(call, crate::sys::Deadline::Forever).map_err(sent_error)
    }

    fn new_call(&self, client: u64, method: &str, budget_us: Option<u64>, (args, rights): (Vec<u8>, Carried)) -> Call {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        // Calls are in flight together: only a client with one call at a
        // time can say the earlier ones are done.
        let done_below = if client == 0 { 0 } else { self.lowest_open().unwrap_or(id).min(id) };
        Call { client, id, done_below, method: method.to_string(), budget_us, args, rights }
    }

    fn lowest_open(&self) -> Option<u64> {
        self.shared.lock().slots.keys().min().copied()
    }

    /// An `async` call: sent at once; its answer wakes the task. Dropping
    /// the future cancels the call (the server is told).
    pub async fn call(
        &self,
        client: u64,
        method: &str,
        budget_us: Option<u64>,
        args: (Vec<u8>, Carried),
    ) -> Result<Answer, RpcError> {
        let call = self.new_call(client, method, budget_us, args);
        let id = call.id;
        self.shared.lock().slots.insert(id, Slot::default());
        let mut guard = CancelOnDrop { pipe: self, client, id, armed: true };
        if let Err(e) = self.send(&call) {
            self.shared.lock().slots.remove(&id);
            guard.armed = false;
            return Err(e);
        }
        let out = std::future::poll_fn(|cx| {
            let mut st = self.shared.lock();
            let dead = st.dead;
            let Some(slot) = st.slots.get_mut(&id) else { return Poll::Ready(Err(RpcError::ServerDied)) };
            if let Some(o) = slot.outcome.take() {
                st.slots.remove(&id);
                return Poll::Ready(Ok(o));
            }
            if dead {
                st.slots.remove(&id);
                return Poll::Ready(Err(RpcError::ServerDied));
            }
            slot.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        guard.armed = false;
        out
    }

    /// A blocking call on a pipelined client: parks until its answer, the
    /// deadline, or time to resend.
    pub fn call_blocking(
        &self,
        client: u64,
        method: &str,
        args: (Vec<u8>, Carried),
        deadline: Option<Instant>,
        retry: Option<std::time::Duration>,
        resent: &AtomicU64,
    ) -> Result<Answer, RpcError> {
        let budget = |now: Instant| match deadline {
            Some(d) => match d.checked_duration_since(now) {
                Some(left) if !left.is_zero() => Ok(Some(left.as_micros().min(u128::from(u64::MAX)) as u64)),
                _ => Err(RpcError::DeadlineExceeded),
            },
            None => Ok(None),
        };
        let mut call = self.new_call(client, method, None, args);
        let id = call.id;
        self.shared.lock().slots.insert(id, Slot::default());
        let finish = |r| {
            self.shared.lock().slots.remove(&id);
            r
        };
        loop {
            call.budget_us = match budget(Instant::now()) {
                Ok(b) => b,
                Err(e) => return finish(Err(e)),
            };
            if let Err(e) = self.send(&call) {
                return finish(Err(e));
            }
            let until = match (deadline, retry) {
                (Some(d), Some(r)) => Some(d.min(Instant::now() + r)),
                (d, r) => d.or(r.map(|r| Instant::now() + r)),
            };
            loop {
                {
                    let mut st = self.shared.lock();
                    let dead = st.dead;
                    if let Some(slot) = st.slots.get_mut(&id) {
                        if let Some(o) = slot.outcome.take() {
                            drop(st);
                            return finish(Ok(o));
                        }
                        if dead {
                            drop(st);
                            return finish(Err(RpcError::ServerDied));
                        }
                        slot.thread = Some(std::thread::current());
                    }
                }
                match until {
                    Some(t) if Instant::now() >= t => break,
                    Some(t) => std::thread::park_timeout(t.saturating_duration_since(Instant::now())),
                    None => std::thread::park(),
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return finish(Err(RpcError::DeadlineExceeded));
            }
            resent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Cancels its call if the future is dropped before the answer.
struct CancelOnDrop<'a> {
    pipe: &'a Pipeline,
    client: u64,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.pipe.shared.lock().slots.remove(&self.id);
            let cancel = Call {
                client: self.client,
                id: self.id,
                done_below: 0,
                method: CANCEL.into(),
                budget_us: None,
                args: Vec::new(),
                rights: Carried::default(),
            };
            let _ = self.pipe.tx.send(cancel);
        }
    }
}
