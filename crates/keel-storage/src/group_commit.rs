//! Group commit for a server: proposers submit entries to a bounded queue; one writer thread
//! appends everything queued (up to a batch limit) and makes it durable with one fdatasync,
//! then wakes every proposer whose entries that sync covered. The next batch is written only
//! after the previous one is synced (the WAL's recovery rule), while proposers keep queueing.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::io::Io;
use crate::wal::{Entry, Wal};

#[derive(Clone, Debug)]
pub struct GroupCommitOptions {
    /// Queued entries before `submit` blocks (backpressure).
    pub queue_entries_max: usize,
    pub queue_bytes_max: usize,
    /// Entries and payload bytes per batch (one fdatasync each).
    pub batch_entries_max: usize,
    pub batch_bytes_max: usize,
}

impl Default for GroupCommitOptions {
    fn default() -> Self {
        GroupCommitOptions {
            queue_entries_max: 65_536,
            queue_bytes_max: 64 << 20,
            batch_entries_max: 4_096,
            batch_bytes_max: 4 << 20,
        }
    }
}

enum Request {
    Append(Entry),
    Truncate(u64),
}

impl Request {
    fn bytes(&self) -> usize {
        match self {
            Request::Append(e) => e.payload.len() + 64,
            Request::Truncate(_) => 64,
        }
    }
}

/// Identifies a submission; wait on it for durability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    sequence: u64,
    /// Last log index of the submission (for a truncate: the new last index).
    pub last_index: u64,
}

struct State {
    queue: VecDeque<(u64, Request)>,
    queued_bytes: usize,
    next_index: u64,
    next_sequence: u64,
    synced_sequence: u64,
    synced_index: u64,
    /// Highest sequence whose batch failed with NoSpace (retried with the next batch).
    no_space_sequence: u64,
    failed: Option<String>,
    shutdown: bool,
    stats: GroupCommitStats,
    /// Threads parked in `wait`, with the sequence each waits for. Only those a sync covered
    /// are woken (no thundering herd of proposers whose entries are still queued).
    waiters: Vec<(u64, std::thread::Thread)>,
}

/// Counters for metrics and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Batches made durable (one fdatasync each, plus a directory sync on segment rollover).
    pub batches: u64,
    /// Requests (entries and truncations) made durable.
    pub requests: u64,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct GroupCommitter<I: Io> {
    shared: Arc<Shared>,
    wal: Arc<Mutex<Wal<I>>>,
    options: GroupCommitOptions,
    payload_bytes_max: usize,
    thread: Option<JoinHandle<()>>,
}

impl<I: Io> GroupCommitter<I> {
    /// Takes over `wal` (syncing anything already pending) and starts the writer thread.
    pub fn start(wal: Wal<I>, options: GroupCommitOptions) -> Result<GroupCommitter<I>> {
        if options.batch_entries_max == 0 || options.queue_entries_max == 0 {
            return Err(Error::InvalidArgument(
                "group commit limits must be positive".into(),
            ));
        }
        let mut wal = wal;
        wal.sync()?;
        let payload_bytes_max = wal.payload_bytes_max();
        let state = State {
            queue: VecDeque::new(),
            queued_bytes: 0,
            next_index: wal.last_index() + 1,
            next_sequence: 1,
            synced_sequence: 0,
            synced_index: wal.last_index(),
            no_space_sequence: 0,
            failed: None,
            shutdown: false,
            stats: GroupCommitStats::default(),
            waiters: Vec::new(),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            work: Condvar::new(),
            room: Condvar::new(),
        });
        let wal = Arc::new(Mutex::new(wal));
        let thread = {
            let shared = shared.clone();
            let wal = wal.clone();
            let options = options.clone();
            std::thread::Builder::new()
                .name("keel-wal-writer".into())
                .spawn(move || writer_loop(&shared, &wal, &options))
                .map_err(|e| Error::io("spawn writer thread", "keel-wal-writer", e))?
        };
        Ok(GroupCommitter {
            shared,
            wal,
            options,
            payload_bytes_max,
            thread: Some(thread),
        })
    }

    fn enqueue(
        &self,
        mut requests: Vec<Request>,
        last_index: impl FnOnce(&mut State, &mut Vec<Request>) -> Result<u64>,
    ) -> Result<Ticket> {
        let bytes: usize = requests.iter().map(Request::bytes).sum();
        if requests.len() > self.options.queue_entries_max || bytes > self.options.queue_bytes_max {
            return Err(Error::InvalidArgument(
                "submission larger than the queue limits".into(),
            ));
        }
        for request in &requests {
            if let Request::Append(entry) = request {
                if entry.payload.len() > self.payload_bytes_max {
                    return Err(Error::InvalidArgument(format!(
                        "payload of {} bytes exceeds payload_bytes_max {}",
                        entry.payload.len(),
                        self.payload_bytes_max
                    )));
                }
            }
        }
        let mut st = self.shared.lock();
        loop {
            if let Some(msg) = &st.failed {
                return Err(Error::Poisoned(msg.clone()));
            }
            if st.shutdown {
                return Err(Error::InvalidArgument(
                    "group committer is shut down".into(),
                ));
            }
            if st.queue.len() + requests.len() <= self.options.queue_entries_max
                && st.queued_bytes + bytes <= self.options.queue_bytes_max
            {
                break;
            }
            st = self.shared.room.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        let last = last_index(&mut st, &mut requests)?;
        for request in requests {
            let sequence = st.next_sequence;
            st.next_sequence += 1;
            st.queue.push_back((sequence, request));
        }
        st.queued_bytes += bytes;
        let ticket = Ticket {
            sequence: st.next_sequence - 1,
            last_index: last,
        };
        self.shared.work.notify_one();
        Ok(ticket)
    }

    /// Leader path: assigns the next index to `payload`, queues it; wait on the ticket.
    pub fn propose(&self, term: u64, payload: Vec<u8>) -> Result<Ticket> {
        let requests = vec![Request::Append(Entry {
            index: 0,
            term,
            payload,
        })];
        // The index is assigned under the queue lock, so queue order is index order.
        self.enqueue(requests, |st, requests| {
            let index = st.next_index;
            if let Some(Request::Append(entry)) = requests.first_mut() {
                entry.index = index;
            }
            st.next_index += 1;
            Ok(index)
        })
    }

    /// Follower path: queues entries that must continue the log exactly.
    pub fn submit(&self, entries: Vec<Entry>) -> Result<Ticket> {
        if entries.is_empty() {
            return Err(Error::InvalidArgument("empty submission".into()));
        }
        let first = entries[0].index;
        let count = entries.len() as u64;
        if entries
            .iter()
            .enumerate()
            .any(|(i, e)| e.index != first + i as u64)
        {
            return Err(Error::InvalidArgument(
                "submitted entries are not contiguous".into(),
            ));
        }
        let requests = entries.into_iter().map(Request::Append).collect();
        self.enqueue(requests, |st, _| {
            if first != st.next_index {
                return Err(Error::InvalidArgument(format!(
                    "submission starts at {first} but the log continues at {}",
                    st.next_index
                )));
            }
            st.next_index += count;
            Ok(first + count - 1)
        })
    }

    /// Queues a truncation of entries `>= from`.
    pub fn truncate_suffix(&self, from: u64) -> Result<Ticket> {
        self.enqueue(vec![Request::Truncate(from)], |st, _| {
            if from > st.next_index {
                return Err(Error::InvalidArgument(format!(
                    "truncate from {from} past the log end {}",
                    st.next_index
                )));
            }
            st.next_index = from;
            Ok(from - 1)
        })
    }

    /// Blocks until the ticket's submission is durable.
    pub fn wait(&self, ticket: Ticket) -> Result<u64> {
        let mut registered = false;
        loop {
            {
                let mut st = self.shared.lock();
                if st.synced_sequence >= ticket.sequence {
                    return Ok(ticket.last_index);
                }
                if let Some(msg) = &st.failed {
                    return Err(Error::Poisoned(msg.clone()));
                }
                if st.no_space_sequence >= ticket.sequence {
                    return Err(Error::NoSpace { path: "wal".into() });
                }
                if !registered {
                    st.waiters.push((ticket.sequence, std::thread::current()));
                    registered = true;
                }
            }
            // A wake-up between unlock and park is not lost: unpark before park makes park return.
            std::thread::park();
        }
    }

    /// Proposes and waits: returns the durable index.
    pub fn propose_and_wait(&self, term: u64, payload: Vec<u8>) -> Result<u64> {
        let ticket = self.propose(term, payload)?;
        self.wait(ticket)
    }

    pub fn synced_index(&self) -> u64 {
        self.shared.lock().synced_index
    }

    pub fn stats(&self) -> GroupCommitStats {
        self.shared.lock().stats
    }

    /// Runs `f` with the WAL (reads for replication). Blocks while a batch is being synced.
    pub fn with_wal<T>(&self, f: impl FnOnce(&Wal<I>) -> T) -> T {
        let wal = self.wal.lock().unwrap_or_else(|p| p.into_inner());
        f(&wal)
    }

    /// Drains the queue, stops the writer and returns the WAL.
    pub fn shutdown(mut self) -> Result<Wal<I>> {
        self.stop();
        let wal = self.wal.clone();
        let failed = self.shared.lock().failed.clone();
        drop(self);
        if let Some(msg) = failed {
            return Err(Error::Poisoned(msg));
        }
        match Arc::try_unwrap(wal) {
            Ok(mutex) => Ok(mutex.into_inner().unwrap_or_else(|p| p.into_inner())),
            Err(_) => Err(Error::InvalidArgument("WAL still borrowed".into())),
        }
    }

    fn stop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.shutdown = true;
            self.shared.work.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl<I: Io> Drop for GroupCommitter<I> {
    fn drop(&mut self) {
        self.stop();
    }
}

fn writer_loop<I: Io>(shared: &Shared, wal: &Mutex<Wal<I>>, options: &GroupCommitOptions) {
    loop {
        let mut batch: Vec<(u64, Request)> = Vec::new();
        {
            let mut st = shared.lock();
            while st.queue.is_empty() && !st.shutdown {
                st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.queue.is_empty() {
                return; // shut down and drained
            }
            let mut bytes = 0usize;
            while let Some((_, request)) = st.queue.front() {
                let size = request.bytes();
                if !batch.is_empty()
                    && (batch.len() >= options.batch_entries_max
                        || bytes + size > options.batch_bytes_max)
                {
                    break;
                }
                let item = st.queue.pop_front().expect("front exists");
                bytes += size;
                batch.push(item);
            }
            st.queued_bytes -= bytes;
            shared.room.notify_all();
        }
        assert!(!batch.is_empty());
        let last_sequence = batch.last().map_or(0, |(s, _)| *s);
        let result = {
            let mut wal = wal.lock().unwrap_or_else(|p| p.into_inner());
            let mut applied = Ok(());
            for (_, request) in &batch {
                applied = match request {
                    Request::Append(entry) => {
                        wal.append_one(entry.index, entry.term, &entry.payload)
                    }
                    Request::Truncate(from) => wal.truncate_suffix(*from),
                };
                if applied.is_err() {
                    break;
                }
            }
            applied.and_then(|()| wal.sync())
        };
        let mut st = shared.lock();
        match result {
            Ok(index) => {
                assert!(last_sequence > st.synced_sequence);
                st.synced_sequence = last_sequence;
                st.synced_index = index;
                st.stats.batches += 1;
                st.stats.requests += batch.len() as u64;
            }
            Err(Error::NoSpace { .. }) => st.no_space_sequence = last_sequence,
            Err(e) => {
                st.failed = Some(e.to_string());
                let waiters = std::mem::take(&mut st.waiters);
                shared.room.notify_all();
                drop(st);
                waiters.into_iter().for_each(|(_, t)| t.unpark());
                return;
            }
        }
        let covered = st.synced_sequence.max(st.no_space_sequence);
        let (wake, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut st.waiters)
            .into_iter()
            .partition(|(seq, _)| *seq <= covered);
        st.waiters = keep;
        drop(st);
        wake.into_iter().for_each(|(_, t)| t.unpark());
    }
}
