//! The body tees: request and response bodies forwarded frame for frame, untouched, while the
//! call keeps what it needs to decode them.

use std::fmt::Display;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project::{pin_project, pinned_drop};

use crate::call::{Ending, InFlightCall, RequestCapture};
use crate::wire::openai::include_usage::UsageStrip;

/// Request body handed to the inner service. For calls that are not LLM calls it is the
/// original body with no capture; for LLM calls, frames are forwarded as they are and a bounded
/// copy (refcounted `Bytes`, not a memcpy) is kept for decoding.
///
/// A request body dropped unread — the inner service failed before sending it, e.g. the
/// upstream was unreachable — gives up the frames it already holds, so the call still records
/// the request it was.
#[pin_project(PinnedDrop)]
#[derive(Debug)]
pub struct RequestBody<B: Body> {
    #[pin]
    inner: Source<B>,
    capture: Option<Box<RequestCapture>>,
    /// Takes the frames that are ready when the body is dropped before its end.
    drain: Option<fn(Pin<&mut B>, &mut RequestCapture)>,
}

/// Where a request body's frames come from: the body itself, or — when the layer read it
/// before calling the inner service ([`StreamUsage::Ask`](crate::StreamUsage::Ask)) — what it
/// read, then the rest of the body.
#[pin_project(project = SourceProj)]
#[derive(Debug)]
enum Source<B: Body> {
    Direct(#[pin] B),
    Read(Box<ReadBody<B>>),
}

/// A request body the layer has read (all of it, or up to a limit or an error).
pub(crate) struct ReadBody<B: Body> {
    /// Data to send first, in order.
    pub(crate) data: std::collections::VecDeque<Bytes>,
    /// Trailers that ended the body.
    pub(crate) trailers: Option<http::HeaderMap>,
    /// The error the body failed with while it was read.
    pub(crate) error: Option<B::Error>,
    /// Whether the body was read to its end (nothing is left in `rest`).
    pub(crate) ended: bool,
    /// The body, polled for more once `data` is sent and the body was not read to its end.
    pub(crate) rest: Pin<Box<B>>,
}

impl<B: Body> std::fmt::Debug for ReadBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBody")
            .field("data", &self.data)
            .field("ended", &self.ended)
            .field("failed", &self.error.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: Body<Data = Bytes>> ReadBody<B> {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(data) = self.data.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        if let Some(error) = self.error.take() {
            self.ended = true;
            return Poll::Ready(Some(Err(error)));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        self.rest.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
            && self.trailers.is_none()
            && self.error.is_none()
            && (self.ended || self.rest.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let held: u64 = self.data.iter().map(|d| d.len() as u64).sum();
        if self.ended && self.error.is_none() {
            return SizeHint::with_exact(held);
        }
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(held.saturating_add(rest.lower()));
        if let Some(upper) = rest.upper() {
            hint.set_upper(held.saturating_add(upper));
        }
        hint
    }
}

impl<B: Body> RequestBody<B> {
    pub(crate) fn plain(inner: B) -> Self {
        RequestBody {
            inner: Source::Direct(inner),
            capture: None,
            drain: None,
        }
    }

    pub(crate) fn observed(inner: B, capture: RequestCapture) -> Self
    where
        B: Body<Data = Bytes>,
    {
        RequestBody {
            inner: Source::Direct(inner),
            capture: Some(Box::new(capture)),
            drain: Some(drain_ready::<B>),
        }
    }

    /// A body the layer read before calling the inner service.
    pub(crate) fn read(read: ReadBody<B>) -> Self {
        RequestBody {
            inner: Source::Read(Box::new(read)),
            capture: None,
            drain: None,
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        match &self.inner {
            Source::Direct(inner) => inner,
            Source::Read(read) => &read.rest,
        }
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
        let this = self.project();
        let mut inner = match this.inner.project() {
            SourceProj::Direct(inner) => inner,
            SourceProj::Read(read) => return read.poll_frame(cx),
        };
        let frame = ready!(inner.as_mut().poll_frame(cx));
        if let Some(capture) = this.capture.as_mut() {
            capture_frame(capture, &frame, inner.is_end_stream());
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Source::Direct(inner) => inner.is_end_stream(),
            Source::Read(read) => read.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Source::Direct(inner) => inner.size_hint(),
            Source::Read(read) => read.size_hint(),
        }
    }
}

#[pinned_drop]
impl<B: Body> PinnedDrop for RequestBody<B> {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        if let (Some(capture), Some(drain), SourceProj::Direct(inner)) =
            (this.capture.as_mut(), *this.drain, this.inner.project())
        {
            if capture.wants_more() {
                drain(inner, capture);
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
    /// [`StreamUsage::Ask`](crate::StreamUsage::Ask): what `include_usage` added is taken out
    /// of the stream the client receives.
    strip: Option<Box<Strip>>,
}

/// The rewrite of a stream whose request the layer gave `include_usage`.
#[derive(Debug)]
struct Strip {
    usage: UsageStrip,
    /// Trailers that came while bytes were held; sent after them.
    trailers: Option<http::HeaderMap>,
    /// The inner body ended and everything held was sent.
    done: bool,
}

impl<B> ResponseBody<B> {
    pub(crate) fn plain(inner: B) -> Self {
        ResponseBody {
            inner,
            call: None,
            strip: None,
        }
    }

    /// The client gets the stream less what `include_usage` added (see
    /// [`UsageStrip`]): for a response to a request the layer rewrote.
    pub(crate) fn strip_usage(mut self) -> Self {
        self.strip = Some(Box::new(Strip {
            usage: UsageStrip::new(),
            trailers: None,
            done: false,
        }));
        self
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
            strip: None,
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
        if let Some(strip) = this.strip.as_deref_mut() {
            return poll_stripped(this.inner, this.call, strip, cx);
        }
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if this.call.is_some() {
            observe_frame(this.call, &frame, this.inner.is_end_stream());
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.strip {
            None => self.inner.is_end_stream(),
            Some(strip) => {
                strip.done
                    || (strip.trailers.is_none()
                        && !strip.usage.holds_bytes()
                        && self.inner.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.strip {
            None => self.inner.size_hint(),
            // The rewrite removes bytes: how many is not known ahead.
            Some(_) => SizeHint::new(),
        }
    }
}

/// Feeds a polled response frame to its call, and finishes the call at the body's end.
fn observe_frame<E: Display>(
    call: &mut Option<Box<InFlightCall>>,
    frame: &Option<Result<Frame<Bytes>, E>>,
    at_end: bool,
) {
    let Some(in_flight) = call.as_mut() else {
        return;
    };
    let ending = match frame {
        Some(Ok(frame)) => {
            if let Some(data) = frame.data_ref() {
                in_flight.response_frame(data);
            }
            // A body that knows it is done may never be polled again.
            at_end.then_some(Ending::Completed)
        }
        Some(Err(error)) => Some(Ending::BodyError(error.to_string())),
        None => Some(Ending::Completed),
    };
    if let Some(ending) = ending {
        if let Some(call) = call.take() {
            call.finish(ending);
        }
    }
}

/// [`ResponseBody::poll_frame`] for a stream being rewritten: the call sees the frames as they
/// came; the client gets whole events less what `include_usage` added, with no empty frames.
#[cold]
fn poll_stripped<B>(
    mut inner: Pin<&mut B>,
    call: &mut Option<Box<InFlightCall>>,
    strip: &mut Strip,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, B::Error>>>
where
    B: Body<Data = Bytes>,
    B::Error: Display,
{
    loop {
        if let Some(trailers) = strip.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        if strip.done {
            return Poll::Ready(None);
        }
        let frame = ready!(inner.as_mut().poll_frame(cx));
        observe_frame(call, &frame, inner.is_end_stream());
        match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let out = strip.usage.frame(data);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Err(frame) => {
                    let held = strip.usage.finish();
                    if held.is_empty() {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    strip.trailers = frame.into_trailers().ok();
                    return Poll::Ready(Some(Ok(Frame::data(held))));
                }
            },
            // What is held is an incomplete event: of no use to the client.
            Some(Err(error)) => return Poll::Ready(Some(Err(error))),
            None => {
                strip.done = true;
                let held = strip.usage.finish();
                if !held.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(held))));
                }
            }
        }
    }
}
