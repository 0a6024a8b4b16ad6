//! The accept loop and the shutdown of connections: each accepted connection is served by
//! hyper on a task of its own, under its watchdog (`connection.rs`), until a signal stops the
//! loop; then connections are asked to finish, awaited, and cut off at the deadline.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::accept::Acceptor;
use crate::connection::{self, Activity, ConnectionLimits, Tracked, WatchedStream};
use crate::tasks::Tasks;
use crate::ProxyService;

/// Serves connections from `acceptor` with `service` until `stop` resolves, then tells every
/// connection to finish gracefully. Returns the tasks still serving them.
pub async fn serve_until(
    mut acceptor: Acceptor,
    service: ProxyService,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
) -> Tasks {
    let tasks = Tasks::new();
    // HTTP/2 streams run as tasks of their own: spawned on `tasks` too, so shutdown sees them.
    // No hyper timer: the watchdog keeps the time.
    let builder = auto::Builder::new(tasks.clone());
    let (stopping, stopped) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = acceptor.accept() => accepted,
            () = &mut stop => break,
        };
        let _ = accepted.stream.set_nodelay(true);
        let activity = Activity::new();
        let io = TokioIo::new(WatchedStream::new(accepted.stream, activity.clone()));
        let service = TowerToHyperService::new(Tracked::new(service.clone(), activity.clone()));
        let connection = builder.serve_connection(io, service).into_owned();
        let stop = stopped.clone();
        let permit = accepted.permit;
        tasks.spawn(async move {
            connection::serve(connection, activity, limits, stop).await;
            drop(permit);
        });
    }
    drop(acceptor);
    // `stopped` is still alive: the send cannot fail.
    let _ = stopping.send(true);
    tasks
}

/// Waits up to `deadline` for the connections to finish, then aborts those left and waits
/// until each is dropped: every call still in flight has then ended, as `cancelled`.
pub async fn drain(tasks: &Tasks, deadline: Duration) {
    tracing::info!("shutting down; waiting up to {deadline:?} for calls in flight");
    if tasks.wait_until(Instant::now() + deadline).await {
        return;
    }
    tracing::warn!(
        "{} connection task(s) still busy after {deadline:?}: cut off, each call in flight recorded as cancelled",
        tasks.live()
    );
    tasks.abort_all().await;
}
