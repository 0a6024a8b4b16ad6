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

use crate::body::{RequestBody, ResponseBody};
use crate::call::{Ending, InFlightCall, Observer};

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
    S: Service<Request<RequestBody<B>>, Response = Response<R>>,
    S::Error: Display,
    R: Body,
{
    type Response = Response<ResponseBody<R>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let Some(endpoint) = self
            .observer
            .matcher
            .classify(request.method(), request.uri())
        else {
            return ResponseFuture {
                inner: self.inner.call(request.map(RequestBody::plain)),
                call: None,
            };
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
        let request = Request::from_parts(parts, RequestBody::observed(body, capture));
        let inner = {
            let _entered = call.span().enter();
            self.inner.call(request)
        };
        ResponseFuture {
            inner,
            call: Some(Box::new(call)),
        }
    }
}

/// Future of [`LlmObservabilityService`]: polls the inner future inside the call's span and
/// wraps the response body in the tee.
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    /// Dropped before the response head arrived: the call finishes itself as cancelled.
    call: Option<Box<InFlightCall>>,
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
    E: Display,
    R: Body,
{
    type Output = Result<Response<ResponseBody<R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.call.as_ref() {
            Some(call) => {
                let _entered = call.span().enter();
                ready!(this.inner.poll(cx))
            }
            None => ready!(this.inner.poll(cx)),
        };
        let Some(mut call) = this.call.take() else {
            return Poll::Ready(result.map(|response| response.map(ResponseBody::plain)));
        };
        Poll::Ready(match result {
            Ok(mut response) => {
                call.response_head(response.status(), response.headers());
                response.extensions_mut().insert(call.call_id());
                Ok(response.map(|body| ResponseBody::observed(body, call)))
            }
            Err(error) => {
                call.finish(Ending::TransportError(error.to_string()));
                Err(error)
            }
        })
    }
}
