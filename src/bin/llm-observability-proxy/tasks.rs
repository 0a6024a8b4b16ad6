//! Every task that may hold a call: connection tasks and the per-stream tasks hyper spawns for
//! HTTP/2. On shutdown they are awaited until the deadline.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

/// Spawns tasks and keeps count of those not yet dropped. Also the executor hyper spawns
/// HTTP/2 streams on.
#[derive(Debug, Clone)]
pub struct Tasks(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Tasks spawned and not yet dropped.
    live: watch::Sender<usize>,
}

/// Lives inside a task's future: its drop, at the task's end, unregisters the task.
struct Registration {
    tasks: Arc<Inner>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.tasks.live.send_modify(|live| *live -= 1);
    }
}

impl Tasks {
    pub fn new() -> Self {
        Tasks(Arc::new(Inner {
            live: watch::Sender::new(0),
        }))
    }

    /// Spawns `task` on the current runtime and keeps track of it until it is dropped.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.0.live.send_modify(|live| *live += 1);
        let registration = Registration {
            tasks: self.0.clone(),
        };
        tokio::spawn(async move {
            let _registration = registration;
            task.await;
        });
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
    async fn wait_until_sees_every_task_end() {
        let tasks = Tasks::new();
        let (open, opened) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn(async move {
            let _ = opened.await;
        });
        tasks.spawn(async {});
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(!tasks.wait_until(soon).await, "one task waits");
        let _ = open.send(());
        assert!(
            tasks
                .wait_until(Instant::now() + Duration::from_secs(15))
                .await
        );
        assert_eq!(tasks.live(), 0);
    }
}
