//! What stands between a client and the forwarder: `CONNECT` and paths that are not in
//! normal form (or would reach an LLM endpoint unrecorded) are answered here, and every
//! request body that goes on is timed.

use std::future::{ready, Ready};
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Method, Request, Response};
use tower::Service;

use crate::answer;
use crate::body_timeout::{BodyLimits, TimedBody};
use crate::forward::ProxyBody;
use crate::path;

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
    S: Service<Request<TimedBody<B>>, Response = Response<ProxyBody>>,
{
    type Response = Response<ProxyBody>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<ProxyBody>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.method() == Method::CONNECT {
            tracing::debug!(uri = %request.uri(), "CONNECT refused");
            return Either::Left(ready(Ok(answer::connect_refused())));
        }
        let path = request.uri().path();
        if let Err(reason) = path::check(request.method(), request.headers(), path) {
            tracing::debug!(method = %request.method(), path, %reason, "path refused");
            return Either::Left(ready(Ok(answer::path_refused(&reason))));
        }
        let limits = self.body_limits;
        Either::Right(
            self.inner
                .call(request.map(|body| TimedBody::new(body, limits))),
        )
    }
}
