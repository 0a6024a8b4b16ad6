//! Bounded capture of body bytes for decoding, without copying frames on the hot path.

use std::borrow::Cow;

use bytes::Bytes;

/// Keeps refcounted clones of the frames of a body, up to a byte limit. The bytes are joined
/// only once, when the body is decoded — and not at all when the body came in one frame.
#[derive(Debug)]
pub(crate) struct BytesCapture {
    parts: Vec<Bytes>,
    len: usize,
    limit: usize,
    truncated: bool,
}

impl BytesCapture {
    pub(crate) fn new(limit: usize) -> Self {
        BytesCapture {
            parts: Vec::new(),
            len: 0,
            limit,
            truncated: false,
        }
    }

    /// Keeps `frame` if it fits under the limit; past it, lets go of everything kept and
    /// remembers that the capture is incomplete.
    pub(crate) fn push(&mut self, frame: &Bytes) {
        if self.truncated || frame.is_empty() {
            return;
        }
        if self.len + frame.len() > self.limit {
            // An incomplete body is not decoded: let its frames go now, not at its end.
            self.truncated = true;
            self.parts = Vec::new();
            self.len = 0;
            return;
        }
        self.len += frame.len();
        self.parts.push(frame.clone());
    }

    /// Whether bytes were left out because of the limit.
    pub(crate) fn truncated(&self) -> bool {
        self.truncated
    }

    /// Bytes kept so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The most bytes it keeps.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The captured frames in order.
    pub(crate) fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// The captured bytes as one slice.
    pub(crate) fn contiguous(&self) -> Cow<'_, [u8]> {
        match self.parts.as_slice() {
            [] => Cow::Borrowed(&[]),
            [one] => Cow::Borrowed(one),
            parts => Cow::Owned(parts.concat()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_frames_until_the_limit_then_none() {
        let mut capture = BytesCapture::new(5);
        capture.push(&Bytes::from_static(b"ab"));
        capture.push(&Bytes::from_static(b"cd"));
        assert_eq!(&*capture.contiguous(), b"abcd");
        assert!(!capture.truncated());
        capture.push(&Bytes::from_static(b"ef"));
        capture.push(&Bytes::from_static(b"g"));
        assert!(capture.truncated());
        assert_eq!(&*capture.contiguous(), b"");
        assert_eq!((capture.len(), capture.limit()), (0, 5));
    }
}
