//! The request-body timeout: a client that keeps the upstream waiting for its request body —
//! nothing at all for a while, or a trickle — has the body failed, and is answered 408.
//!
//! Only time spent waiting on the client counts: while the upstream is not reading (its own
//! back-pressure), no clock runs.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use tokio::time::{Instant, Sleep};

/// How long a request body may keep the upstream waiting.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// The longest wait for the next frame.
    pub stall: Duration,
    /// After the first `stall` of waiting in total, the body must average at least this many
    /// bytes per second of waiting (0: no minimum).
    pub min_rate: u64,
}

/// The error a timed-out body ends with; found again in the upstream error to answer 408.
#[derive(Debug, thiserror::Error)]
#[error("the client sent the request body too slowly (nothing for {stall:?}, or under {min_rate} bytes/s)")]
pub struct BodyTimeout {
    stall: Duration,
    min_rate: u64,
}

/// A request body that fails with [`BodyTimeout`] when the client keeps the reader waiting
/// longer than its [`BodyLimits`] allow.
#[pin_project]
#[derive(Debug)]
pub struct TimedBody<B> {
    #[pin]
    inner: B,
    limits: BodyLimits,
    received: u64,
    /// Time spent waiting on the client so far, not counting the wait in progress.
    waited: Duration,
    /// When the wait in progress began.
    waiting_since: Option<Instant>,
    /// Fires at the end of the wait in progress; made on the first wait.
    #[pin]
    timer: Option<Sleep>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, limits: BodyLimits) -> Self {
        TimedBody {
            inner,
            limits,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            timer: None,
        }
    }
}

impl BodyLimits {
    /// The total wait allowed after `received` bytes: `stall`, or more for a body that has
    /// sent enough to earn it at `min_rate`. Without a minimum rate, unlimited.
    fn total_wait(&self, received: u64) -> Duration {
        match self.min_rate {
            0 => Duration::MAX,
            rate => self
                .stall
                .max(Duration::from_secs_f64(received as f64 / rate as f64)),
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<crate::forward::BoxError>,
{
    type Data = Bytes;
    type Error = crate::forward::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            if let Some(since) = this.waiting_since.take() {
                *this.waited += since.elapsed();
            }
            if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                *this.received += data.map_or(0, |d| d.len() as u64);
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let now = Instant::now();
        let since = *this.waiting_since.get_or_insert(now);
        let allowed = this
            .limits
            .total_wait(*this.received)
            .saturating_sub(*this.waited);
        let deadline = since + this.limits.stall.min(allowed);
        let mut timer = this.timer;
        match timer.as_mut().as_pin_mut() {
            Some(sleep) if sleep.deadline() != deadline => sleep.reset(deadline),
            Some(_) => {}
            None => timer.set(Some(tokio::time::sleep_until(deadline))),
        }
        match timer.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Some(Err(Box::new(BodyTimeout {
                stall: this.limits.stall,
                min_rate: this.limits.min_rate,
            })))),
            _ => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The [`BodyTimeout`] that `error` is, or that caused it.
pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimeout> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(timeout) = error.downcast_ref::<BodyTimeout>() {
            return Some(timeout);
        }
        next = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn limits(stall: u64, min_rate: u64) -> BodyLimits {
        BodyLimits {
            stall: Duration::from_secs(stall),
            min_rate,
        }
    }

    #[test]
    fn a_slow_body_earns_waiting_time_by_the_bytes_it_sent() {
        let rated = limits(30, 500);
        assert_eq!(rated.total_wait(0), Duration::from_secs(30));
        assert_eq!(rated.total_wait(500 * 100), Duration::from_secs(100));
        assert_eq!(limits(30, 0).total_wait(1), Duration::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_fails_after_the_stall_time() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let stream = tokio_stream_from(rx);
        let mut body = std::pin::pin!(TimedBody::new(StreamBody::new(stream), limits(5, 0)));
        tx.send(Ok(Frame::data(Bytes::from_static(b"{"))))
            .await
            .expect("send");
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().ok(), Some(Bytes::from_static(b"{")));
        let error = body.frame().await.expect("an end").expect_err("timeout");
        assert!(find(&*error).is_some());
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_fails_once_it_falls_under_the_minimum_rate() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let mut body = std::pin::pin!(TimedBody::new(
            StreamBody::new(tokio_stream_from(rx)),
            limits(5, 500)
        ));
        tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tx
                    .send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let mut frames = 0;
        let error = loop {
            match body.frame().await.expect("no end") {
                Ok(_) => frames += 1,
                Err(error) => break error,
            }
        };
        assert!(find(&*error).is_some());
        assert!(
            frames < 10,
            "failed after {frames} one-byte frames, one a second"
        );
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
