//! Byte streams to clients and backends: plain TCP, or TLS over TCP.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// A connection to a client or a backend.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    /// Boxed: a TLS session is large, and most connections are plain.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Writes all of `bytes`. A plain socket nearly always takes them at
    /// once, so that is tried first, without a future's polling; what it
    /// does not take is written as usual. (Shadows `AsyncWriteExt::write_all`.)
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut written = 0;
        if let Stream::Tcp(tcp) = self {
            while written < bytes.len() {
                match tcp.try_write(&bytes[written..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) if written + n == bytes.len() => return Ok(()),
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        tokio::io::AsyncWriteExt::write_all(self, &bytes[written..]).await
    }

    /// Whether the peer has closed the stream, or sent anything, while
    /// nothing was asked of it: an idle connection that is not idle any
    /// more (its server closed it, restarted or died). One non-blocking
    /// peek at the socket; nothing is consumed.
    pub fn idle_disturbed(&self) -> bool {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Stream::Tcp(tcp) => tcp.as_raw_fd(),
            Stream::Tls(tls) => tls.get_ref().0.as_raw_fd(),
        };
        let mut byte = 0u8;
        // SAFETY: `fd` is this stream's open socket, and `byte` is valid
        // for one byte; MSG_PEEK leaves the data where it is and
        // MSG_DONTWAIT never blocks.
        let peeked = unsafe {
            libc::recv(
                fd,
                (&raw mut byte).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        peeked >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock
    }

    /// The plain TCP stream, before any TLS upgrade.
    pub fn into_tcp(self) -> Option<TcpStream> {
        match self {
            Stream::Tcp(tcp) => Some(tcp),
            Stream::Tls(_) => None,
        }
    }
}

/// Makes room in `buf` for the next read of up to `chunk` bytes. Packets
/// split off the front leave their space behind; reclaiming it moves the
/// unread bytes to the front and costs as much as relaying a small
/// packet, so it is done once less than a quarter of a chunk is free
/// rather than before every read.
pub fn make_room(buf: &mut BytesMut, chunk: usize) {
    if buf.capacity() - buf.len() < chunk / 4 {
        buf.reserve(chunk);
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_made_only_when_little_is_left() {
        let mut buf = BytesMut::with_capacity(4096);
        buf.extend_from_slice(&[1; 100]);
        let _packet = buf.split_to(100);
        let before = buf.capacity();
        make_room(&mut buf, 4096);
        assert_eq!(buf.capacity(), before, "plenty free: nothing moves");

        buf.extend_from_slice(&[2; 3500]);
        let _packet = buf.split_to(3490);
        assert!(buf.capacity() - buf.len() < 1024);
        make_room(&mut buf, 4096);
        assert!(buf.capacity() - buf.len() >= 4096);
        assert_eq!(&buf[..], &[2; 10], "the unread bytes are kept");
    }
}
