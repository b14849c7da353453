//! Batched UDP I/O for the DNS workers: on Linux, `recvmmsg` takes up to
//! [`BATCH`] queries from a socket in one system call and `sendmmsg` sends their
//! answers in one, both through `nix` behind tokio's readiness (the socket stays
//! non-blocking and registered with tokio). Elsewhere, one packet per call.
//!
//! A worker receives into an [`Inbox`], writes the answers into an [`Outbox`] and
//! flushes it before it receives again, so an answer waits at most for the rest of its
//! batch.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::debug;

/// Most packets taken or sent in one system call.
pub const BATCH: usize = 32;

/// Largest query read, bytes; a longer datagram is cut (and then fails to parse).
const MAX_QUERY: usize = 4096;

/// Received packets: up to [`BATCH`] buffers of 4,096 bytes (a longer query is cut).
pub struct Inbox {
    bufs: Box<[[u8; MAX_QUERY]; BATCH]>,
    /// Length and sender of each packet of the last receive; a sender whose address
    /// could not be read has port 0.
    received: Vec<(usize, SocketAddr)>,
}

impl Default for Inbox {
    fn default() -> Self {
        let bufs = vec![[0u8; MAX_QUERY]; BATCH].into_boxed_slice();
        Self {
            bufs: bufs
                .try_into()
                .unwrap_or_else(|_| unreachable!("BATCH buffers were allocated")),
            received: Vec::with_capacity(BATCH),
        }
    }
}

impl Inbox {
    /// Waits until at least one packet arrives, takes as many as are queued (up to
    /// [`BATCH`]) and returns how many. Receive errors (ICMP errors of earlier sends
    /// surface here) are logged and skipped; an error is returned only when the
    /// socket can no longer be polled (its runtime is shutting down).
    ///
    /// On Linux a receive that returns fewer than [`BATCH`] packets has emptied the
    /// queue, so the socket's readiness is cleared then and there: the next call waits
    /// for the reactor instead of spending a system call to learn `EAGAIN`. Nothing is
    /// missed: tokio registers sockets edge-triggered, and epoll raises a new event for
    /// each packet queued later. Elsewhere (one packet per call) the queue is read
    /// until the kernel says it is empty.
    pub async fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        loop {
            socket.readable().await?;
            let mut taken = 0;
            let result = socket.try_io(Interest::READABLE, || {
                taken = self.recv_some(socket)?;
                if cfg!(target_os = "linux") && taken < BATCH {
                    // tokio clears readiness when the closure reports WouldBlock.
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(taken)
                }
            });
            match result {
                Ok(n) => return Ok(n),
                Err(_) if taken > 0 => return Ok(taken),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => debug!(error = %e, "udp receive error"),
            }
        }
    }

    /// Packet `i` of the last receive and its sender.
    pub fn packet(&self, i: usize) -> (&[u8], SocketAddr) {
        let (len, src) = self.received[i];
        (&self.bufs[i][..len], src)
    }

    #[cfg(target_os = "linux")]
    fn recv_some(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
        use std::os::fd::AsRawFd;
        // The headers hold raw pointers (not Send), so they live only for the call.
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut slices = self.bufs.each_mut().map(|b| [io::IoSliceMut::new(b)]);
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        self.received.clear();
        for msg in results {
            let src = msg
                .address
                .and_then(|a| socket_addr(&a))
                .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
            self.received.push((msg.bytes.min(MAX_QUERY), src));
        }
        Ok(self.received.len())
    }

    #[cfg(not(target_os = "linux"))]
    fn recv_some(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let (len, src) = socket.try_recv_from(&mut self.bufs[0][..])?;
        self.received.clear();
        self.received.push((len, src));
        Ok(1)
    }
}

/// Answers waiting to be sent: up to [`BATCH`] buffers and their destinations.
pub struct Outbox {
    bufs: Vec<Vec<u8>>,
    dests: Vec<SocketAddr>,
}

impl Default for Outbox {
    fn default() -> Self {
        Self {
            bufs: (0..BATCH).map(|_| Vec::with_capacity(1500)).collect(),
            dests: Vec::with_capacity(BATCH),
        }
    }
}

impl Outbox {
    /// The buffer of the next answer (its earlier content is left for the writer to
    /// clear). It is sent only once [`Outbox::commit`] names its destination. At most
    /// [`BATCH`] answers are queued between flushes: one per packet of an [`Inbox`].
    pub fn next_buffer(&mut self) -> &mut Vec<u8> {
        let at = self.dests.len();
        &mut self.bufs[at]
    }

    /// Queues the answer written into [`Outbox::next_buffer`] for `dest`.
    pub fn commit(&mut self, dest: SocketAddr) {
        self.dests.push(dest);
    }

    /// Sends every queued answer, waiting while the socket's send buffer is full. An
    /// answer the kernel refuses (an unreachable destination) is logged and dropped.
    pub async fn flush(&mut self, socket: &UdpSocket) {
        let mut sent = 0;
        while sent < self.dests.len() {
            match socket.try_io(Interest::WRITABLE, || self.send_some(socket, sent)) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = socket.writable().await {
                        debug!(error = %e, "udp readiness error");
                        break;
                    }
                }
                Err(e) => {
                    debug!(dest = %self.dests[sent], error = %e, "udp send error");
                    sent += 1;
                }
            }
        }
        self.dests.clear();
    }

    /// Sends queued answers from `from` on; returns how many went (at least one).
    #[cfg(target_os = "linux")]
    fn send_some(&mut self, socket: &UdpSocket, from: usize) -> io::Result<usize> {
        use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
        use std::os::fd::AsRawFd;
        let count = self.dests.len() - from;
        // The headers hold raw pointers (not Send), so they live only for the call.
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(count, None);
        let slices: [[io::IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
            [io::IoSlice::new(
                self.bufs.get(from + i).map_or(&[][..], |b| &b[..]),
            )]
        });
        let addrs: smallvec::SmallVec<[Option<SockaddrStorage>; BATCH]> = self.dests[from..]
            .iter()
            .map(|d| Some(SockaddrStorage::from(*d)))
            .collect();
        let results = sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter(),
            &addrs,
            [] as [ControlMessage<'_>; 0],
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        Ok(results.count().max(1))
    }

    #[cfg(not(target_os = "linux"))]
    fn send_some(&mut self, socket: &UdpSocket, from: usize) -> io::Result<usize> {
        socket.try_send_to(&self.bufs[from], self.dests[from])?;
        Ok(1)
    }
}

/// The socket address in a `sockaddr` of family INET or INET6.
#[cfg(target_os = "linux")]
fn socket_addr(addr: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}
