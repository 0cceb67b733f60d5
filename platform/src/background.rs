//! The runtime of the bookkeeping that no request waits for: the relay, the projectors, the
//! alert evaluator and notifier, the monitors, audit checkpoints and period closing. Its worker
//! threads run at a lower CPU priority (a higher nice value) than the request-serving runtime's,
//! so on a busy machine the kernel runs a request first and the bookkeeping in the gaps; the
//! threads they start (librdkafka's, for the consumers and the relay's producer, created on
//! them) inherit the priority. Bookkeeping that falls behind under a burst catches up after it:
//! its lag is measured and alerted (`docs/ARCHITECTURE.md`, "Bookkeeping off the request path").

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

/// Worker threads and their nice value (`AIHUB_BACKGROUND_THREADS`, `AIHUB_BACKGROUND_NICE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackgroundSettings {
    pub threads: usize,
    pub nice: i32,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The process's background runtime, built on first use with `settings` (later settings are
/// ignored: one process, one background runtime). It lives as long as the process, so it is
/// never dropped inside the async context that uses it. With 0 threads, the caller's runtime.
pub fn handle(settings: BackgroundSettings) -> std::io::Result<Handle> {
    if settings.threads == 0 {
        return Ok(Handle::current());
    }
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.handle().clone());
    }
    let nice = settings.nice;
    let runtime = Builder::new_multi_thread()
        .worker_threads(settings.threads)
        .max_blocking_threads(8)
        .thread_name("aihub-background")
        .on_thread_start(move || lower_priority(nice))
        .enable_all()
        .build()?;
    // Two callers racing: the loser's runtime is dropped here, outside any async context.
    let _ = RUNTIME.set(runtime);
    Ok(RUNTIME
        .get()
        .map(|runtime| runtime.handle().clone())
        .unwrap_or_else(Handle::current))
}

/// Adds `nice` to the calling thread's nice value (Linux keeps it per thread), up to 19. A
/// thread that may not keeps running at its priority, and says so once.
fn lower_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    // `None`: the calling thread, on Linux.
    let result = rustix::process::getpriority_process(None)
        .and_then(|now| rustix::process::setpriority_process(None, (now + nice).min(19)));
    if let Err(e) = result {
        static WARNED: OnceLock<()> = OnceLock::new();
        WARNED.get_or_init(|| {
            tracing::warn!(error = %e, nice, "could not lower the background threads' priority");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_threads_run_at_the_lower_priority_and_request_threads_do_not() {
        let handle = handle(BackgroundSettings {
            threads: 1,
            nice: 7,
        })
        .expect("runtime");
        let before = rustix::process::getpriority_process(None).expect("priority");
        let inside = std::thread::spawn(move || {
            handle.block_on(async {
                tokio::spawn(async { rustix::process::getpriority_process(None) })
                    .await
                    .expect("task")
            })
        })
        .join()
        .expect("thread")
        .expect("priority");
        assert_eq!(inside, (before + 7).min(19), "a worker's nice value");
        assert_eq!(
            rustix::process::getpriority_process(None).expect("priority"),
            before,
            "the caller's is unchanged"
        );
    }
}
