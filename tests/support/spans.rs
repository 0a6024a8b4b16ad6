//! A `tracing` layer that records every span: name, parent and fields.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// One span as recorded. `key` is unique for the whole test run (registry ids are reused
/// once a span closes, so they cannot be used to compare parents).
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub key: u64,
    pub name: &'static str,
    pub parent: Option<u64>,
    pub fields: BTreeMap<String, String>,
    pub closed: bool,
}

struct Key(u64);

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// A `tracing_subscriber` layer that records every span: name, parent and fields.
#[derive(Clone, Default)]
pub struct Spans(Arc<Mutex<Vec<SpanRecord>>>);

impl Spans {
    pub fn named(&self, name: &str) -> Vec<SpanRecord> {
        self.0
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    /// Every span recorded so far.
    pub fn all(&self) -> Vec<SpanRecord> {
        self.0.lock().expect("not poisoned").clone()
    }

    /// A subscriber recording into these spans (for `tracing::subscriber::set_default`).
    pub fn subscriber(&self) -> impl Subscriber + Send + Sync {
        tracing_subscriber::registry().with(self.clone())
    }

    pub fn one(&self, name: &str) -> SpanRecord {
        let mut spans = self.named(name);
        assert_eq!(spans.len(), 1, "expected one {name:?} span: {spans:#?}");
        spans.remove(0)
    }

    fn update<S>(&self, id: &Id, ctx: &Context<'_, S>, f: impl FnOnce(&mut SpanRecord))
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(key) = ctx
            .span(id)
            .and_then(|span| span.extensions().get::<Key>().map(|k| k.0))
        else {
            return;
        };
        if let Some(span) = self
            .0
            .lock()
            .expect("not poisoned")
            .iter_mut()
            .find(|s| s.key == key)
        {
            f(span);
        }
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S> Layer<S> for Spans
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<Key>().map(|k| k.0));
        span.extensions_mut().insert(Key(key));
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.0.lock().expect("not poisoned").push(SpanRecord {
            key,
            name: attrs.metadata().name(),
            parent,
            fields,
            closed: false,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.update(id, &ctx, |span| {
            values.record(&mut Fields(&mut span.fields))
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.update(&id, &ctx, |span| span.closed = true);
    }
}

/// Runs `test` on a current-thread runtime with a span-recording subscriber as the thread's
/// default (so every task of the runtime, on this thread, reports to it).
pub fn with_spans<F, Fut>(test: F) -> Spans
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
{
    let spans = Spans::default();
    tracing::subscriber::with_default(spans.subscriber(), || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(test()).expect("test body");
    });
    spans
}
