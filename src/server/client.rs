//! The client side of a session after login: command packets in (through
//! TLS and compression when negotiated), response bytes out.
//!
//! An idle client may stay silent for as long as it likes; once it has
//! started a packet, the rest must come within `listen.read_timeout`, like
//! MySQL's `net_read_timeout`. A packet that announces more than
//! [`LARGE_PACKET`] takes its size from a budget all clients share
//! (`listen.buffered_packet_budget`) until it has arrived; one that does
//! not fit is refused, so that slow senders cannot make rwsplit hold more
//! than the budget in unfinished packets.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::net::Stream;
use crate::protocol::compress::{self, CompressError};
use crate::protocol::messages::ErrorPacket;
use crate::protocol::packet::{
    Frame, FrameError, HEADER_LEN, MAX_CHUNK, announced, put_packet, take_frame,
};

/// Room reserved before each read from the client. Small, because idle
/// sessions keep their buffer: memory per idle client matters.
const READ_CHUNK: usize = 4096;
/// A buffer grown past this by a large command is given back afterwards.
const SHRINK_ABOVE: usize = 256 * 1024;
/// Packets up to this size are received without asking the budget.
pub const LARGE_PACKET: usize = 1 << 20;
/// The budget's unit, in bytes: one permit of its semaphore.
pub const BUDGET_UNIT: usize = 1024;

/// Why no command could be read from the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client closed the connection")]
    Closed,
    #[error("client closed the connection in the middle of a packet")]
    Truncated,
    #[error("client took longer than {0:?} to send the rest of a packet")]
    Timeout(Duration),
    #[error("client's packet of {0} bytes does not fit in listen.buffered_packet_budget")]
    OverBudget(usize),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Compression(#[from] CompressError),
    #[error("client connection failed: {0}")]
    Io(#[from] io::Error),
}

/// State of the compressed protocol towards this client.
#[derive(Debug, Default)]
struct Compression {
    /// Compressed bytes received and not yet inflated.
    raw: BytesMut,
    /// Sequence id of the next compressed frame rwsplit sends.
    next_seq: u8,
    /// Output buffer, reused.
    out: BytesMut,
    /// The tail of relayed bytes held back for the next frame (see
    /// [`ClientConn::write_relayed`]).
    held: Vec<u8>,
}

/// A logged-in client connection.
#[derive(Debug)]
pub struct ClientConn {
    stream: Stream,
    /// Plain packet bytes received and not yet taken as frames.
    buf: BytesMut,
    compression: Option<Box<Compression>>,
    max_packet: usize,
    read_timeout: Duration,
    peer: SocketAddr,
    /// Shared by all clients, in [`BUDGET_UNIT`]s.
    budget: Arc<Semaphore>,
    /// What the large packet being received holds of the budget.
    reserved: Option<OwnedSemaphorePermit>,
}

impl ClientConn {
    pub fn new(
        stream: Stream,
        peer: SocketAddr,
        max_packet: usize,
        read_timeout: Duration,
        budget: Arc<Semaphore>,
    ) -> ClientConn {
        ClientConn {
            stream,
            buf: BytesMut::new(),
            compression: None,
            max_packet,
            read_timeout,
            peer,
            budget,
            reserved: None,
        }
    }

    /// Switches both directions to the compressed protocol (after the OK
    /// that ends a login with CLIENT_COMPRESS).
    pub fn enable_compression(&mut self) {
        self.compression = Some(Box::default());
    }

    /// Sets the largest command packet accepted from now on.
    pub fn set_max_packet(&mut self, max_packet: usize) {
        self.max_packet = max_packet;
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// Reads the next whole packet. Once a packet has begun, all of it
    /// must arrive within `read_timeout`, however it trickles in.
    pub async fn read_frame(&mut self) -> Result<Frame, ClientError> {
        let mut deadline = None;
        loop {
            if let Some(frame) = take_frame(&mut self.buf, self.max_packet)? {
                if self.buf.is_empty() && self.buf.capacity() > SHRINK_ABOVE {
                    self.buf = BytesMut::new();
                }
                self.reserved = None;
                return Ok(frame);
            }
            let partial = !self.buf.is_empty();
            let read = if partial {
                self.reserve()?;
                let deadline =
                    *deadline.get_or_insert_with(|| std::time::Instant::now() + self.read_timeout);
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                crate::timer::timeout(left, self.fill())
                    .await
                    .map_err(|_| ClientError::Timeout(self.read_timeout))??
            } else {
                self.fill().await?
            };
            if read == 0 {
                return Err(if partial || self.has_pending_compressed() {
                    ClientError::Truncated
                } else {
                    ClientError::Closed
                });
            }
        }
    }

    /// Takes what the packet being received announces from the budget,
    /// once that passes [`LARGE_PACKET`]; an error when the budget has
    /// not that much left (it comes back as other clients' large packets
    /// arrive, each within `read_timeout`).
    fn reserve(&mut self) -> Result<(), ClientError> {
        let size = announced(&self.buf);
        if size <= LARGE_PACKET {
            return Ok(());
        }
        let needed = size.div_ceil(BUDGET_UNIT);
        let held = self.reserved.as_ref().map_or(0, |r| r.num_permits());
        let Some(more) = needed.checked_sub(held).filter(|&more| more > 0) else {
            return Ok(());
        };
        let more = u32::try_from(more)
            .ok()
            .and_then(|more| self.budget.clone().try_acquire_many_owned(more).ok())
            .ok_or(ClientError::OverBudget(size))?;
        match &mut self.reserved {
            Some(reserved) => reserved.merge(more),
            None => self.reserved = Some(more),
        }
        Ok(())
    }

    fn has_pending_compressed(&self) -> bool {
        self.compression.as_ref().is_some_and(|c| !c.raw.is_empty())
    }

    /// Reads from the socket; returns the bytes read (0 at end of stream).
    async fn fill(&mut self) -> Result<usize, ClientError> {
        let Some(compression) = self.compression.as_mut() else {
            crate::net::make_room(&mut self.buf, READ_CHUNK);
            return Ok(self.stream.read_buf(&mut self.buf).await?);
        };
        // A frame is inflated only when the plain bytes waiting, with it,
        // could still be one packet of the largest size allowed: its
        // announced size is checked first. Past that, a whole packet or a
        // too large one's header is there for `take_frame`, and inflating
        // on (a frame of zeros grows a thousandfold) would only hold memory.
        let room = self.max_packet + HEADER_LEN * (self.max_packet / MAX_CHUNK + 1);
        loop {
            let before = self.buf.len();
            while let Some(plain) = compress::announced(&compression.raw) {
                // What is waiting is never a whole packet (`read_frame`
                // took it): with this frame, the packet being received
                // would exceed the limit.
                if self.buf.len() + plain > room {
                    return Err(ClientError::Frame(FrameError::TooLarge {
                        len: self.buf.len() + plain,
                        limit: self.max_packet,
                    }));
                }
                let Some(seq) = compress::take_frame(&mut compression.raw, &mut self.buf, None)?
                else {
                    break;
                };
                compression.next_seq = seq.wrapping_add(1);
            }
            if self.buf.len() > before {
                return Ok(self.buf.len() - before);
            }
            crate::net::make_room(&mut compression.raw, READ_CHUNK);
            if self.stream.read_buf(&mut compression.raw).await? == 0 {
                return Ok(0);
            }
        }
    }

    /// Writes packet bytes (headers included), compressed when negotiated.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_relayed(bytes, false).await
    }

    /// Writes part of a backend's response; `more` when the response goes
    /// on. Compressed, a frame then keeps back the last byte for the next
    /// one, so that no frame ends on a packet boundary inside a response.
    /// A server flushes a frame at the end of each result set and numbers
    /// the next result's packets after the frame; clients that know this
    /// (mysql_async) renumber at a frame boundary between result sets. The
    /// relayed packets keep the backend's uncompressed numbering, which
    /// such a client accepts as long as no frame ends there.
    pub async fn write_relayed(&mut self, bytes: &[u8], more: bool) -> io::Result<()> {
        let Some(compression) = self.compression.as_mut() else {
            return self.stream.write_all(bytes).await;
        };
        let mut data = std::mem::take(&mut compression.held);
        data.extend_from_slice(bytes);
        let send = if more {
            data.len().saturating_sub(1)
        } else {
            data.len()
        };
        compression.out.clear();
        if send > 0 {
            compression.next_seq =
                compress::compress_into(&mut compression.out, compression.next_seq, &data[..send]);
        }
        data.drain(..send);
        compression.held = data;
        self.stream.write_all(&compression.out).await
    }

    /// Writes one packet with sequence id `seq`.
    pub async fn send(&mut self, seq: u8, payload: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 4);
        put_packet(&mut out, seq, payload);
        self.write(&out).await
    }

    /// Writes an ERR packet with sequence id `seq`.
    pub async fn send_error(&mut self, seq: u8, error: &ErrorPacket) -> io::Result<()> {
        self.send(seq, &error.payload()).await
    }

    /// Closes the connection (flushing TLS's close_notify).
    pub async fn shutdown(&mut self) {
        // The peer may be gone already; nothing to do about it then.
        let _ = self.stream.shutdown().await;
    }
}
