//! One client connection: served by hyper, watched for the header-read and idle timeouts, told
//! to finish gracefully on shutdown.
//!
//! The watchdog does not rely on hyper's own `header_read_timeout`, which neither covers the
//! wait while the auto builder tells HTTP/1 from HTTP/2 nor applies to HTTP/2. It watches two
//! facts instead: how many requests the connection has in flight (from the service call to the
//! end of the response body) and when the client last started sending something while none was.
//! With no request in flight, a connection is closed
//!
//! - `header_read` after it was accepted, until its first request head is complete;
//! - `idle` after its last response ended (keep-alive);
//! - `header_read` after an HTTP/1 client began its next request head, if the head is still
//!   incomplete then.
//!
//! A connection with a request in flight is never closed by the watchdog: responses, streams
//! above all, may flow for as long as they flow.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::task::AtomicWaker;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper_util::server::graceful::GracefulConnection;
use pin_project::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tower::Service;

/// The two connection timeouts.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Until a request head is complete: from accept, or from the first byte of the next head.
    pub header_read: Duration,
    /// Keep-alive: from the end of the last response.
    pub idle: Duration,
}

/// What a connection has been doing, shared by its stream, its service and its watchdog.
/// Times are milliseconds since `accepted`.
#[derive(Debug)]
pub struct Activity {
    accepted: Instant,
    in_flight: AtomicUsize,
    served: AtomicBool,
    http2: AtomicBool,
    /// When the last request in flight ended.
    idle_since: AtomicU64,
    /// When, with no request in flight, the client began sending again; 0: it has not.
    head_started: AtomicU64,
}

/// The watchdog's finding at one instant.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Look again at this instant.
    Wait(Instant),
    /// Close the connection, for this reason.
    Expired(&'static str),
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
        })
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.accepted).as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, millis: u64) -> Instant {
        self.accepted + Duration::from_millis(millis)
    }

    /// A request head is complete and handed to the service.
    fn request_started(self: &Arc<Self>, version: http::Version) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.served.store(true, Ordering::SeqCst);
        self.head_started.store(0, Ordering::SeqCst);
        if version == http::Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        InFlight(self.clone())
    }

    /// The client sent bytes: with no request in flight on HTTP/1, a request head has begun.
    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.served.load(Ordering::Relaxed)
            && !self.http2.load(Ordering::Relaxed)
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            // +1: 0 means "not started".
            let now = self.millis(Instant::now()).saturating_add(1);
            let _ = self
                .head_started
                .compare_exchange(0, now, Ordering::SeqCst, Ordering::Relaxed);
        }
    }

    /// Whether the connection has expired at `now`, or when to look again. Looking again at
    /// least every `min(header_read, idle)` keeps each close on time: no change of state can
    /// bring a deadline nearer than that.
    fn check(&self, now: Instant, limits: &ConnectionLimits) -> Verdict {
        let look_again = now + limits.header_read.min(limits.idle);
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Verdict::Wait(look_again);
        }
        let (mut deadline, mut reason) = if self.served.load(Ordering::SeqCst) {
            let idle_since = self.at(self.idle_since.load(Ordering::SeqCst));
            (idle_since + limits.idle, "idle timeout")
        } else {
            (self.accepted + limits.header_read, "header read timeout")
        };
        match self.head_started.load(Ordering::SeqCst) {
            0 => {}
            started => {
                let head_deadline = self.at(started - 1) + limits.header_read;
                if head_deadline < deadline {
                    (deadline, reason) = (head_deadline, "header read timeout");
                }
            }
        }
        if now >= deadline {
            Verdict::Expired(reason)
        } else {
            Verdict::Wait(deadline.min(look_again))
        }
    }
}

/// One request in flight; its drop ends it.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // The time first, so a watchdog that sees no request in flight sees this end.
        let now = self.0.millis(Instant::now());
        self.0.idle_since.fetch_max(now, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The accepted TCP stream, telling [`Activity`] when the client sends.
#[derive(Debug)]
pub struct WatchedStream {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl WatchedStream {
    pub fn new(stream: TcpStream, activity: Arc<Activity>) -> Self {
        WatchedStream { stream, activity }
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The proxy service for one connection: counts each request in flight until its response
/// body ends or is dropped.
#[derive(Debug, Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Tracked { inner, activity }
    }
}

impl<S, B, R> Service<Request<B>> for Tracked<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<TrackedBody<R>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let in_flight = self.activity.request_started(request.version());
        TrackedFuture {
            inner: self.inner.call(request),
            in_flight: Some(in_flight),
        }
    }
}

/// Future of [`Tracked`]: hands the request's [`InFlight`] to the response body.
#[pin_project]
#[derive(Debug)]
pub struct TrackedFuture<F> {
    #[pin]
    inner: F,
    in_flight: Option<InFlight>,
}

impl<F, R, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<TrackedBody<R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let in_flight = this.in_flight.take();
        Poll::Ready(result.map(|response| response.map(|inner| TrackedBody { inner, in_flight })))
    }
}

/// A response body that ends its request's [`InFlight`] at its end or drop.
#[pin_project]
#[derive(Debug)]
pub struct TrackedBody<B> {
    #[pin]
    inner: B,
    in_flight: Option<InFlight>,
}

impl<B: Body<Data = Bytes>> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        if frame.is_none() || this.inner.is_end_stream() {
            this.in_flight.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Drives `connection` to its end, closing it (by dropping it) when the watchdog finds it
/// expired, and asking it to finish gracefully once `stop` turns true.
pub fn serve<C>(
    connection: C,
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) -> Supervised<C>
where
    C: GracefulConnection,
{
    Supervised {
        connection,
        timer: tokio::time::sleep_until(activity.accepted),
        stop: Some(Box::pin(async move {
            // An error means the sender is gone: stop too.
            let _ = stop.wait_for(|stop| *stop).await;
        })),
        watchdog: Arc::new(WatchdogWaker {
            // Set, so that the first poll arms the timer and the stop signal.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        }),
        activity,
        limits,
    }
}

/// Future of [`serve`]. The connection is polled on every wake-up of the task (each frame of
/// a stream is one); the timer and the stop signal only when they woke it themselves, through
/// a waker of their own — `select!` would poll all three every time.
#[pin_project]
pub struct Supervised<C> {
    #[pin]
    connection: C,
    #[pin]
    timer: Sleep,
    stop: Option<BoxFuture<'static, ()>>,
    watchdog: Arc<WatchdogWaker>,
    activity: Arc<Activity>,
    limits: ConnectionLimits,
}

/// The waker of the timer and the stop signal: notes that one of them fired, wakes the task.
#[derive(Debug)]
struct WatchdogWaker {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for WatchdogWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<C: GracefulConnection> Future for Supervised<C> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        this.watchdog.task.register(cx.waker());
        if this.watchdog.woken.swap(false, Ordering::AcqRel) {
            let waker = Waker::from(this.watchdog.clone());
            let mut watchdog = Context::from_waker(&waker);
            if let Some(stop) = this.stop.as_mut() {
                if stop.as_mut().poll(&mut watchdog).is_ready() {
                    *this.stop = None;
                    this.connection.as_mut().graceful_shutdown();
                }
            }
            // Polled again after each reset, so the timer is armed when the loop ends.
            while this.timer.as_mut().poll(&mut watchdog).is_ready() {
                match this.activity.check(Instant::now(), this.limits) {
                    Verdict::Wait(at) => this.timer.as_mut().reset(at),
                    Verdict::Expired(reason) => {
                        tracing::debug!(reason, "connection closed");
                        return Poll::Ready(());
                    }
                }
            }
        }
        this.connection.poll(cx).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_expires_after_the_header_read_timeout() {
        let activity = Activity::new();
        let start = activity.accepted;
        assert_eq!(
            activity.check(start, &LIMITS),
            Verdict::Wait(start + LIMITS.header_read)
        );
        assert_eq!(
            activity.check(start + LIMITS.header_read, &LIMITS),
            Verdict::Expired("header read timeout")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_never_expires_and_idle_counts_from_its_end() {
        let activity = Activity::new();
        let request = activity.request_started(http::Version::HTTP_11);
        tokio::time::advance(Duration::from_secs(600)).await;
        let now = Instant::now();
        assert!(matches!(activity.check(now, &LIMITS), Verdict::Wait(_)));
        drop(request);
        assert_eq!(
            activity.check(now, &LIMITS),
            Verdict::Wait(now + LIMITS.header_read),
            "looked at again at least every min(header_read, idle)"
        );
        let later = now + LIMITS.idle - Duration::from_secs(1);
        assert_eq!(
            activity.check(later, &LIMITS),
            Verdict::Wait(now + LIMITS.idle)
        );
        assert_eq!(
            activity.check(now + LIMITS.idle, &LIMITS),
            Verdict::Expired("idle timeout")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_next_http1_head_begun_must_complete_within_the_header_read_timeout() {
        let activity = Activity::new();
        drop(activity.request_started(http::Version::HTTP_11));
        tokio::time::advance(Duration::from_secs(5)).await;
        activity.bytes_read();
        let now = Instant::now();
        assert_eq!(
            activity.check(now, &LIMITS),
            Verdict::Wait(now + LIMITS.header_read)
        );

        let http2 = Activity::new();
        drop(http2.request_started(http::Version::HTTP_2));
        http2.bytes_read(); // a PING or WINDOW_UPDATE, not a request head
        let now = Instant::now();
        let later = now + LIMITS.header_read;
        assert_eq!(
            http2.check(later, &LIMITS),
            Verdict::Wait(later + LIMITS.header_read),
            "not closed at the header-read timeout: looked at again later"
        );
        assert_eq!(
            http2.check(now + LIMITS.idle, &LIMITS),
            Verdict::Expired("idle timeout")
        );
    }
}
