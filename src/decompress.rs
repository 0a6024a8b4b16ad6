//! Decompression of `Content-Encoding: gzip | deflate | br` bodies, for the payload only: the
//! wire keeps the compressed bytes. Incremental (an SSE stream stays incremental) and bounded
//! (a decompression bomb stops at the limit).

use std::io::Write;

use bytes::Bytes;

/// Collects decompressed bytes up to a limit; past it, writes fail so decompression stops.
#[derive(Debug)]
struct BoundedOutput {
    buf: Vec<u8>,
    left: usize,
    exceeded: bool,
}

impl Write for BoundedOutput {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.len() > self.left {
            self.exceeded = true;
            return Err(std::io::Error::other("decompressed size limit reached"));
        }
        self.left -= data.len();
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Codec {
    Gzip(flate2::write::GzDecoder<BoundedOutput>),
    /// HTTP `deflate` is zlib-wrapped, but some servers send raw deflate; decided on the
    /// first two bytes.
    DeflatePending(Vec<u8>, BoundedOutput),
    Zlib(flate2::write::ZlibDecoder<BoundedOutput>),
    RawDeflate(flate2::write::DeflateDecoder<BoundedOutput>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<BoundedOutput>>),
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Codec::Gzip(_) => "gzip",
            Codec::DeflatePending(..) | Codec::Zlib(_) | Codec::RawDeflate(_) => "deflate",
            Codec::Brotli(_) => "br",
        })
    }
}

/// Why a body could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecompressError {
    /// More than the limit came out.
    #[error("a compressed frame expands past the capture limit of {0} bytes")]
    TooLarge(usize),
    /// The bytes are not valid for the encoding.
    #[error("body is not valid {encoding}: {source}")]
    Corrupt {
        encoding: String,
        source: std::io::Error,
    },
}

/// An incremental decompressor for one body.
#[derive(Debug)]
pub(crate) struct Decompressor {
    codec: Codec,
    limit: usize,
}

impl Decompressor {
    /// A decompressor for a `Content-Encoding` value, or `None` for an encoding we do not
    /// decode (or a chain of several).
    pub(crate) fn for_encoding(encoding: &str, limit: usize) -> Option<Self> {
        let output = BoundedOutput {
            buf: Vec::new(),
            left: limit,
            exceeded: false,
        };
        let codec = match encoding.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Codec::Gzip(flate2::write::GzDecoder::new(output)),
            "deflate" => Codec::DeflatePending(Vec::new(), output),
            "br" => Codec::Brotli(Box::new(brotli_decompressor::DecompressorWriter::new(
                output, 4096,
            ))),
            _ => return None,
        };
        Some(Decompressor { codec, limit })
    }

    /// Feeds compressed bytes; returns what they decompressed to.
    pub(crate) fn feed(&mut self, compressed: &[u8]) -> Result<Bytes, DecompressError> {
        if let Codec::DeflatePending(head, _) = &mut self.codec {
            head.extend_from_slice(compressed);
            if head.len() < 2 {
                return Ok(Bytes::new());
            }
            let head = self.start_deflate();
            return self.write(&head);
        }
        self.write(compressed)
    }

    /// Ends the body; returns the last decompressed bytes.
    pub(crate) fn finish(&mut self) -> Result<Bytes, DecompressError> {
        let mut out = Vec::new();
        if let Codec::DeflatePending(head, _) = &self.codec {
            if head.is_empty() {
                return Ok(Bytes::new());
            }
            let head = self.start_deflate();
            out.extend_from_slice(&self.write(&head)?);
        }
        self.output().left = self.limit;
        let result = match &mut self.codec {
            Codec::Gzip(d) => d.try_finish(),
            Codec::Zlib(d) => d.try_finish(),
            Codec::RawDeflate(d) => d.try_finish(),
            Codec::Brotli(d) => d.close(),
            Codec::DeflatePending(..) => Ok(()),
        };
        out.extend_from_slice(&self.collect(result)?);
        Ok(Bytes::from(out))
    }

    /// Picks zlib or raw deflate from the first bytes; returns the bytes held back so far.
    fn start_deflate(&mut self) -> Vec<u8> {
        let empty = BoundedOutput {
            buf: Vec::new(),
            left: 0,
            exceeded: false,
        };
        let Codec::DeflatePending(head, output) =
            std::mem::replace(&mut self.codec, Codec::DeflatePending(Vec::new(), empty))
        else {
            return Vec::new();
        };
        let zlib_header = head.len() >= 2
            && head[0] & 0x0F == 8
            && ((u16::from(head[0]) << 8) | u16::from(head[1])) % 31 == 0;
        self.codec = if zlib_header {
            Codec::Zlib(flate2::write::ZlibDecoder::new(output))
        } else {
            Codec::RawDeflate(flate2::write::DeflateDecoder::new(output))
        };
        head
    }

    fn write(&mut self, compressed: &[u8]) -> Result<Bytes, DecompressError> {
        // The bound is per write: it stops one frame from exploding, while the decoder's own
        // limits bound what is kept across frames.
        self.output().left = self.limit;
        // Flushing after each frame hands over everything it decodes to now, so stream events
        // (and time to first token) are not held back inside the decompressor.
        let result = match &mut self.codec {
            Codec::Gzip(d) => d.write_all(compressed).and_then(|()| d.flush()),
            Codec::Zlib(d) => d.write_all(compressed).and_then(|()| d.flush()),
            Codec::RawDeflate(d) => d.write_all(compressed).and_then(|()| d.flush()),
            Codec::Brotli(d) => d.write_all(compressed).and_then(|()| d.flush()),
            Codec::DeflatePending(..) => Ok(()),
        };
        self.collect(result)
    }

    fn output(&mut self) -> &mut BoundedOutput {
        match &mut self.codec {
            Codec::Gzip(d) => d.get_mut(),
            Codec::Zlib(d) => d.get_mut(),
            Codec::RawDeflate(d) => d.get_mut(),
            Codec::Brotli(d) => d.get_mut(),
            Codec::DeflatePending(_, output) => output,
        }
    }

    fn collect(&mut self, result: std::io::Result<()>) -> Result<Bytes, DecompressError> {
        let limit = self.limit;
        let encoding = format!("{:?}", self.codec);
        let output = self.output();
        let out = Bytes::from(std::mem::take(&mut output.buf));
        match result {
            Ok(()) => Ok(out),
            Err(_) if output.exceeded => Err(DecompressError::TooLarge(limit)),
            Err(source) => Err(DecompressError::Corrupt { encoding, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn run(
        encoding: &str,
        compressed: &[u8],
        chunk: usize,
        limit: usize,
    ) -> Result<Vec<u8>, DecompressError> {
        let mut d = Decompressor::for_encoding(encoding, limit).unwrap();
        let mut out = Vec::new();
        for piece in compressed.chunks(chunk) {
            out.extend_from_slice(&d.feed(piece)?);
        }
        out.extend_from_slice(&d.finish()?);
        Ok(out)
    }

    #[test]
    fn gzip_zlib_raw_deflate_in_any_chunking() {
        let plain = b"data: {\"choices\":[]}\n\n".repeat(50);
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(&plain).unwrap();
        let zlib = zlib.finish().unwrap();
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(&plain).unwrap();
        let raw = raw.finish().unwrap();
        for chunk in [1, 3, 64, 100_000] {
            assert_eq!(run("gzip", &gzip(&plain), chunk, 1 << 20).unwrap(), plain);
            assert_eq!(run("deflate", &zlib, chunk, 1 << 20).unwrap(), plain);
            assert_eq!(run("deflate", &raw, chunk, 1 << 20).unwrap(), plain);
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_garbage_is_an_error() {
        let bomb = gzip(&vec![b'a'; 1 << 20]);
        assert!(matches!(
            run("gzip", &bomb, 4096, 1000),
            Err(DecompressError::TooLarge(1000))
        ));
        assert!(matches!(
            run("gzip", b"not gzip at all", 4, 1000),
            Err(DecompressError::Corrupt { .. })
        ));
        assert!(Decompressor::for_encoding("zstd", 10).is_none());
        assert!(Decompressor::for_encoding("gzip, br", 10).is_none());
    }
}
