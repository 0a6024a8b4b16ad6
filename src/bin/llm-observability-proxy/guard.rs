//! What stands between a client and the forwarder: `CONNECT` and paths that are not in
//! normal form (or would reach an LLM endpoint unrecorded) are answered here, every request
//! body that goes on is timed, and a call that fails below (an unreachable upstream, a body
//! sent too slowly) is answered here, in the error shape of the API the client called.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Method, Request, Response};
use tower::Service;

use crate::answer::{self, ErrorShape};
use crate::body_timeout::{self, BodyLimits, TimedBody};
use crate::forward::{BoxError, ProxyBody};
use crate::path;
use crate::NotReady;

/// Refuses what must not be forwarded; hands the rest on with a [`TimedBody`].
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    body_limits: BodyLimits,
}

impl<S> Guard<S> {
    pub fn new(inner: S, body_limits: BodyLimits) -> Self {
        Guard { inner, body_limits }
    }
}

impl<S, B> Service<Request<B>> for Guard<S>
where
    S: Service<Request<TimedBody<B>>, Response = Response<ProxyBody>, Error = BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = NotReady;
    type Future = Either<Ready<Result<Response<ProxyBody>, NotReady>>, Answered<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), NotReady>> {
        self.inner.poll_ready(cx).map_err(NotReady)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.method() == Method::CONNECT {
            tracing::debug!(uri = %request.uri(), "CONNECT refused");
            return Either::Left(ready(Ok(answer::connect_refused())));
        }
        let path = request.uri().path();
        let shape = ErrorShape::of(request.method(), path);
        if let Err(reason) = path::check(request.method(), request.headers(), path) {
            tracing::debug!(method = %request.method(), path, %reason, "path refused");
            return Either::Left(ready(Ok(answer::path_refused(shape, &reason))));
        }
        let limits = self.body_limits;
        let call = self
            .inner
            .call(request.map(|body| TimedBody::new(body, limits)));
        Either::Right(Answered { call, shape })
    }
}

/// A forwarded call, whose failure becomes an answer in `shape`.
#[pin_project::pin_project]
pub struct Answered<F> {
    #[pin]
    call: F,
    shape: ErrorShape,
}

impl<F> Future for Answered<F>
where
    F: Future<Output = Result<Response<ProxyBody>, BoxError>>,
{
    type Output = Result<Response<ProxyBody>, NotReady>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.call.poll(cx));
        Poll::Ready(Ok(match result {
            Ok(response) => response,
            Err(error) => match body_timeout::find(&*error) {
                Some(timeout) => answer::body_timeout(*this.shape, timeout),
                None => answer::upstream_unreachable(*this.shape, &error),
            },
        }))
    }
}
