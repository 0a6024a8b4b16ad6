//! Streaming request forwarding to an upstream HTTP(S) server, shared by the proxy and the demo.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::Service;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every forwarded (or locally answered) response.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, ProxyBody>;

/// Where requests go: scheme, authority and an optional path prefix.
#[derive(Debug, Clone)]
pub struct Upstream {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
}

impl Upstream {
    pub fn parse(uri: &Uri) -> Result<Self, BoxError> {
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or("--upstream needs a scheme (http:// or https://)")?;
        if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
            return Err(format!("--upstream scheme must be http or https, not {scheme}").into());
        }
        let authority = uri.authority().cloned().ok_or("--upstream needs a host")?;
        Ok(Upstream {
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    fn uri_for(&self, incoming: &Uri) -> Result<Uri, http::Error> {
        let path_and_query = incoming.path_and_query().map_or("/", |p| p.as_str());
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{path_and_query}", self.base_path))
            .build()
    }
}

/// Forwards a request to the upstream and returns its response, both streamed.
#[derive(Clone)]
pub struct Forward {
    client: UpstreamClient,
    upstream: Upstream,
}

impl Forward {
    pub fn new(upstream: Upstream) -> Result<Self, BoxError> {
        let mut http = HttpConnector::new();
        // The TLS wrapper below handles https.
        http.enforce_http(false);
        // Forward each frame as it comes: without TCP_NODELAY, a streamed request body's small
        // writes can wait up to ~40 ms for an ACK (Nagle + delayed ACK).
        http.set_nodelay(true);
        // ring, named here: with other features both ring and aws-lc-rs are linked, and rustls
        // cannot pick a process default by itself.
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Forward { client, upstream })
    }
}

impl<B> Service<Request<B>> for Forward
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<Incoming>, BoxError>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let client = self.client.clone();
        let upstream = self.upstream.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            parts.uri = upstream.uri_for(&parts.uri)?;
            // The client sets Host from the upstream URI; HTTP/2 requests come without one.
            parts.headers.remove(header::HOST);
            remove_hop_by_hop(&mut parts.headers);
            parts.version = http::Version::HTTP_11;
            let request = Request::from_parts(parts, body.map_err(Into::into).boxed_unsync());
            let mut response = client.request(request).await?;
            remove_hop_by_hop(response.headers_mut());
            Ok(response)
        })
    }
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus any the
/// `Connection` header names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}
