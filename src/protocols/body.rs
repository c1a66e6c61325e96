//! Buffering a request body completely before the application runs.
//!
//! Rules kept here (DESIGN.md, "Request path" 1): a body up to
//! `memory` bytes stays in memory; a larger one is spilled to an anonymous
//! temporary file (deleted by the OS when closed); a body over `max_size`
//! is refused (413). A body that arrives as one piece is kept as that piece:
//! no copy.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

use bytes::{Bytes, BytesMut};

use crate::exchange::RequestBody;

/// Why a body could not be buffered.
#[derive(Debug)]
pub enum BodyError {
    /// Over `max_size`: answer 413.
    TooLarge,
    /// The temporary file could not be written: answer 500.
    Spill(io::Error),
}

/// Limits that apply to one body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Refuse bodies larger than this, bytes.
    pub max_size: u64,
    /// Keep bodies up to this size in memory, bytes.
    pub memory: usize,
}

/// A body being received, piece by piece.
#[derive(Debug)]
pub struct BodySink {
    limits: BodyLimits,
    /// The first piece, kept whole while it is the only one.
    first: Option<Bytes>,
    /// Pieces joined, once there is more than one.
    joined: BytesMut,
    /// The temporary file, once the body outgrew memory.
    spill: Option<File>,
    len: u64,
}

impl BodySink {
    /// An empty body under `limits`; `expected`: its declared length when
    /// known (room is made for it once), bytes.
    pub fn new(limits: BodyLimits, expected: Option<u64>) -> Self {
        let room = expected
            .filter(|&n| n <= limits.memory as u64)
            .map_or(0, |n| n as usize);
        BodySink {
            limits,
            first: None,
            joined: BytesMut::with_capacity(room),
            spill: None,
            len: 0,
        }
    }

    /// Adds the next piece.
    ///
    /// # Errors
    /// [`BodyError::TooLarge`] past `max_size`; [`BodyError::Spill`] when
    /// the temporary file cannot be written.
    pub fn push(&mut self, piece: Bytes) -> Result<(), BodyError> {
        self.len += piece.len() as u64;
        if self.len > self.limits.max_size {
            return Err(BodyError::TooLarge);
        }
        if let Some(file) = self.spill.as_mut() {
            return file.write_all(&piece).map_err(BodyError::Spill);
        }
        if self.len > self.limits.memory as u64 {
            return self.start_spill(&piece).map_err(BodyError::Spill);
        }
        match self.first.take() {
            None if self.joined.is_empty() => self.first = Some(piece),
            first => {
                if let Some(first) = first {
                    self.joined.extend_from_slice(&first);
                }
                self.joined.extend_from_slice(&piece);
            }
        }
        Ok(())
    }

    fn start_spill(&mut self, piece: &[u8]) -> io::Result<()> {
        let mut file = tempfile::tempfile()?;
        if let Some(first) = self.first.take() {
            file.write_all(&first)?;
        }
        file.write_all(&self.joined)?;
        file.write_all(piece)?;
        self.joined = BytesMut::new();
        self.spill = Some(file);
        Ok(())
    }

    /// The complete body, a spilled one rewound to its start.
    ///
    /// # Errors
    /// The OS error of rewinding the temporary file.
    pub fn finish(self) -> io::Result<RequestBody> {
        Ok(match (self.spill, self.first) {
            (Some(mut file), _) => {
                file.seek(SeekFrom::Start(0))?;
                RequestBody::File(file, self.len)
            }
            (None, Some(first)) => RequestBody::Memory(first),
            (None, None) if self.joined.is_empty() => RequestBody::Empty,
            (None, None) => RequestBody::Memory(self.joined.freeze()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BodyLimits = BodyLimits {
        max_size: 100,
        memory: 10,
    };

    #[test]
    fn one_piece_stays_whole_and_many_are_joined() {
        let mut sink = BodySink::new(LIMITS, Some(5));
        sink.push(Bytes::from_static(b"hello")).unwrap();
        assert!(matches!(sink.finish().unwrap(), RequestBody::Memory(b) if b == "hello"));
        let mut sink = BodySink::new(LIMITS, None);
        for piece in [&b"ab"[..], b"cd", b"e"] {
            sink.push(Bytes::copy_from_slice(piece)).unwrap();
        }
        assert!(matches!(sink.finish().unwrap(), RequestBody::Memory(b) if b == "abcde"));
    }

    #[test]
    fn spills_past_memory_and_refuses_past_the_limit() {
        let mut sink = BodySink::new(LIMITS, None);
        sink.push(Bytes::from_static(b"0123456789")).unwrap();
        sink.push(Bytes::from_static(b"abc")).unwrap();
        let RequestBody::File(mut file, 13) = sink.finish().unwrap() else {
            panic!("not spilled")
        };
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text).unwrap();
        assert_eq!(text, "0123456789abc");
        let mut sink = BodySink::new(LIMITS, None);
        assert!(matches!(
            sink.push(Bytes::from(vec![0; 101])),
            Err(BodyError::TooLarge)
        ));
    }
}
