//! The protocol-neutral half of stream assembly: counting events, remembering the first decode
//! error, knowing when a stream said its last word, and holding the content budget. The family
//! half — what an event means — is a [`Fold`] chosen by the call's wire format.

use super::budget::ContentBudget;
use super::summary::ResponseSummary;
use super::Event;
use super::{anthropic, openai};

/// What one event contributed, as far as the caller cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventEffect {
    /// Carried content: text, reasoning or a tool-call fragment (the first of these is the
    /// "first token").
    Content,
    /// Decoded, but carried no content (role, usage, lifecycle, `[DONE]`, a ping, ...).
    NoContent,
    /// Could not be decoded; counted in [`StreamAssembler::decode_error`].
    Undecodable,
}

/// What a family's fold made of one event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Folded {
    /// The event carried content.
    pub(crate) content: bool,
    /// The stream said its last word (`[DONE]`, `message_stop`, a terminal event): whatever
    /// follows is only the end of the body.
    pub(crate) ended: bool,
}

impl Folded {
    /// An event with content (`true`) or without, that did not end the stream.
    #[inline]
    pub(crate) fn content(content: bool) -> Self {
        Folded {
            content,
            ended: false,
        }
    }

    /// The stream's last word.
    pub(crate) const END: Folded = Folded {
        content: false,
        ended: true,
    };
}

/// One family's fold of a response stream into the response it would have returned unstreamed.
pub(crate) trait StreamFold {
    /// Folds one event; an error means the event could not be decoded (it is counted, and the
    /// stream goes on).
    fn push(
        &mut self,
        event: Event<'_>,
        budget: &mut ContentBudget,
    ) -> Result<Folded, serde_json::Error>;

    /// The assembled response so far (complete or partial); the fold's strings move into it.
    fn into_summary(self) -> ResponseSummary;
}

/// The fold of each wire format (static dispatch: one call per event).
#[derive(Debug)]
pub(crate) enum Fold {
    /// OpenAI chat, completions and Responses API streams.
    OpenAi(openai::assemble::OpenAiFold),
    /// Anthropic Messages streams.
    Anthropic(Box<anthropic::assemble::MessageFold>),
    /// Gemini and Vertex AI `streamGenerateContent` streams.
    Gemini(Box<super::gemini::assemble::GenerateContentFold>),
    /// Ollama chat and generate NDJSON streams.
    Ollama(Box<super::ollama::assemble::OllamaFold>),
    /// Bedrock Converse `converse-stream` event streams.
    Bedrock(Box<super::bedrock::assemble::ConverseFold>),
}

impl StreamFold for Fold {
    #[inline]
    fn push(
        &mut self,
        event: Event<'_>,
        budget: &mut ContentBudget,
    ) -> Result<Folded, serde_json::Error> {
        match self {
            Fold::OpenAi(fold) => fold.push(event, budget),
            Fold::Anthropic(fold) => fold.push(event, budget),
            Fold::Gemini(fold) => fold.push(event, budget),
            Fold::Ollama(fold) => fold.push(event, budget),
            Fold::Bedrock(fold) => fold.push(event, budget),
        }
    }

    fn into_summary(self) -> ResponseSummary {
        match self {
            Fold::OpenAi(fold) => fold.into_summary(),
            Fold::Anthropic(fold) => fold.into_summary(),
            Fold::Gemini(fold) => fold.into_summary(),
            Fold::Ollama(fold) => fold.into_summary(),
            Fold::Bedrock(fold) => fold.into_summary(),
        }
    }
}

/// Stream fold state for one call: a family's [`Fold`] plus the bookkeeping every family shares.
#[derive(Debug)]
pub(crate) struct StreamAssembler {
    fold: Fold,
    events: u64,
    ended: bool,
    decode_failures: u64,
    first_decode_error: Option<String>,
    budget: ContentBudget,
}

impl StreamAssembler {
    /// An assembler around `fold` that keeps at most `max_content` bytes of assembled text,
    /// and about an eighth of that (at least 64 KiB) of everything else it keeps.
    pub(crate) fn new(fold: Fold, max_content: usize) -> Self {
        StreamAssembler {
            fold,
            events: 0,
            ended: false,
            decode_failures: 0,
            first_decode_error: None,
            budget: ContentBudget::new(max_content),
        }
    }

    /// Folds one event into the state.
    #[inline]
    pub(crate) fn push(&mut self, event: Event<'_>) -> EventEffect {
        self.events += 1;
        match self.fold.push(event, &mut self.budget) {
            Ok(folded) => {
                self.ended |= folded.ended;
                if folded.content {
                    EventEffect::Content
                } else {
                    EventEffect::NoContent
                }
            }
            Err(error) => {
                self.decode_failures += 1;
                if self.first_decode_error.is_none() {
                    self.first_decode_error = Some(error.to_string());
                }
                EventEffect::Undecodable
            }
        }
    }

    /// Whether the stream has said its last word: whatever follows is only the end of the body.
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// Events pushed so far.
    pub(crate) fn events(&self) -> u64 {
        self.events
    }

    /// The first decode error met, with the number of undecodable events (`events`: what the
    /// framing calls them, e.g. `SSE events`).
    pub(crate) fn decode_error(&self, events: &str) -> Option<String> {
        self.first_decode_error.as_ref().map(|first| {
            format!(
                "{} of {} {events} could not be decoded; first: {first}",
                self.decode_failures, self.events
            )
        })
    }

    /// Whether assembled content was cut at the content limit.
    pub(crate) fn truncated(&self) -> bool {
        self.budget.exceeded
    }

    /// The assembled response so far (complete or partial).
    pub(crate) fn into_summary(self) -> ResponseSummary {
        self.fold.into_summary()
    }
}
