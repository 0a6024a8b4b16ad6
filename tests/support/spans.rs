//! A `tracing` layer that records every span: name, parent and fields.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// One recorded span.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub id: u64,
    pub name: String,
    pub parent: Option<u64>,
    pub fields: BTreeMap<String, String>,
    pub closed: bool,
}

/// Clone-able handle to the recorded spans.
#[derive(Clone, Default)]
pub struct SpanRecorder {
    spans: Arc<Mutex<Vec<SpanRecord>>>,
}

impl SpanRecorder {
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.spans.lock().expect("not poisoned").clone()
    }

    pub fn named(&self, name: &str) -> Vec<SpanRecord> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }

    pub fn by_id(&self, id: u64) -> Option<SpanRecord> {
        self.spans().into_iter().find(|s| s.id == id)
    }

    /// A subscriber that records into this recorder.
    pub fn subscriber(&self) -> impl Subscriber + Send + Sync {
        use tracing_subscriber::layer::SubscriberExt;
        tracing_subscriber::registry().with(self.clone())
    }

    fn update(&self, id: &Id, f: impl FnOnce(&mut SpanRecord)) {
        let mut spans = self.spans.lock().expect("not poisoned");
        if let Some(span) = spans.iter_mut().rev().find(|s| s.id == id.into_u64()) {
            f(span);
        }
    }
}

struct FieldVisitor<'a>(&'a mut BTreeMap<String, String>);

impl Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S> Layer<S> for SpanRecorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut FieldVisitor(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.id().into_u64());
        self.spans.lock().expect("not poisoned").push(SpanRecord {
            id: id.into_u64(),
            name: attrs.metadata().name().to_owned(),
            parent,
            fields,
            closed: false,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        self.update(id, |span| {
            values.record(&mut FieldVisitor(&mut span.fields))
        });
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        self.update(&id, |span| span.closed = true);
    }
}
