//! Destroying a Kafka client talks to the broker and blocks while it is unreachable — exactly
//! when a client is dropped after a broker failure. Neither a runtime worker nor the runtime's
//! blocking pool may wait on that: a runtime being dropped waits for every blocking task, so one
//! close against a dead broker would hang the process's shutdown. These values are destroyed on
//! a detached thread of their own instead.

/// Owns a value and, when dropped, destroys it on a detached thread.
pub struct Detached<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> Detached<T> {
    pub fn new(value: T) -> Self {
        Self(Some(value))
    }

    /// Destroys the value on a detached thread now; the receiver hears when it is gone, so a
    /// caller may wait a bounded time for a clean close.
    pub fn close(mut self) -> tokio::sync::oneshot::Receiver<()> {
        close(self.0.take())
    }
}

impl<T: Send + 'static> std::ops::Deref for Detached<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // Only `close` and `drop` take the value, and both consume `self`.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("a Detached value is taken only when it ends"))
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        drop(close(self.0.take()));
    }
}

fn close<T: Send + 'static>(value: Option<T>) -> tokio::sync::oneshot::Receiver<()> {
    let (done, closed) = tokio::sync::oneshot::channel();
    if let Some(value) = value {
        let spawned = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || {
                drop(value);
                let _ = done.send(());
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start a thread to close a Kafka client");
        }
    }
    closed
}

#[cfg(test)]
mod tests {
    use super::Detached;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    struct Slow(Arc<AtomicBool>);

    impl Drop for Slow {
        fn drop(&mut self) {
            std::thread::sleep(Duration::from_millis(200));
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_slow_destructor_runs_off_the_caller_and_is_heard_when_done() {
        let gone = Arc::new(AtomicBool::new(false));
        let closed = Detached::new(Slow(gone.clone())).close();
        assert!(
            !gone.load(Ordering::SeqCst),
            "close returned before the slow drop"
        );
        closed.await.expect("heard");
        assert!(gone.load(Ordering::SeqCst));
    }

    #[test]
    fn a_runtime_with_a_slow_detached_drop_shuts_down_at_once() {
        let gone = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let value = Detached::new(Slow(gone.clone()));
        runtime.spawn(async move {
            let _held = value;
            std::future::pending::<()>().await;
        });
        drop(runtime);
        assert!(
            !gone.load(Ordering::SeqCst),
            "the runtime waited for the drop"
        );
    }
}
