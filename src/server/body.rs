//! Reading a request body completely before the application runs.
//!
//! Rules kept here (DESIGN.md, "Request path" 1): a body up to
//! `body_buffer_size` bytes stays in memory; a larger one is spilled to an
//! anonymous temporary file (deleted by the OS when closed); a body over
//! `max_body_size` is refused. A declared Content-Length over the limit is
//! refused before a single body byte is read, so `Expect: 100-continue`
//! clients are answered 413 instead of being invited to upload.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::HeaderMap;

use crate::exchange::RequestBody;

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Over `max_body_size`: answer 413.
    TooLarge,
    /// The client sent no body bytes for `body_timeout`: answer 408.
    Timeout,
    /// The client sent a malformed body or went away: answer 400 and close.
    Client(hyper::Error),
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
    /// Longest wait for the next body bytes.
    pub timeout: std::time::Duration,
}

/// Whether the declared Content-Length already exceeds the limit.
pub fn declared_too_large(headers: &HeaderMap, limits: BodyLimits) -> bool {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limits.max_size)
}

/// Reads the whole body (hyper has decoded chunked framing already).
///
/// # Errors
/// [`BodyError`]: too large, a client error, or a failed spill.
pub async fn read(mut body: Incoming, limits: BodyLimits) -> Result<RequestBody, BodyError> {
    // A Content-Length body that stays in memory gets its buffer at once:
    // growing it by doubling would copy it again and again.
    let declared = body.size_hint().exact().unwrap_or(0);
    let mut memory = BytesMut::with_capacity(if declared <= limits.memory as u64 {
        declared as usize
    } else {
        0
    });
    let mut spill: Option<(File, u64)> = None;
    loop {
        let next = tokio::time::timeout(limits.timeout, body.frame()).await;
        let Some(frame) = next.map_err(|_| BodyError::Timeout)? else {
            break;
        };
        let frame = frame.map_err(BodyError::Client)?;
        let Ok(data) = frame.into_data() else {
            continue;
        }; // trailers are dropped
        let total = spill.as_ref().map_or(memory.len() as u64, |s| s.1) + data.len() as u64;
        if total > limits.max_size {
            return Err(BodyError::TooLarge);
        }
        match spill.as_mut() {
            Some((file, len)) => {
                file.write_all(&data).map_err(BodyError::Spill)?;
                *len = total;
            }
            None if total > limits.memory as u64 => {
                let mut file = tempfile::tempfile().map_err(BodyError::Spill)?;
                file.write_all(&memory).map_err(BodyError::Spill)?;
                file.write_all(&data).map_err(BodyError::Spill)?;
                memory = BytesMut::new();
                spill = Some((file, total));
            }
            None => memory.extend_from_slice(&data),
        }
    }
    finish(memory.freeze(), spill).map_err(BodyError::Spill)
}

fn finish(memory: Bytes, spill: Option<(File, u64)>) -> io::Result<RequestBody> {
    Ok(match spill {
        Some((mut file, len)) => {
            file.seek(SeekFrom::Start(0))?;
            RequestBody::File(file, len)
        }
        None if memory.is_empty() => RequestBody::Empty,
        None => RequestBody::Memory(memory),
    })
}
