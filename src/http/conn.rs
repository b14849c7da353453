//! Connection hygiene for the HTTP port: no client holds a socket for nothing.
//!
//! * **Header read**: once the first byte of a request arrives, its head must be
//!   complete within `http.header_read_timeout_ms`, else the connection closes (a
//!   half-sent request cannot hold a socket).
//! * **Idle keep-alive**: a connection with no request in flight closes after
//!   `http.idle_timeout_ms` without a byte read or written; so does one whose client
//!   stops reading an answer for that long.
//! * **Body read**: a request's body must arrive within `http.body_read_timeout_ms`
//!   of its head, else reading it fails (the handler answers an error).
//! * **No limit while a handler runs**: a held long poll keeps its connection for as
//!   long as its `Long-Pulling-Timeout` says, with nothing to read or write.
//! * **TCP keepalive** (`http.tcp_keepalive_secs`) finds peers that vanished without
//!   closing, and **at most `http.max_connections_per_ip`** connections are open from
//!   one address; more are closed as soon as they are accepted.
//!
//! * **At most `http.max_connections`** in all: past it, the oldest connection with
//!   no request in flight makes room ([`ConnTable`]).
//!
//! The per-address count is [`crate::net::PerIpLimit`], shared with DNS over TCP. The
//! first three are enforced by [`TimedIo`], a wrapper of the socket that knows
//! from [`ConnState`] whether a request is in flight, and by [`TimedBody`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::settings::HttpSettings;

/// The timeouts of one connection, from `[http]`.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// From the first byte of a request to the end of its head.
    pub header_read: Duration,
    /// Without a request in flight and without a byte read or written.
    pub idle: Duration,
    /// From a request's head to the end of its body.
    pub body_read: Duration,
}

impl ConnLimits {
    /// The limits of `[http]`.
    pub fn from_settings(s: &HttpSettings) -> Self {
        Self {
            header_read: Duration::from_millis(s.header_read_timeout_ms),
            idle: Duration::from_millis(s.idle_timeout_ms),
            body_read: Duration::from_millis(s.body_read_timeout_ms),
        }
    }
}

/// What the socket wrapper and the request handling of one connection share.
#[derive(Debug, Default)]
pub struct ConnState {
    /// Requests whose handler is running.
    in_flight: AtomicU32,
    /// A request ended or began since the wrapper last looked: the next byte read
    /// starts a new head.
    request_boundary: AtomicBool,
    /// The connection's task as its last read waited: woken when a request ends (so
    /// the wait gets its idle deadline) and when the connection is evicted.
    reader: futures_util::task::AtomicWaker,
    /// Set to close the connection at its next read (see [`ConnTable`]).
    evicted: AtomicBool,
}

impl ConnState {
    /// Marks a request as in flight until the guard drops (its handler answered or
    /// was dropped).
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.request_boundary.store(true, Ordering::Release);
        InFlight(self.clone())
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Closes the connection unless a request is in flight; whether it will close.
    fn evict(&self) -> bool {
        if self.busy() {
            return false;
        }
        self.evicted.store(true, Ordering::Release);
        self.reader.wake();
        true
    }
}

/// The open connections of the HTTP port, at most `max` (`http.max_connections`):
/// when a new one would pass it, the oldest connection with no request in flight (an
/// idle or half-sent one) is closed to make room; when every one is busy, the new one
/// is refused. So connections that do nothing cannot use up the process's file
/// descriptors and shut out everyone else.
#[derive(Debug)]
pub struct ConnTable {
    max: usize,
    /// Open connections, oldest first (entries of closed ones are dropped lazily).
    open: parking_lot::Mutex<std::collections::VecDeque<std::sync::Weak<ConnState>>>,
    count: std::sync::atomic::AtomicUsize,
}

/// One connection counted in a [`ConnTable`]; counted out when it drops.
#[derive(Debug)]
pub struct Counted(Arc<ConnTable>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnTable {
    /// At most `max` connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: parking_lot::Mutex::new(std::collections::VecDeque::new()),
            count: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Counts connection `state` in, evicting the oldest idle one when the table is
    /// full; `None` (refuse it) when it is full of busy connections.
    pub fn admit(self: &Arc<Self>, state: &Arc<ConnState>) -> Option<Counted> {
        let mut open = self.open.lock();
        if self.count.load(Ordering::Acquire) >= self.max {
            let mut busy = Vec::new();
            let mut evicted = false;
            while let Some(old) = open.pop_front() {
                let Some(old) = old.upgrade() else { continue };
                if old.evict() {
                    evicted = true;
                    break;
                }
                busy.push(Arc::downgrade(&old));
            }
            // Busy ones keep their place at the front, oldest first.
            for b in busy.into_iter().rev() {
                open.push_front(b);
            }
            if !evicted {
                return None;
            }
        }
        // Entries of closed connections go when they outnumber the open ones.
        let count = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        if open.len() > 2 * count + 64 {
            open.retain(|w| w.strong_count() > 0);
        }
        open.push_back(Arc::downgrade(state));
        Some(Counted(self.clone()))
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A request in flight on its connection (see [`ConnState::begin_request`]).
#[derive(Debug)]
pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.request_boundary.store(true, Ordering::Release);
        self.0.reader.wake();
    }
}

/// A socket whose reads fail with `TimedOut` when the connection is idle for too long,
/// or a request head takes too long to arrive (see the module docs).
pub struct TimedIo<S> {
    inner: S,
    state: Arc<ConnState>,
    limits: ConnLimits,
    last_io: Instant,
    /// When the head being read began; `None` between requests.
    head_started: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    /// Armed only while a write waits (a client that does not read).
    write_timer: Option<Pin<Box<Sleep>>>,
}

impl<S> TimedIo<S> {
    /// Wraps `inner`; `state` is shared with the connection's request handling.
    pub fn new(inner: S, state: Arc<ConnState>, limits: ConnLimits) -> Self {
        Self {
            inner,
            state,
            limits,
            last_io: Instant::now(),
            head_started: None,
            timer: None,
            write_timer: None,
        }
    }

    /// The deadline of the wait for more bytes, if any.
    fn deadline(&mut self) -> Option<Instant> {
        if self.state.request_boundary.swap(false, Ordering::AcqRel) {
            self.head_started = None;
        }
        if self.state.busy() {
            return None;
        }
        Some(match self.head_started {
            Some(started) => started + self.limits.header_read,
            None => self.last_io + self.limits.idle,
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.state.evicted.load(Ordering::Acquire) {
            return Poll::Ready(Err(aborted()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let now = Instant::now();
                    self.last_io = now;
                    if self.state.request_boundary.swap(false, Ordering::AcqRel) {
                        self.head_started = None;
                    }
                    if !self.state.busy() && self.head_started.is_none() {
                        self.head_started = Some(now);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                self.state.reader.register(cx.waker());
                let Some(deadline) = self.deadline() else {
                    // The request may have ended meanwhile: look again.
                    if !self.state.busy() {
                        cx.waker().wake_by_ref();
                    }
                    return Poll::Pending;
                };
                poll_until(&mut self.timer, deadline, cx)
                    .map(|()| Err(timed_out("idle or slow HTTP connection closed")))
            }
        }
    }
}

impl<S> TimedIo<S> {
    /// What a write of the inner stream came to: bytes written count as traffic; a
    /// write that must wait goes by [`Self::write_blocked`].
    fn written(
        &mut self,
        polled: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(written) => {
                if matches!(written, Ok(n) if n > 0) {
                    self.last_io = Instant::now();
                }
                Poll::Ready(written)
            }
            Poll::Pending => self.write_blocked(cx).map(Err),
        }
    }

    /// A write that cannot go on: fails once nothing was written for
    /// `http.idle_timeout_ms` (a client that stopped reading its answer), or when the
    /// connection was evicted; else waits.
    fn write_blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        self.state.reader.register(cx.waker());
        if self.state.evicted.load(Ordering::Acquire) {
            return Poll::Ready(aborted());
        }
        let deadline = self.last_io + self.limits.idle;
        poll_until(&mut self.write_timer, deadline, cx)
            .map(|()| timed_out("HTTP client stopped reading; connection closed"))
    }
}

/// Polls `timer` set to `deadline` (armed on first use, moved when the deadline moves).
fn poll_until(
    timer: &mut Option<Pin<Box<Sleep>>>,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let timer = match timer {
        Some(timer) => {
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            timer
        }
        None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
    };
    timer.as_mut().poll(cx)
}

fn timed_out(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, why)
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "closed to make room (http.max_connections)",
    )
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.written(polled, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.written(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(done) => Poll::Ready(done),
            Poll::Pending => self.write_blocked(cx).map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that fails when it has not ended by its deadline.
pub struct TimedBody<B> {
    inner: B,
    timer: Pin<Box<Sleep>>,
    limit: Duration,
}

impl<B> TimedBody<B> {
    /// `inner`, which must end within `limit` from now.
    pub fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            timer: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl<B> hyper::body::Body for TimedBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                "the request body did not arrive within {} ms (http.body_read_timeout_ms)",
                self.limit.as_millis()
            )
            .into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_evicts_the_oldest_idle_connection_and_never_a_busy_one() {
        let table = ConnTable::new(2);
        let (a, b, c) = (
            Arc::new(ConnState::default()),
            Arc::new(ConnState::default()),
            Arc::new(ConnState::default()),
        );
        let busy_a = a.begin_request();
        let _ca = table.admit(&a).expect("a");
        let _cb = table.admit(&b).expect("b");
        // Full: b is the oldest idle one.
        let _cc = table.admit(&c).expect("c, in b's place");
        assert!(b.evicted.load(Ordering::Acquire));
        assert!(!a.evicted.load(Ordering::Acquire));
        // With c busy too, nothing can make room.
        let _busy_c = c.begin_request();
        let d = Arc::new(ConnState::default());
        assert!(table.admit(&d).is_none());
        drop(busy_a);
        assert!(table.admit(&d).is_some(), "a is idle now");
        assert!(a.evicted.load(Ordering::Acquire));
    }
}
