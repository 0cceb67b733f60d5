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

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

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
}

struct State {
    current: Segment,
    /// Full segments, still locked, until every event in them is in the journal.
    sealed: Vec<Segment>,
    /// Every segment with events not yet all in the journal, by number.
    open: HashMap<u64, Tally>,
    next: u64,
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
    appended: u64,
    /// No more events go into it.
    sealed: bool,
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
        Ok(Self {
            dir: dir.to_path_buf(),
            fsync,
            state: Mutex::new(State {
                current,
                sealed: Vec::new(),
                open,
                next: 1,
            }),
        })
    }

    /// Writes an event's envelope (its JSON text, one line: the journal's encoding, so a call's
    /// event is serialized once) to the current file; returns where, for [`Spool::appended`].
    pub fn write(&self, envelope: &str) -> std::io::Result<Ticket> {
        let mut line = Vec::with_capacity(envelope.len() + 1);
        line.extend_from_slice(envelope.as_bytes());
        line.push(b'\n');
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
        state.current.file.write_all(&line)?;
        if self.fsync {
            state.current.file.sync_data()?;
        }
        state.current.written += 1;
        let number = state.current.number;
        if let Some(tally) = state.open.get_mut(&number) {
            tally.written += 1;
        }
        Ok(Ticket(number))
    }

    /// These events are in the journal: a file all of whose events are is deleted.
    pub fn appended(&self, tickets: &[Ticket]) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for ticket in tickets {
            if let Some(tally) = state.open.get_mut(&ticket.0) {
                tally.appended += 1;
            }
        }
        let spent = state.take_done();
        drop(state);
        delete_later(spent);
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
