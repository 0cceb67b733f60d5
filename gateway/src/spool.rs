//! The chat events' spool: every call's event is written to a local file before its answer
//! completes, and the file is deleted once every event in it is in the journal. A process killed
//! with SIGKILL leaves its file behind; the next process to look (at start, then every
//! [`RECOVER_EVERY`]) appends what it holds to the journal — duplicates of events that made it
//! before the kill are skipped by their ids — and deletes it. So no answered call goes
//! unbilled, whatever happens to the process or to the database meanwhile.
//!
//! A write is one `write(2)` of one line into the page cache, a few microseconds: it survives
//! the process, not the machine. `AIHUB_SPOOL_FSYNC=true` syncs each segment's writes too, for
//! machines whose crash must not lose an answered call either (at the cost the benchmark shows).
//!
//! Files are `<dir>/<uuid>.jsonl`, one envelope a line. A process holds an exclusive lock
//! (`flock`) on each of its files while it lives, so a file whose lock can be taken belongs to
//! nobody and is recovered; two processes may share a directory.
//!
//! The spool is also the appender's queue when the journal falls behind. A write offers its
//! event to the appender's queue in memory ([`Spool::write_then`]); when that is full, the spool
//! goes into *backlog mode*: from that event on, events are written to the files only, and the
//! appender reads them back from a cursor ([`Spool::read_backlog`]) until it reaches the last
//! write, which ends the mode. Both happen under the spool's lock, so every event goes to the
//! journal exactly one way. So a burst the journal cannot keep up with waits on disk, not in
//! memory, and no call is refused for it until [`Spool::pending`] reaches the operator's bound
//! (`AIHUB_SPOOL_BACKLOG`). While there is a backlog, the appender syncs the files every second
//! ([`Spool::sync`]), so a crashed machine loses at most about a second of it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use command_api::journal::Encoded;
use command_api::Journal;
use events::EventEnvelope;

/// Events in one file before the next is started (so files are deleted as the journal catches
/// up, not only when the process stops).
const SEGMENT_EVENTS: u64 = 10_000;

/// How often a running process looks for files left by dead ones.
pub const RECOVER_EVERY: Duration = Duration::from_secs(30);

pub struct Spool {
    dir: PathBuf,
    fsync: bool,
    state: Mutex<State>,
    /// Events written and not yet reported appended.
    pending: Arc<AtomicU64>,
}

/// The spools this process has open, by directory, through their pending counts ([`pending_in`]).
static OPEN: Mutex<Vec<(PathBuf, Weak<AtomicU64>)>> = Mutex::new(Vec::new());

/// Events the spools this process has open in `dir` hold that the journal does not have yet:
/// 0 once every call answered so far is in the journal (what a test waits for before it reads
/// what the journal feeds).
pub fn pending_in(dir: &Path) -> u64 {
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    open.retain(|(_, pending)| pending.strong_count() > 0);
    open.iter()
        .filter(|(at, _)| at == dir)
        .filter_map(|(_, pending)| pending.upgrade())
        .map(|pending| pending.load(Ordering::Relaxed))
        .sum()
}

struct State {
    current: Segment,
    /// Full segments, still locked, until every event in them is in the journal.
    sealed: Vec<Segment>,
    /// Every segment with events not yet all in the journal, by number.
    open: HashMap<u64, Tally>,
    next: u64,
    /// In backlog mode: the first event the appender has not read back yet.
    backlog: Option<Cursor>,
    /// When backlog mode started (no event in the backlog is older).
    backlog_since: std::time::Instant,
}

/// A place in the spool: a segment's number and a byte offset in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    segment: u64,
    offset: u64,
}

struct Segment {
    number: u64,
    file: File,
    path: PathBuf,
    written: u64,
}

struct Tally {
    path: PathBuf,
    written: u64,
    /// The file's length: every byte before it is a whole write.
    bytes: u64,
    appended: u64,
    /// No more events go into it.
    sealed: bool,
}

/// Where a written event went on to the journal from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The appender's queue in memory.
    Queued,
    /// The spool file alone: the appender reads it back ([`Spool::read_backlog`]).
    Backlog,
}

/// An event read back from the backlog, as a call queues it: the envelope, its encoding (the
/// line's text) and its ticket.
pub type Spooled = (EventEnvelope, Encoded, Ticket);

/// An event's line as the spool writes it: its envelope's text and a newline (made before the
/// spool's lock is taken).
pub struct Line(Vec<u8>);

impl Line {
    pub fn of(envelope: &str) -> Self {
        let mut line = Vec::with_capacity(envelope.len() + 1);
        line.extend_from_slice(envelope.as_bytes());
        line.push(b'\n');
        Self(line)
    }
}

/// Where an event was spooled: the appender reports it back once the event is in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

impl Ticket {
    /// An event that could not be spooled: nothing to report.
    pub const NONE: Ticket = Ticket(u64::MAX);
}

/// The spool directory of one database under `base`: processes of other databases (tests,
/// other deployments) sharing the base never recover each other's events. The database is
/// named by its host, port and name, not its credentials, so rotating a password keeps it.
pub fn dir_for(base: &str, database_url: &str) -> String {
    use sha2::{Digest, Sha256};
    let without_query = database_url.split('?').next().unwrap_or(database_url);
    let place = without_query.rsplit('@').next().unwrap_or(without_query);
    let digest = hex::encode(Sha256::digest(place.as_bytes()));
    Path::new(base).join(&digest[..16]).display().to_string()
}

impl Spool {
    pub fn open(dir: &Path, fsync: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let current = Segment::create(dir, 0)?;
        let mut open = HashMap::new();
        open.insert(0, Tally::of(&current));
        let pending = Arc::new(AtomicU64::new(0));
        OPEN.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((dir.to_path_buf(), Arc::downgrade(&pending)));
        Ok(Self {
            dir: dir.to_path_buf(),
            fsync,
            state: Mutex::new(State {
                current,
                sealed: Vec::new(),
                open,
                next: 1,
                backlog: None,
                backlog_since: std::time::Instant::now(),
            }),
            pending,
        })
    }

    /// Writes an event's envelope as [`Spool::write_then`] does, for a caller that hands it to
    /// the journal itself.
    pub fn write(&self, envelope: &str) -> std::io::Result<Ticket> {
        let mut ticket = Ticket::NONE;
        self.write_then(Line::of(envelope), |t| {
            ticket = t;
            true
        })?;
        Ok(ticket)
    }

    /// Writes an event's line (its envelope's JSON text: the journal's encoding, so a call's
    /// event is serialized once) to the current file, then, under the same lock, offers it to
    /// the appender's queue with `queue` (given the event's ticket for [`Spool::appended`]; true
    /// when it took the event) — unless the spool is in backlog mode, which a refusal starts:
    /// then the appender reads the event back from the file. Says which.
    pub fn write_then(
        &self,
        line: Line,
        queue: impl FnOnce(Ticket) -> bool,
    ) -> std::io::Result<Route> {
        let line = line.0;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.current.written >= SEGMENT_EVENTS {
            let number = state.next;
            let fresh = Segment::create(&self.dir, number)?;
            state.next += 1;
            state.open.insert(number, Tally::of(&fresh));
            let old = std::mem::replace(&mut state.current, fresh);
            if let Some(tally) = state.open.get_mut(&old.number) {
                tally.sealed = true;
            }
            // The old file keeps its lock until every event in it is appended: `appended`
            // deletes it (the event this write adds will be reported there, so it comes).
            state.sealed.push(old);
        }
        let number = state.current.number;
        let offset = state.open.get(&number).map_or(0, |t| t.bytes);
        let written = state.current.file.write_all(&line);
        let synced = match (&written, self.fsync) {
            (Ok(()), true) => state.current.file.sync_data(),
            _ => Ok(()),
        };
        if let Err(e) = written.and(synced) {
            // Part of the line may be in: ended, so the next line starts a line of its own, and
            // the file's length taken as it is (a reader skips the broken line).
            let _ = state.current.file.write_all(b"\n");
            let length = state.current.file.metadata().map(|m| m.len());
            if let (Some(tally), Ok(length)) = (state.open.get_mut(&number), length) {
                tally.bytes = length;
            }
            return Err(e);
        }
        state.current.written += 1;
        if let Some(tally) = state.open.get_mut(&number) {
            tally.written += 1;
            tally.bytes = offset + line.len() as u64;
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        let ticket = Ticket(number);
        if state.backlog.is_none() && queue(ticket) {
            return Ok(Route::Queued);
        }
        if state.backlog.is_none() {
            state.backlog = Some(Cursor {
                segment: number,
                offset,
            });
            state.backlog_since = std::time::Instant::now();
        }
        Ok(Route::Backlog)
    }

    /// These events are in the journal: a file all of whose events are is deleted.
    pub fn appended(&self, tickets: &[Ticket]) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut counted = 0;
        for ticket in tickets {
            if let Some(tally) = state.open.get_mut(&ticket.0) {
                tally.appended += 1;
                counted += 1;
            }
        }
        self.pending.fetch_sub(counted, Ordering::Relaxed);
        let spent = state.take_done();
        drop(state);
        delete_later(spent);
    }

    /// Events spooled that the journal does not have yet (in the appender's queue, or in the
    /// backlog on disk).
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Whether the spool is in backlog mode (events are read back from its files).
    pub fn backlogged(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .backlog
            .is_some()
    }

    /// In backlog mode, up to `max` events from the cursor on, in the order they were written,
    /// decoded, the cursor moved past them, and when the mode started (none of them is older);
    /// `None` once the cursor has reached the last write,
    /// which ends backlog mode under the lock (the next write is queued again). Reads the file:
    /// blocking, for the appender's blocking threads. A line that does not decode (the broken
    /// end of a failed write) is skipped and said.
    pub fn read_backlog(
        &self,
        max: usize,
    ) -> std::io::Result<Option<(Vec<Spooled>, std::time::Instant)>> {
        let (cursor, path, end, since) = loop {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let Some(cursor) = state.backlog else {
                return Ok(None);
            };
            let (sealed, bytes, path) = match state.open.get(&cursor.segment) {
                Some(tally) => (tally.sealed, tally.bytes, tally.path.clone()),
                // Every event of it is in (cannot happen before the cursor passes it).
                None => (true, 0, PathBuf::new()),
            };
            if cursor.offset < bytes {
                break (cursor, path, bytes, state.backlog_since);
            }
            state.backlog = sealed.then_some(Cursor {
                segment: cursor.segment + 1,
                offset: 0,
            });
            if state.backlog.is_none() {
                return Ok(None);
            }
        };
        let mut file = File::open(&path)?;
        file.seek(SeekFrom::Start(cursor.offset))?;
        let mut reader = BufReader::with_capacity(1 << 20, file.take(end - cursor.offset));
        let ticket = Ticket(cursor.segment);
        let mut events = Vec::with_capacity(max.min(4096));
        let mut consumed = 0u64;
        let mut line = Vec::new();
        while events.len() < max {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            consumed += n as u64;
            let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line));
            match EventEnvelope::decode(text.as_bytes()) {
                Ok(event) => events.push((event, Encoded::from_text(text.into_owned()), ticket)),
                Err(e) if !text.trim().is_empty() => {
                    tracing::error!(file = %path.display(), offset = cursor.offset + consumed - n as u64, error = %e, "a spooled line does not decode; skipped");
                }
                Err(_) => {}
            }
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.backlog == Some(cursor) {
            state.backlog = Some(Cursor {
                segment: cursor.segment,
                offset: cursor.offset + consumed,
            });
        }
        Ok(Some((events, since)))
    }

    /// Syncs every file of the spool to disk (the backlog's events then survive a crashed
    /// machine). Blocking; the lock is held only to duplicate the files' descriptors.
    pub fn sync(&self) -> std::io::Result<()> {
        let files = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            std::iter::once(&state.current)
                .chain(&state.sealed)
                .map(|segment| segment.file.try_clone())
                .collect::<std::io::Result<Vec<File>>>()?
        };
        for file in files {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Appends the events of every file no live process holds to the journal (skipping those
    /// already there), then deletes the file. Returns how many events were recovered.
    pub async fn recover(&self, journal: &Journal) -> anyhow::Result<usize> {
        let mut recovered = 0;
        let entries = std::fs::read_dir(&self.dir)?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
                continue;
            }
            let Ok(file) = File::open(&path) else {
                continue;
            };
            // Held by a live process (this one included): not ours to take.
            if file.try_lock().is_err() {
                continue;
            }
            let mut events = Vec::new();
            for line in BufReader::new(&file).lines() {
                let line = line?;
                // A line cut short by a kill mid-write: its call had not answered yet.
                if let Ok(event) = EventEnvelope::decode(line.as_bytes()) {
                    events.push(event);
                }
            }
            for batch in events.chunks(500) {
                journal.append_new(batch).await?;
            }
            recovered += events.len();
            std::fs::remove_file(&path)?;
            tracing::warn!(
                file = %path.display(),
                events = events.len(),
                "recovered chat events a stopped process had spooled"
            );
        }
        Ok(recovered)
    }
}

impl State {
    /// Takes out the sealed files whose events are all in the journal; the caller deletes them
    /// ([`delete_later`], [`delete`]) after releasing the lock.
    fn take_done(&mut self) -> Vec<Spent> {
        let done: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, t)| t.sealed && t.appended >= t.written)
            .map(|(n, _)| *n)
            .collect();
        let mut spent = Vec::with_capacity(done.len());
        for number in done {
            if let Some(tally) = self.open.remove(&number) {
                let position = self.sealed.iter().position(|s| s.number == number);
                let segment = position.map(|at| self.sealed.swap_remove(at));
                spent.push(Spent {
                    path: tally.path,
                    segment,
                });
            }
        }
        spent
    }
}

/// A file whose events are all in the journal, and its open segment (which holds the lock).
struct Spent {
    path: PathBuf,
    segment: Option<Segment>,
}

/// Deletes spent files, then closes them (releasing their locks only once they are gone, so no
/// other process recovers a file this one finished). Freeing a segment's ~13 MB of page cache
/// takes about a millisecond: done on the runtime's blocking threads, never under the spool's
/// lock nor on a request worker, so no call's write waits behind it (issue 17).
fn delete_later(spent: Vec<Spent>) {
    if spent.is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || delete(spent));
        }
        Err(_) => delete(spent),
    }
}

fn delete(spent: Vec<Spent>) {
    for Spent { path, segment } in spent {
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(file = %path.display(), error = %e, "could not delete a spent spool file");
        }
        drop(segment);
    }
}

impl Drop for Spool {
    /// A process stopping cleanly has appended everything it spooled: its files go. Whatever is
    /// left (events the journal never took) stays for the next process to recover.
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let current = state.current.number;
        if let Some(tally) = state.open.get_mut(&current) {
            tally.sealed = true;
        }
        let spent = state.take_done();
        drop(state);
        // The process is stopping: deleted here, so the files are gone when it has stopped.
        delete(spent);
    }
}

impl Segment {
    fn create(dir: &Path, number: u64) -> std::io::Result<Self> {
        let path = dir.join(format!("{}.jsonl", uuid::Uuid::now_v7()));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        file.try_lock().map_err(std::io::Error::other)?;
        Ok(Self {
            number,
            file,
            path,
            written: 0,
        })
    }
}

impl Tally {
    fn of(segment: &Segment) -> Self {
        Self {
            path: segment.path.clone(),
            written: 0,
            bytes: 0,
            appended: 0,
            sealed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("spool directory")
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        files
    }

    /// A full segment, every one of whose events is reported appended, and the segment after it
    /// that is still being written.
    fn spool_with_a_spent_segment() -> (PathBuf, Spool, Vec<Ticket>) {
        let dir = std::env::temp_dir().join(format!("aihub-spool-test-{}", uuid::Uuid::now_v7()));
        let spool = Spool::open(&dir, false).expect("opens");
        let tickets: Vec<Ticket> = (0..=SEGMENT_EVENTS)
            .map(|n| spool.write(&format!("{{\"n\":{n}}}")).expect("writes"))
            .collect();
        assert_eq!(
            files(&dir).len(),
            2,
            "the 10,001st event starts a second file"
        );
        (dir, spool, tickets)
    }

    #[test]
    fn a_segment_is_deleted_once_all_its_events_are_appended_and_not_before() {
        let (dir, spool, tickets) = spool_with_a_spent_segment();
        let (first, rest) = tickets.split_at(SEGMENT_EVENTS as usize);
        spool.appended(&first[..first.len() - 1]);
        assert_eq!(
            files(&dir).len(),
            2,
            "one event of the first file is not in yet"
        );
        spool.appended(&first[first.len() - 1..]);
        assert_eq!(
            files(&dir).len(),
            1,
            "outside a runtime the file goes at once"
        );
        // The file still being written stays, even with all its events in.
        spool.appended(rest);
        assert_eq!(files(&dir).len(), 1);
        drop(spool);
        assert!(files(&dir).is_empty(), "a clean stop leaves nothing");
        let _ = std::fs::remove_dir(&dir);
    }

    /// A call's event and its encoding, as `Gateway::emit` makes them.
    fn call(i: usize) -> (EventEnvelope, Encoded) {
        use events::chat::{Attempt, ChatCall, ChatCompletionSucceeded};
        use events::{Actor, EventPayload};
        let payload = EventPayload::ChatCompletionSucceeded(ChatCompletionSucceeded {
            call: ChatCall {
                request_id: format!("spool-test-{i}"),
                api_key_id: None,
                team_id: None,
                user_id: None,
                model: "m".into(),
                streamed: false,
                attempts: vec![Attempt {
                    provider: "openrouter".into(),
                    upstream_model: "m/1".into(),
                    outcome: "ok".into(),
                    latency_ms: 1,
                }],
                latency_ms: 1,
            },
            provider: "openrouter".into(),
            upstream_model: "m/1".into(),
            prompt_tokens: 3,
            completion_tokens: 2,
            total_tokens: 5,
            cost_micros: 1,
            time_to_first_token_ms: None,
            client_disconnected: false,
            usage_estimated: false,
        });
        let id = uuid::Uuid::now_v7();
        let event = EventEnvelope::new(
            payload,
            Some(uuid::Uuid::nil()),
            events::StreamId::chat(id),
            1,
            Actor::system(),
            format!("spool-test-{i}"),
        );
        let encoded = Encoded::of(&event);
        (event, encoded)
    }

    #[test]
    fn past_a_full_queue_events_go_to_the_backlog_in_order_and_once_until_it_is_read_back() {
        let dir = std::env::temp_dir().join(format!("aihub-spool-test-{}", uuid::Uuid::now_v7()));
        let spool = Spool::open(&dir, false).expect("opens");
        // A queue with room for all but the last few events of the first file, which then frees
        // up (the appender drained it): the backlog starts at the first refusal and spans the
        // rotation into a second file.
        let room = SEGMENT_EVENTS as usize - 3;
        let total = SEGMENT_EVENTS as usize + 5;
        let mut queued = Vec::new();
        let mut written = Vec::new();
        for i in 0..total {
            let (event, encoded) = call(i);
            let route = spool
                .write_then(Line::of(encoded.text()), |ticket| {
                    let taken = i < room || i == room + 2;
                    if taken {
                        queued.push((event.event_id, ticket));
                    }
                    taken
                })
                .expect("writes");
            let expected = if i < room {
                Route::Queued
            } else {
                Route::Backlog
            };
            assert_eq!(route, expected, "event {i}");
            written.push((event.event_id, encoded.text().to_string()));
        }
        assert_eq!(
            queued.len(),
            room,
            "once refused, the queue is not offered any more"
        );
        assert!(spool.backlogged());
        assert_eq!(spool.pending(), total as u64);
        let mut read = Vec::new();
        while let Some((batch, _)) = spool.read_backlog(4).expect("reads") {
            assert!(batch.len() <= 4);
            read.extend(batch);
        }
        assert!(!spool.backlogged(), "read to the end, the mode is over");
        let expected: Vec<&(uuid::Uuid, String)> = written[room..].iter().collect();
        assert_eq!(read.len(), expected.len(), "every refused event, once");
        for ((event, encoded, _), (id, text)) in read.iter().zip(expected) {
            assert_eq!(event.event_id, *id);
            assert_eq!(
                encoded.text(),
                text,
                "the journal gets the text the call made"
            );
        }
        // Both ways together are every event; acknowledged, the first file goes.
        let tickets: Vec<Ticket> = queued
            .iter()
            .map(|(_, t)| *t)
            .chain(read.iter().map(|(_, _, t)| *t))
            .collect();
        spool.appended(&tickets);
        assert_eq!(spool.pending(), 0);
        assert_eq!(files(&dir).len(), 1, "the spent file is deleted");
        // The next event is queued again.
        let (_, encoded) = call(total);
        let route = spool.write_then(Line::of(encoded.text()), |_| true);
        assert_eq!(route.expect("writes"), Route::Queued);
        drop(spool);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn on_a_runtime_the_deleting_happens_off_the_caller_and_still_happens() {
        let (dir, spool, tickets) = spool_with_a_spent_segment();
        spool.appended(&tickets[..SEGMENT_EVENTS as usize]);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while files(&dir).len() != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the spent file was never deleted: {:?}",
                files(&dir)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Its lock went with it: the file left is the live one, which this process still holds.
        let live = File::open(&files(&dir)[0]).expect("opens");
        assert!(live.try_lock().is_err(), "the live segment is still held");
        drop(spool);
        let _ = std::fs::remove_dir(&dir);
    }
}
