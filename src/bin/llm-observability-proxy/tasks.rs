//! Every task that may hold a call: connection tasks and the per-stream tasks hyper spawns for
//! HTTP/2. On shutdown they are awaited until the deadline, then aborted and awaited until each
//! has been dropped, so every call still in flight ends — recorded as `cancelled` — before the
//! sinks are drained.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Spawns tasks and keeps count of those not yet dropped. Also the executor hyper spawns
/// HTTP/2 streams on.
#[derive(Debug, Clone)]
pub struct Tasks(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Tasks spawned and not yet dropped.
    live: watch::Sender<usize>,
    next_id: AtomicU64,
    handles: Mutex<HashMap<u64, AbortHandle>>,
}

/// Lives inside a task's future: its drop — at the task's end or abort — unregisters the task.
struct Registration {
    tasks: Arc<Inner>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.tasks.handles).remove(&self.id);
        self.tasks.live.send_modify(|live| *live -= 1);
    }
}

impl Tasks {
    pub fn new() -> Self {
        Tasks(Arc::new(Inner {
            live: watch::Sender::new(0),
            next_id: AtomicU64::new(0),
            handles: Mutex::new(HashMap::new()),
        }))
    }

    /// Spawns `task` on the current runtime and keeps track of it until it is dropped.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        self.0.live.send_modify(|live| *live += 1);
        let registration = Registration {
            tasks: self.0.clone(),
            id,
        };
        // Locked across the spawn, so the task cannot unregister before it is registered.
        let mut handles = lock(&self.0.handles);
        let handle = tokio::spawn(async move {
            let _registration = registration;
            task.await;
        });
        handles.insert(id, handle.abort_handle());
    }

    /// Tasks spawned and not yet dropped.
    pub fn live(&self) -> usize {
        *self.0.live.borrow()
    }

    /// Waits until no task is left, or `deadline`; true when none is left.
    pub async fn wait_until(&self, deadline: Instant) -> bool {
        let mut live = self.0.live.subscribe();
        let none_left = tokio::time::timeout_at(deadline, live.wait_for(|live| *live == 0)).await;
        none_left.is_ok()
    }

    /// Aborts every task (and any spawned meanwhile) and waits until each has been dropped.
    pub async fn abort_all(&self) {
        let mut live = self.0.live.subscribe();
        loop {
            for handle in lock(&self.0.handles).values() {
                handle.abort();
            }
            if *live.borrow_and_update() == 0 {
                return;
            }
            // The sender lives in `self`: `changed` cannot fail while we wait.
            let _ = live.changed().await;
        }
    }
}

fn lock(handles: &Mutex<HashMap<u64, AbortHandle>>) -> MutexGuard<'_, HashMap<u64, AbortHandle>> {
    // A panic while the lock was held cannot leave the map half-changed.
    handles
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<F> hyper::rt::Executor<F> for Tasks
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        self.spawn(future);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn abort_all_returns_once_every_task_is_dropped() {
        let tasks = Tasks::new();
        let (dropped_tx, mut dropped_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        for _ in 0..3 {
            let dropped = DropSignal(dropped_tx.clone());
            tasks.spawn(async move {
                let _dropped = dropped;
                std::future::pending::<()>().await;
            });
        }
        tasks.spawn(async {});
        drop(dropped_tx);
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(!tasks.wait_until(soon).await, "three tasks never end");
        tasks.abort_all().await;
        assert_eq!(tasks.live(), 0);
        let mut dropped = 0;
        while dropped_rx.try_recv().is_ok() {
            dropped += 1;
        }
        assert_eq!(
            dropped, 3,
            "each future was dropped before abort_all returned"
        );
    }

    struct DropSignal(tokio::sync::mpsc::UnboundedSender<()>);

    impl Drop for DropSignal {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
}
