//! Calls in flight together on one connection: a reader thread takes the
//! answers and hands each to the call that waits for it (a task's waker,
//! or a parked thread). A client switches to this the first time an
//! `async` call is made on it; until then a blocking call reads its own
//! answer, with no thread between.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::{Answer, BATCH, CANCEL, Call, Carried, Outcome, RpcError, sent_error};
use crate::channel::{Receiver, RecvTimeoutError, Sender};
use crate::error::Error;

#[derive(Debug, Default)]
struct State {
    /// Calls open, by number (the lowest tells the server which are done).
    slots: BTreeMap<u64, Slot>,
    /// The server is gone: every waiting call ends.
    dead: bool,
    /// Does the server take batches (`None`: not known yet; see [`BATCH`])?
    batching: Option<bool>,
    /// Calls queued for the next batch, and whether a task will send it.
    queued: Vec<Call>,
    flush_due: bool,
    /// How many times the queue was taken: a flusher whose calls went
    /// with a full batch meanwhile has nothing left to send.
    taken: u64,
    /// The task that is to send the next batch, waiting until every answer
    /// handed out has been taken (see [`FlushTurn`]).
    flusher: Option<Waker>,
    /// Tasks whose answers are in, to be woken by whichever task runs
    /// first: the reader wakes one, it wakes the rest (see [`wake_rest`]).
    to_wake: Vec<Waker>,
}

#[derive(Debug, Default)]
struct Slot {
    outcome: Option<Answer>,
    waker: Option<Waker>,
    thread: Option<std::thread::Thread>,
    /// An async call that resends: when it was last sent, and its retry.
    resend: Option<(Instant, Duration)>,
    /// An async call's deadline: past it, with no answer, the call ends
    /// (its call or answer may have been lost, and nobody resends).
    deadline: Option<Instant>,
    /// Time to resend (set by the reader, acted on by the call's task).
    due: bool,
    /// Its batch could not be sent.
    unsent: bool,
}

/// A call goes into a batch if its arguments are at most this long; a
/// batch holds at most [`BATCH_CALLS`] calls, and goes as soon as it holds
/// half the calls in flight: the server works on one batch while the
/// tasks here make the next (one batch of all of them left one side idle
/// while the other worked: ~0.65 M calls/s with 64 in flight over Unix
/// sockets, ~1.05 M in halves, ~0.95 M in thirds).
const BATCH_ARGS: usize = 1024;
const BATCH_CALLS: usize = 64;

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// The shortest retry of the async calls that resend, in µs (0: none):
    /// how often the reader looks for calls due to be resent.
    tick_us: AtomicU64,
}

/// How long the reader waits for an answer before it looks whether its
/// client is still there, when no async call resends.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// How long the reader looks for answers due before it sleeps.
const READER_SPIN: Duration = Duration::from_micros(20);

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
    /// Calls sent in batches of two or more.
    pub batched: AtomicU64,
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
            // No spin in the ring's own wait: the reader shares its
            // process's cores with the tasks it wakes (spinning cost two
            // thirds of the calls per second with 64 in flight over shared
            // memory). On sockets it looks, yielding, before it sleeps
            // (below).
            crate::memory::ring::never_spin_on_this_thread();
            // Links whose receive is a system call (sockets) look a while
            // before sleeping, when answers are due (see below).
            let looks = !rx.spins_before_sleep();
            let mut expecting = false;
            loop {
                let tick = match weak.upgrade() {
                    Some(shared) => shared.tick_us.load(Ordering::Relaxed),
                    None => return,
                };
                let wait = if tick == 0 { IDLE_TICK } else { Duration::from_micros(tick) };
                // Calls in flight: their answers are due soon — look for
                // them a while, yielding the core between looks (to the
                // tasks of this process), before sleeping: a sleeping
                // reader is woken by each answer, and on a busy machine
                // that switch cost more than the looks (with 64 calls in
                // flight over Unix sockets: ~1.15 M calls/s → ~1.35 M).
                let mut got = None;
                if looks && expecting {
                    let start = Instant::now();
                    while got.is_none() && start.elapsed() < READER_SPIN {
                        match rx.try_recv() {
                            Ok(a) => got = Some(Ok(a)),
                            Err(crate::TryRecvError::Empty) => std::thread::yield_now(),
                            Err(_) => break,
                        }
                    }
                }
                // Otherwise (or then) sleep until an answer, or the tick.
                let got = got.unwrap_or_else(|| rx.recv_timeout(wait));
                // The client is gone: so is the reader (and with it the
                // connection's answers end).
                let Some(shared) = weak.upgrade() else { return };
                let mut st = shared.lock();
                match got {
                    Ok(Answer { id: 0, outcome: Outcome::Batch(bytes), rights }) => {
                        st.batching = Some(true);
                        let answers: Vec<Answer> = match super::carried::decode(&bytes, &rights) {
                            Ok(v) => v,
                            Err(_) => {
                                corrupted.fetch_add(1, Ordering::Relaxed);
                                Vec::new()
                            }
                        };
                        // Every answer in place before anyone is woken (a
                        // task woken first may run at once, on this core).
                        // One task is woken from here; it wakes the others
                        // from its runtime's own thread, where a wake is a
                        // push on a run queue — from here, each would be a
                        // system call to that runtime's driver.
                        let mut threads = Vec::new();
                        let mut wakers = std::mem::take(&mut st.to_wake);
                        for answer in answers {
                            if let Some(slot) = st.slots.get_mut(&answer.id) {
                                slot.outcome = Some(answer);
                                wakers.extend(slot.waker.take());
                                threads.extend(slot.thread.take());
                            }
                        }
                        let first = wakers.pop();
                        st.to_wake = wakers;
                        drop(st);
                        first.into_iter().for_each(Waker::wake);
                        threads.into_iter().for_each(|t| t.unpark());
                        st = shared.lock();
                    }
                    Ok(Answer { id: 0, outcome: Outcome::UnknownMethod(_), .. }) => {
                        // An older server: single calls only.
                        st.batching = Some(false);
                    }
                    Ok(answer) => deliver(&mut st, answer),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Failed(Error::Wire(_))) => {
                        corrupted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        st.dead = true;
                        st.slots.values_mut().for_each(wake);
                        std::mem::take(&mut st.to_wake).into_iter().for_each(Waker::wake);
                        return;
                    }
                }
                expecting = st.slots.values().any(|s| s.outcome.is_none());
                if tick != 0 {
                    // Async calls with no answer within their retry (their
                    // tasks resend them) or by their deadline (they end).
                    let now = Instant::now();
                    for slot in st.slots.values_mut() {
                        let resend = slot.resend.is_some_and(|(sent, every)| now.duration_since(sent) >= every);
                        let late = slot.deadline.is_some_and(|d| now >= d);
                        if (resend || late) && slot.outcome.is_none() && !slot.due {
                            slot.due = true;
                            wake(slot);
                        }
                    }
                }
            }
        })?;
        // Batches save system calls: over shared memory (none to save) the
        // calls go one by one.
        let shm = tx.sends_without_syscall();
        let pipe = Pipeline { tx, shared, next: AtomicU64::new(next), batched: AtomicU64::new(0) };
        if shm {
            pipe.shared.lock().batching = Some(false);
            return Ok(pipe);
        }
        // Does the server take batches? An empty one asks.
        let probe = Call {
            client: 0,
            id: 0,
            done_below: 0,
            method: BATCH.into(),
            budget_us: None,
            args: vec![0],
            rights: Carried::default(),
        };
        let _ = pipe.send(&probe);
        Ok(pipe)
    }

    /// Send the calls queued for a batch: one message (or the call alone).
    fn flush(&self) {
        let queued = {
            let mut st = self.shared.lock();
            st.flush_due = false;
            st.taken += 1;
            std::mem::take(&mut st.queued)
        };
        self.send_batch(queued);
    }

    /// Send `queued` as one batch (or the call alone); if it cannot be
    /// sent, its calls end.
    fn send_batch(&self, queued: Vec<Call>) {
        let sent = match queued.len() {
            0 => return,
            1 => self.send(&queued[0]).is_ok(),
            _ => match super::carried::encode(&queued) {
                Ok((args, rights)) => {
                    let batch =
                        Call { client: 0, id: 0, done_below: 0, method: BATCH.into(), budget_us: None, args, rights };
                    self.batched.fetch_add(queued.len() as u64, Ordering::Relaxed);
                    self.send(&batch).is_ok()
                }
                Err(_) => false,
            },
        };
        if !sent {
            let mut st = self.shared.lock();
            for c in &queued {
                if let Some(slot) = st.slots.get_mut(&c.id) {
                    slot.unsent = true;
                    wake(slot);
                }
            }
        }
    }

    fn send(&self, call: &Call) -> Result<(), RpcError> {
        self.tx.send_ref(call, crate::sys::Deadline::Forever).map_err(sent_error)
    }

    /// A call with the next id, open (its slot made) from now on.
    fn new_call(
        &self,
        client: u64,
        method: &str,
        budget_us: Option<u64>,
        (args, rights): (Vec<u8>, Carried),
        slot: Slot,
    ) -> Call {
        // Calls are in flight together: those below the lowest still open
        // are done (answered, or given up) — the server forgets their
        // answers and refuses a late duplicate of one. So the id is taken
        // and its slot made under one lock: another thread's call cannot
        // see the calls open without this one and tell the server that
        // this one is done before it was even sent.
        let mut st = self.shared.lock();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        st.slots.insert(id, slot);
        let done_below = st.slots.first_key_value().map_or(id, |(k, _)| *k).min(id);
        drop(st);
        Call { client, id, done_below, method: method.to_string(), budget_us, args, rights }
    }

    /// An `async` call: sent at once; its answer wakes the task. Dropping
    /// the future cancels the call (the server is told). With `retry`, a
    /// call with no answer within it is sent again (the server answers a
    /// duplicate from its reply cache): the reader thread marks it due,
    /// its task resends it, each time with the budget left.
    pub async fn call(
        &self,
        client: u64,
        method: &str,
        budget_us: Option<u64>,
        args: (Vec<u8>, Carried),
        retry: Option<Duration>,
        resent: &AtomicU64,
    ) -> Result<Answer, RpcError> {
        let deadline = budget_us.map(|us| Instant::now() + Duration::from_micros(us));
        let resend = retry.filter(|r| !r.is_zero()).map(|r| (Instant::now(), r));
        let mut call = self.new_call(client, method, budget_us, args, Slot { resend, deadline, ..Slot::default() });
        let id = call.id;
        // The reader looks at least this often for calls due to be resent
        // or past their deadline (it notices within one wait of its
        // current tick, at most IDLE_TICK).
        for every in [resend.map(|(_, every)| every), budget_us.map(Duration::from_micros)].into_iter().flatten() {
            let us = every.as_micros().clamp(1, u128::from(u64::MAX)) as u64;
            let _ = self
                .shared
                .tick_us
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| (t == 0 || us < t).then_some(us));
        }
        let mut guard = CancelOnDrop { pipe: self, client, id, armed: true, flusher: false };
        // Calls made together by several tasks go in one message: the
        // first queues its call and lets the others run once; whatever
        // they queued meanwhile goes with it.
        // A full batch goes at once, so that the server works on it while
        // the tasks here make the next: several batches are in flight.
        let mut full = None;
        let mut turn = 0;
        let batched = call.rights.is_empty() && call.args.len() <= BATCH_ARGS && {
            let mut st = self.shared.lock();
            if st.batching == Some(true) {
                // Kept for resends only.
                let queued = if resend.is_some() { call.clone() } else { std::mem::take(&mut call) };
                st.queued.push(queued);
                if st.queued.len() >= (st.slots.len() / 2).clamp(2, BATCH_CALLS) {
                    // The task that was to send it has nothing to send
                    // now (and must not wait for the answers to calls
                    // that include its own).
                    full = Some(std::mem::take(&mut st.queued));
                    st.taken += 1;
                    st.flush_due = false;
                    st.flusher.take().into_iter().for_each(Waker::wake);
                } else if !std::mem::replace(&mut st.flush_due, true) {
                    guard.flusher = true;
                    turn = st.taken;
                }
                true
            } else {
                false
            }
        };
        if let Some(full) = full {
            self.send_batch(full);
        } else if !batched {
            if let Err(e) = self.send(&call) {
                left(&mut self.shared.lock(), id);
                guard.armed = false;
                return Err(e);
            }
        } else if guard.flusher {
            let still = FlushTurn { pipe: self, waited: false, turn }.await;
            guard.flusher = false;
            if still {
                self.flush();
            }
        }
        let out = std::future::poll_fn(|cx| {
            wake_rest(&self.shared);
            loop {
                let mut st = self.shared.lock();
                let dead = st.dead;
                let Some(slot) = st.slots.get_mut(&id) else { return Poll::Ready(Err(RpcError::ServerDied)) };
                if let Some(o) = slot.outcome.take() {
                    left(&mut st, id);
                    return Poll::Ready(Ok(o));
                }
                if dead || slot.unsent {
                    left(&mut st, id);
                    return Poll::Ready(Err(RpcError::ServerDied));
                }
                if !slot.due {
                    slot.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                slot.due = false;
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    left(&mut st, id);
                    return Poll::Ready(Err(RpcError::DeadlineExceeded));
                }
                let Some((sent, _)) = slot.resend.as_mut() else {
                    slot.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                };
                *sent = Instant::now();
                drop(st);
                // Resend, with the time left.
                if let Some(d) = deadline {
                    match d.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => call.budget_us = Some(left.as_micros() as u64),
                        _ => {
                            left(&mut self.shared.lock(), id);
                            return Poll::Ready(Err(RpcError::DeadlineExceeded));
                        }
                    }
                }
                resent.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = self.send(&call) {
                    left(&mut self.shared.lock(), id);
                    return Poll::Ready(Err(e));
                }
            }
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
        let mut call = self.new_call(client, method, None, args, Slot::default());
        let id = call.id;
        let finish = |r| {
            left(&mut self.shared.lock(), id);
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

/// Wake the tasks whose answers the reader handed out together (it woke
/// only one of them).
fn wake_rest(shared: &Shared) {
    let rest = {
        let mut st = shared.lock();
        if st.to_wake.is_empty() {
            return;
        }
        std::mem::take(&mut st.to_wake)
    };
    rest.into_iter().for_each(Waker::wake);
}

/// Are there answers handed out that their calls have not taken yet?
fn answers_untaken(st: &State) -> bool {
    st.slots.values().any(|s| s.outcome.is_some())
}

/// A call left (it took its answer, or gave up): if it was the last with
/// an answer to take, the task that is to send the next batch goes on.
fn left(st: &mut State, id: u64) {
    st.slots.remove(&id);
    if st.flusher.is_some() && !answers_untaken(st) {
        st.flusher.take().into_iter().for_each(Waker::wake);
    }
}

/// Hand an answer to the call that waits for it (unknown ids: late
/// answers to calls given up).
fn deliver(st: &mut State, answer: Answer) {
    if let Some(slot) = st.slots.get_mut(&answer.id) {
        slot.outcome = Some(answer);
        wake(slot);
    }
}

/// The wait of the task that sends the next batch: `Pending` once — until
/// every answer handed out has been taken by its call (whose task then
/// queues its next call in the same turn), or else just once (waking
/// itself): the other ready tasks queue their calls meanwhile. Waiting for
/// the answers rather than yielding matters: a runtime may poll a task
/// that woke itself before the tasks another thread woke. `Ready(false)`:
/// the queue went meanwhile as a full batch (taken since `turn`).
struct FlushTurn<'a> {
    pipe: &'a Pipeline,
    waited: bool,
    turn: u64,
}

impl std::future::Future for FlushTurn<'_> {
    type Output = bool;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<bool> {
        if self.waited {
            return Poll::Ready(self.pipe.shared.lock().taken == self.turn);
        }
        self.waited = true;
        wake_rest(&self.pipe.shared);
        let mut st = self.pipe.shared.lock();
        if st.taken != self.turn {
            return Poll::Ready(false);
        }
        if answers_untaken(&st) {
            st.flusher = Some(cx.waker().clone());
        } else {
            drop(st);
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

/// Cancels its call if the future is dropped before the answer.
struct CancelOnDrop<'a> {
    pipe: &'a Pipeline,
    client: u64,
    id: u64,
    armed: bool,
    /// This call is to send the queued batch and has not yet.
    flusher: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        // Dropped before its answer, this task may have been the one to
        // wake the others (a call that took its answer already did, at
        // the start of that poll).
        if self.armed {
            wake_rest(&self.pipe.shared);
        }
        if self.flusher {
            // The others' calls still go.
            self.pipe.flush();
        }
        if self.armed {
            left(&mut self.pipe.shared.lock(), self.id);
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
