//! The body tees: request and response bodies forwarded frame for frame, untouched, while the
//! call keeps what it needs to decode them.

use std::fmt::Display;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project::{pin_project, pinned_drop};

use crate::call::{Ending, InFlightCall, RequestCapture};

/// Request body handed to the inner service. For calls that are not LLM calls it is the
/// original body with no capture; for LLM calls, frames are forwarded as they are and a bounded
/// copy (refcounted `Bytes`, not a memcpy) is kept for decoding.
///
/// A request body dropped unread — the inner service failed before sending it, e.g. the
/// upstream was unreachable — gives up the frames it already holds, so the call still records
/// the request it was.
#[pin_project(PinnedDrop)]
#[derive(Debug)]
pub struct RequestBody<B> {
    #[pin]
    inner: B,
    capture: Option<Box<RequestCapture>>,
    /// Takes the frames that are ready when the body is dropped before its end.
    drain: Option<fn(Pin<&mut B>, &mut RequestCapture)>,
}

impl<B> RequestBody<B> {
    pub(crate) fn plain(inner: B) -> Self {
        RequestBody {
            inner,
            capture: None,
            drain: None,
        }
    }

    pub(crate) fn observed(inner: B, capture: RequestCapture) -> Self
    where
        B: Body<Data = Bytes>,
    {
        RequestBody {
            inner,
            capture: Some(Box::new(capture)),
            drain: Some(drain_ready::<B>),
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some(capture) = this.capture.as_mut() {
            capture_frame(capture, &frame, this.inner.is_end_stream());
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

#[pinned_drop]
impl<B> PinnedDrop for RequestBody<B> {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        if let (Some(capture), Some(drain)) = (this.capture.as_mut(), *this.drain) {
            if capture.wants_more() {
                drain(this.inner, capture);
            }
        }
    }
}

/// How many ready frames a dropped request body gives up at most.
const DRAIN_FRAMES: usize = 1024;

/// What one polled request frame means for its capture: data is kept; the end of the body, or
/// a frame after which the body says it is at its end, completes it; an error ends it early.
fn capture_frame<E>(
    capture: &mut RequestCapture,
    frame: &Option<Result<Frame<Bytes>, E>>,
    at_end: bool,
) {
    match frame {
        Some(Ok(frame)) => {
            if let Some(data) = frame.data_ref() {
                capture.frame(data);
            }
            if at_end {
                capture.end(true);
            }
        }
        Some(Err(_)) => capture.end(false),
        None => capture.end(true),
    }
}

/// Feeds the capture the frames `body` has ready now — never waiting, never past the capture
/// limit — as [`RequestBody::poll_frame`] would have.
fn drain_ready<B: Body<Data = Bytes>>(mut body: Pin<&mut B>, capture: &mut RequestCapture) {
    if body.is_end_stream() {
        capture.end(true);
        return;
    }
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..DRAIN_FRAMES {
        let Poll::Ready(frame) = body.as_mut().poll_frame(&mut cx) else {
            // Not ready: what was captured is decoded as incomplete.
            return;
        };
        capture_frame(capture, &frame, body.is_end_stream());
        if !capture.wants_more() {
            return;
        }
    }
}

/// Response body handed back to the caller: the inner body's frames, untouched, in order, as
/// soon as they arrive. For LLM calls each data frame is also fed to the call's decoder, and
/// the call finishes when the body ends, fails, or is dropped early (cancelled: the call ends
/// itself when dropped unfinished).
#[pin_project]
#[derive(Debug)]
pub struct ResponseBody<B> {
    #[pin]
    inner: B,
    call: Option<Box<InFlightCall>>,
}

impl<B> ResponseBody<B> {
    pub(crate) fn plain(inner: B) -> Self {
        ResponseBody { inner, call: None }
    }

    /// Tees `inner` for `call`. A body that is already at its end may never be polled, so its
    /// call completes here.
    pub(crate) fn observed(inner: B, call: Box<InFlightCall>) -> Self
    where
        B: Body,
    {
        if inner.is_end_stream() {
            call.finish(Ending::Completed);
            return ResponseBody::plain(inner);
        }
        ResponseBody {
            inner,
            call: Some(call),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some(call) = this.call.as_mut() {
            let ending = match &frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        call.response_frame(data);
                    }
                    // A body that knows it is done may never be polled again.
                    this.inner.is_end_stream().then_some(Ending::Completed)
                }
                Some(Err(error)) => Some(Ending::BodyError(error.to_string())),
                None => Some(Ending::Completed),
            };
            if let Some(ending) = ending {
                if let Some(call) = this.call.take() {
                    call.finish(ending);
                }
            }
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
