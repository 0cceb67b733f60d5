//! The runtime of the bookkeeping that no request waits for: the relay, the projectors, the
//! alert evaluator and notifier, the monitors, audit checkpoints and period closing. Its worker
//! threads run under Linux's `SCHED_IDLE` policy (or, with it off, at a higher nice value), so on
//! a busy machine the kernel runs a request first and the bookkeeping in the gaps; the threads
//! they start (librdkafka's, for the consumers and the relay's producer, created on them)
//! inherit the policy. Bookkeeping that falls behind under a burst catches up after it: its lag
//! is measured and alerted (`docs/ARCHITECTURE.md`, "Bookkeeping off the request path").

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

/// Worker threads, their nice value and whether they run under `SCHED_IDLE`
/// (`AIHUB_BACKGROUND_THREADS`, `AIHUB_BACKGROUND_NICE`, `AIHUB_BACKGROUND_IDLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackgroundSettings {
    pub threads: usize,
    pub nice: i32,
    pub idle: bool,
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
    let BackgroundSettings { nice, idle, .. } = settings;
    let runtime = Builder::new_multi_thread()
        .worker_threads(settings.threads)
        .max_blocking_threads(8)
        .thread_name("aihub-background")
        .on_thread_start(move || {
            if idle {
                run_when_idle();
            }
            lower_priority(nice);
        })
        .enable_all()
        .build()?;
    // Two callers racing: the loser's runtime is dropped here, outside any async context.
    let _ = RUNTIME.set(runtime);
    Ok(RUNTIME
        .get()
        .map(|runtime| runtime.handle().clone())
        .unwrap_or_else(Handle::current))
}

/// Puts the calling thread under `SCHED_IDLE`: it runs only when no thread of a normal policy
/// wants the CPU, and one that wakes preempts it at once. A nice value cannot give that: under
/// the kernel's EEVDF scheduler a niced thread that holds the CPU keeps it to the end of its time
/// slice (a millisecond or more) before a woken request thread runs; the value only lowers its
/// share. Measured: the c=4 p99 of the side-by-side bench fell by a fifth (BENCHMARKS.md,
/// "session 16"). An unprivileged thread may always switch to it; a failure is said once and
/// leaves the thread at its nice value.
fn run_when_idle() {
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
        NormalThreadSchedulePolicy, ThreadSchedulePolicy,
    };
    use thread_priority::ThreadPriority;
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    // For `SCHED_IDLE` the only priority is 0, and the crate sets the policy and then the
    // thread's nice value to 0: no change, as this runs before `lower_priority`, unless the
    // process was started niced, when an unprivileged thread may not raise it back. The policy
    // is what counts, so only a thread that did not get it says so.
    let result = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle);
    if matches!(thread_schedule_policy(), Ok(policy) if policy == idle) {
        return;
    }
    static WARNED: OnceLock<()> = OnceLock::new();
    WARNED.get_or_init(|| {
        tracing::warn!(error = ?result.err(), "could not put the background threads under SCHED_IDLE; they keep their nice value");
    });
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
    use thread_priority::unix::{
        thread_schedule_policy, NormalThreadSchedulePolicy, ThreadSchedulePolicy,
    };

    use super::*;

    const IDLE: ThreadSchedulePolicy =
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);

    #[test]
    fn background_threads_run_idle_and_lower_and_request_threads_do_not() {
        let handle = handle(BackgroundSettings {
            threads: 1,
            nice: 7,
            idle: true,
        })
        .expect("runtime");
        let before = rustix::process::getpriority_process(None).expect("priority");
        let policy_before = thread_schedule_policy().expect("policy");
        assert_ne!(policy_before, IDLE, "the test's own thread");
        let (nice, policy, started) = std::thread::spawn(move || {
            handle.block_on(async {
                tokio::spawn(async {
                    // A thread a background task starts (as librdkafka's are) inherits it.
                    let started = std::thread::spawn(thread_schedule_policy)
                        .join()
                        .expect("thread");
                    (
                        rustix::process::getpriority_process(None),
                        thread_schedule_policy(),
                        started,
                    )
                })
                .await
                .expect("task")
            })
        })
        .join()
        .expect("thread");
        assert_eq!(
            nice.expect("priority"),
            (before + 7).min(19),
            "a worker's nice value"
        );
        assert_eq!(policy.expect("policy"), IDLE, "a worker's policy");
        assert_eq!(started.expect("policy"), IDLE, "a thread a worker started");
        assert_eq!(
            rustix::process::getpriority_process(None).expect("priority"),
            before,
            "the caller's nice value is unchanged"
        );
        assert_eq!(
            thread_schedule_policy().expect("policy"),
            policy_before,
            "the caller's policy is unchanged"
        );
    }
}
