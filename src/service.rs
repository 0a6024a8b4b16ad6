//! The tower service the layer produces, and its response future.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project::pin_project;
use tower_service::Service;

use crate::body::{ReadBody, RequestBody, ResponseBody};
use crate::call::{Ending, InFlightCall, Observer, RequestCapture};
use crate::wire::endpoint::Endpoint;
use crate::wire::openai::include_usage::add_include_usage;
use std::collections::VecDeque;

/// Middleware that observes OpenAI-shaped calls; built by
/// [`LlmObservabilityLayer`](crate::LlmObservabilityLayer).
#[derive(Debug, Clone)]
pub struct LlmObservabilityService<S> {
    inner: S,
    observer: Arc<Observer>,
}

impl<S> LlmObservabilityService<S> {
    pub(crate) fn new(inner: S, observer: Arc<Observer>) -> Self {
        LlmObservabilityService { inner, observer }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, R> Service<Request<B>> for LlmObservabilityService<S>
where
    B: Body<Data = Bytes>,
    S: Service<Request<RequestBody<B>>, Response = Response<R>> + Clone,
    S::Error: Display,
    R: Body,
{
    type Response = Response<ResponseBody<R>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let Some(endpoint) = self
            .observer
            .matcher
            .classify(request.method(), request.uri())
        else {
            return ResponseFuture::called(self.inner.call(request.map(RequestBody::plain)), None);
        };
        let mut call = self.observer.start(
            endpoint,
            request.uri(),
            request.headers(),
            request.extensions(),
        );
        let capture = call.capture_request();
        let (mut parts, body) = request.into_parts();
        call.prepare_request(&mut parts.headers, &mut parts.extensions);
        if self.observer.ask_stream_usage && endpoint == Endpoint::ChatCompletions {
            return self.read_first(parts, body, capture, call);
        }
        let request = Request::from_parts(parts, RequestBody::observed(body, capture));
        let inner = {
            let _entered = call.span().enter();
            self.inner.call(request)
        };
        ResponseFuture::called(inner, Some(Box::new(call)))
    }
}

impl<S: Clone> LlmObservabilityService<S> {
    /// [`StreamUsage::Ask`](crate::StreamUsage::Ask): the request body is read before the inner
    /// service is called, so that `include_usage` can be added to it. The service that was
    /// made ready goes with the future; a clone takes its place.
    #[cold]
    fn read_first<F, B: Body>(
        &mut self,
        parts: http::request::Parts,
        body: B,
        capture: RequestCapture,
        call: InFlightCall,
    ) -> ResponseFuture<F, S, B> {
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Reading {
                read: Some(Box::new(Reading {
                    service,
                    parts,
                    body: Box::pin(body),
                    frames: VecDeque::new(),
                    len: 0,
                    limit: self.observer.request_limit,
                    capture,
                    call,
                })),
            },
        }
    }
}

/// A request whose body the layer reads before calling the inner service.
struct Reading<S, B: Body> {
    service: S,
    parts: http::request::Parts,
    body: Pin<Box<B>>,
    frames: VecDeque<Bytes>,
    len: usize,
    limit: usize,
    capture: RequestCapture,
    call: InFlightCall,
}

impl<S, B: Body> std::fmt::Debug for Reading<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reading")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<S, B: Body<Data = Bytes>> Reading<S, B> {
    /// Reads the body: to its end (then adds `include_usage` when the request lacks it), or up
    /// to the limit or an error (then it goes on as it is). Returns the request for the inner
    /// service and whether it was rewritten.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<ReadOutcome<B>> {
        let mut trailers = None;
        loop {
            if self.body.is_end_stream() {
                break;
            }
            match ready!(self.body.as_mut().poll_frame(cx)) {
                None => break,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.capture.frame(&data);
                        self.len += data.len();
                        self.frames.push_back(data);
                        if self.len > self.limit {
                            // Too large to hold: it goes on as it is, the rest as it comes.
                            return Poll::Ready(ReadOutcome::partial(None, false, None));
                        }
                    }
                    Err(frame) => {
                        trailers = frame.into_trailers().ok();
                        break;
                    }
                },
                Some(Err(error)) => {
                    self.capture.end(false);
                    return Poll::Ready(ReadOutcome::partial(None, true, Some(error)));
                }
            }
        }
        self.capture.end(true);
        let mut body = Vec::with_capacity(self.len);
        for frame in &self.frames {
            body.extend_from_slice(frame);
        }
        let Some(rewritten) = add_include_usage(&body) else {
            return Poll::Ready(ReadOutcome::partial(trailers, true, None));
        };
        let headers = &mut self.parts.headers;
        headers.remove(http::header::TRANSFER_ENCODING);
        headers.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(rewritten.len()),
        );
        self.frames = VecDeque::from([Bytes::from(rewritten)]);
        Poll::Ready(ReadOutcome {
            rewritten: true,
            ..ReadOutcome::partial(trailers, true, None)
        })
    }
}

/// How reading a request body ended.
struct ReadOutcome<B: Body> {
    trailers: Option<http::HeaderMap>,
    /// Read to its end (or to its error).
    ended: bool,
    error: Option<B::Error>,
    /// `include_usage` was added.
    rewritten: bool,
}

impl<B: Body> ReadOutcome<B> {
    fn partial(trailers: Option<http::HeaderMap>, ended: bool, error: Option<B::Error>) -> Self {
        ReadOutcome {
            trailers,
            ended,
            error,
            rewritten: false,
        }
    }
}

/// Future of [`LlmObservabilityService`]: polls the inner future inside the call's span and
/// wraps the response body in the tee. With [`StreamUsage::Ask`](crate::StreamUsage::Ask), a
/// chat request's body is read first, then the inner service called.
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F, S, B: Body> {
    #[pin]
    state: State<F, S, B>,
}

#[pin_project(project = StateProj)]
#[derive(Debug)]
enum State<F, S, B: Body> {
    Called {
        #[pin]
        inner: F,
        /// Dropped before the response head arrived: the call finishes itself as cancelled.
        call: Option<Box<InFlightCall>>,
        /// The request got `include_usage` from the layer: the response loses what it added.
        strip: bool,
    },
    /// Dropped while reading: the call finishes itself as cancelled.
    Reading { read: Option<Box<Reading<S, B>>> },
}

impl<F, S, B: Body> ResponseFuture<F, S, B> {
    fn called(inner: F, call: Option<Box<InFlightCall>>) -> Self {
        ResponseFuture {
            state: State::Called {
                inner,
                call,
                strip: false,
            },
        }
    }
}

impl<F, S, B, R, E> Future for ResponseFuture<F, S, B>
where
    F: Future<Output = Result<Response<R>, E>>,
    S: Service<Request<RequestBody<B>>, Future = F>,
    B: Body<Data = Bytes>,
    E: Display,
    R: Body,
{
    type Output = Result<Response<ResponseBody<R>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            let (inner, call, strip) = match this.state.project() {
                StateProj::Called { inner, call, strip } => (inner, call, *strip),
                StateProj::Reading { read } => {
                    let Some(reading) = read.as_mut() else {
                        // Not reachable: the state changes as soon as reading ends.
                        return Poll::Pending;
                    };
                    let outcome = ready!(reading.poll_read(cx));
                    let Some(reading) = read.take() else {
                        return Poll::Pending;
                    };
                    let Reading {
                        mut service,
                        parts,
                        body,
                        frames,
                        call,
                        ..
                    } = *reading;
                    let body = RequestBody::read(ReadBody {
                        data: frames,
                        trailers: outcome.trailers,
                        error: outcome.error,
                        ended: outcome.ended,
                        rest: body,
                    });
                    let inner = {
                        let _entered = call.span().enter();
                        service.call(Request::from_parts(parts, body))
                    };
                    self.as_mut().project().state.set(State::Called {
                        inner,
                        call: Some(Box::new(call)),
                        strip: outcome.rewritten,
                    });
                    continue;
                }
            };
            let result = match call.as_ref() {
                Some(call) => {
                    let _entered = call.span().enter();
                    ready!(inner.poll(cx))
                }
                None => ready!(inner.poll(cx)),
            };
            let Some(mut call) = call.take() else {
                return Poll::Ready(result.map(|response| response.map(ResponseBody::plain)));
            };
            return Poll::Ready(match result {
                Ok(mut response) => {
                    call.response_head(response.status(), response.headers());
                    response.extensions_mut().insert(call.call_id());
                    let strip = strip && strippable(&response);
                    if strip {
                        response.headers_mut().remove(http::header::CONTENT_LENGTH);
                    }
                    Ok(response.map(|body| {
                        let body = ResponseBody::observed(body, call);
                        if strip {
                            body.strip_usage()
                        } else {
                            body
                        }
                    }))
                }
                Err(error) => {
                    call.finish(Ending::TransportError(error.to_string()));
                    Err(error)
                }
            });
        }
    }
}

/// Whether a response to a request the layer gave `include_usage` can be rewritten: a
/// successful, uncompressed event stream (or a body with no content type, which the rewrite
/// passes through unless it is made of `data:` events).
fn strippable<R>(response: &Response<R>) -> bool {
    let headers = response.headers();
    let identity = headers
        .get(http::header::CONTENT_ENCODING)
        .is_none_or(|e| e.as_bytes().eq_ignore_ascii_case(b"identity"));
    let event_stream = headers.get(http::header::CONTENT_TYPE).is_none_or(|t| {
        t.to_str().is_ok_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
    });
    response.status().is_success() && identity && event_stream
}
