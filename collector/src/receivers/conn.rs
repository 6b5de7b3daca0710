//! What every listener does with connections before any protocol runs: a
//! cap on open connections (beyond it a new one is closed at once and
//! counted), and a deadline for a client's first bytes, so a client that
//! connects and sends nothing (or half a preface) cannot hold a socket. The
//! HTTP/2 preface is 24 bytes and an HTTP/1 request line is longer, so one
//! rule covers gRPC, h2c and HTTP/1.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pipeline::telemetry::Counter;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;

/// Bytes a client must send within the first-bytes deadline.
const FIRST_BYTES: usize = 24;

/// Limits applied to every connection a listener accepts.
#[derive(Clone)]
pub struct Limits {
    /// Open connections at most; 0 means no cap.
    pub max_connections: usize,
    /// Time a new connection has to send its first 24 bytes.
    pub first_bytes: Duration,
}

/// Accepts connections under [`Limits`].
pub struct Acceptor {
    listener: TcpListener,
    slots: Option<Arc<Semaphore>>,
    first_bytes: Duration,
    refused: Counter,
}

impl Acceptor {
    /// Wraps a bound listener; `refused` counts connections closed at the cap.
    pub fn new(listener: TcpListener, limits: &Limits, refused: Counter) -> Acceptor {
        Acceptor {
            listener,
            slots: (limits.max_connections > 0)
                .then(|| Arc::new(Semaphore::new(limits.max_connections))),
            first_bytes: limits.first_bytes,
            refused,
        }
    }

    /// The next connection within the cap; those over it are closed here.
    pub async fn accept(&self) -> io::Result<Guarded> {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(c) => c,
                // Out of file descriptors or a connection reset before
                // accept: not fatal to the listener. Back off briefly so
                // an EMFILE storm does not spin.
                Err(e) if is_transient(&e) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let permit = match &self.slots {
                None => None,
                Some(s) => match s.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        self.refused.add(1);
                        drop(stream);
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            return Ok(Guarded {
                stream,
                peer,
                _permit: permit,
                seen: 0,
                deadline: Some(Box::pin(tokio::time::sleep(self.first_bytes))),
                activity: Activity::default(),
            });
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) // EMFILE, ENFILE: out of descriptors, for the process or the system.
        || matches!(e.raw_os_error(), Some(24 | 23))
}

/// When a connection last carried a byte and how many requests it has in
/// progress; the HTTP server closes it after `idle_timeout` without either.
#[derive(Clone, Default)]
pub struct Activity(Arc<(AtomicU64, AtomicUsize)>);

impl Activity {
    fn touch(&self) {
        self.0 .0.store(now_ms(), Ordering::Relaxed);
    }

    /// A request started on the connection.
    pub fn begin(&self) {
        self.0 .1.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    /// A request on the connection was answered.
    pub fn end(&self) {
        self.0 .1.fetch_sub(1, Ordering::Relaxed);
        self.touch();
    }

    /// How long the connection has had no request in progress and no
    /// traffic; zero while a request is in progress.
    pub fn idle_for(&self) -> Duration {
        if self.0 .1.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(now_ms().saturating_sub(self.0 .0.load(Ordering::Relaxed)))
    }
}

fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// An accepted connection: holds its slot under the cap until dropped, and
/// fails its reads if the first bytes do not arrive in time.
pub struct Guarded {
    stream: TcpStream,
    peer: SocketAddr,
    _permit: Option<OwnedSemaphorePermit>,
    seen: usize,
    deadline: Option<Pin<Box<Sleep>>>,
    activity: Activity,
}

impl Guarded {
    /// The connection's activity record.
    pub fn activity(&self) -> Activity {
        self.activity.clone()
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

/// The client's end of a connection, as gRPC handlers see it.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// A connection as the protocol sees it: plain, or after a TLS handshake.
pub enum Stream {
    /// Plaintext.
    Plain(Guarded),
    /// TLS over the guarded connection.
    Tls(Box<TlsStream<Guarded>>),
}

impl Stream {
    fn guarded(&self) -> &Guarded {
        match self {
            Stream::Plain(g) => g,
            Stream::Tls(t) => t.get_ref().0,
        }
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.guarded().peer
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(g) => Pin::new(g).poll_read(cx, buf),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
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
            Stream::Plain(g) => Pin::new(g).poll_write(cx, buf),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(g) => Pin::new(g).poll_write_vectored(cx, bufs),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(g) => g.is_write_vectored(),
            Stream::Tls(t) => t.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(g) => Pin::new(g).poll_flush(cx),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(g) => Pin::new(g).poll_shutdown(cx),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for Stream {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        Peer(self.peer())
    }
}

/// Completes a connection's TLS handshake (when the listener has TLS)
/// within `deadline`; `None` when it failed or took too long.
pub async fn secure(
    conn: Guarded,
    tls: Option<&super::tls::TlsServer>,
    deadline: Duration,
) -> Option<Stream> {
    let Some(tls) = tls else {
        return Some(Stream::Plain(conn));
    };
    let peer = conn.peer;
    match tokio::time::timeout(deadline, tls.accept(conn)).await {
        Ok(Ok(s)) => Some(Stream::Tls(Box::new(s))),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake not finished in time");
            None
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    this.activity.touch();
                    this.seen += n;
                    if this.seen >= FIRST_BYTES {
                        this.deadline = None;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client sent too little before the first-bytes deadline",
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Raises the soft limit on open files to the hard limit, as Go's runtime
/// does at start: the usual soft limit of 1,024 let 1,100 slow clients take
/// every listener offline.
pub fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::telemetry::Registry;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn acceptor(
        max: usize,
        first: Duration,
    ) -> (Acceptor, std::net::SocketAddr, Arc<Registry>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let reg = Registry::new();
        let refused = reg.counter("refused_total", "test", &[]);
        let limits = Limits {
            max_connections: max,
            first_bytes: first,
        };
        (Acceptor::new(l, &limits, refused), addr, reg)
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_and_counted() {
        let (a, addr, reg) = acceptor(2, Duration::from_secs(30)).await;
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let mut c3 = TcpStream::connect(addr).await.unwrap();
        let g1 = a.accept().await.unwrap();
        let _g2 = a.accept().await.unwrap();
        // The third is closed at accept: its read sees EOF.
        let accept_next = tokio::spawn(async move {
            let g = a.accept().await.unwrap();
            (a, g)
        });
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), c3.read(&mut b))
            .await
            .unwrap();
        assert!(matches!(n, Ok(0) | Err(_)));
        assert_eq!(reg.value("refused_total", &[]), Some(1.0));
        // A slot freed lets the next connection in.
        drop(g1);
        let _c4 = TcpStream::connect(addr).await.unwrap();
        let (_a, _g4) = tokio::time::timeout(Duration::from_secs(5), accept_next)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_client_silent_past_the_deadline_is_cut_off() {
        let (a, addr, _) = acceptor(0, Duration::from_millis(200)).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"PRI * HTTP/2.0").await.unwrap(); // 14 of 24 bytes
        let mut g = a.accept().await.unwrap();
        let mut buf = [0u8; 64];
        let mut got = 0;
        let err = loop {
            match g.read(&mut buf).await {
                Ok(0) => panic!("unexpected EOF"),
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        assert_eq!((got, err.kind()), (14, io::ErrorKind::TimedOut));

        // One that sends its first bytes in time keeps the connection.
        let mut quick = TcpStream::connect(addr).await.unwrap();
        quick.write_all(&[b'x'; 24]).await.unwrap();
        let mut g = a.accept().await.unwrap();
        g.read_exact(&mut [0u8; 24]).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(400), g.read(&mut buf)).await;
        assert!(waited.is_err(), "no error after the first bytes arrived");
    }
}
