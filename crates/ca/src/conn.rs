//! Connection hygiene for the HTTPS listener, below TLS: at most
//! `capacity.max_connections` open at once, and a connection that sends
//! nothing for `capacity.connection_idle_seconds` is closed. The second
//! covers what hyper's header timeout does not: a client that completes the
//! TLS handshake and never sends a request, an HTTP/2 connection idle after
//! its preface, a keep-alive connection left open between requests.

use std::future::{Ready, ready};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The acceptor under TLS: counts connections and wraps each in an idle timer.
#[derive(Clone, Debug)]
pub struct Guard {
    slots: Arc<Semaphore>,
    idle: Duration,
}

impl Guard {
    /// At most `max` connections, each closed after `idle` without a byte from the client.
    pub fn new(max: u32, idle: Duration) -> Guard {
        Guard {
            slots: Arc::new(Semaphore::new(max as usize)),
            idle,
        }
    }
}

impl<I, S> Accept<I, S> for Guard
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    type Stream = Guarded<I>;
    type Service = S;
    type Future = Ready<io::Result<(Guarded<I>, S)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        // Over the cap the connection is dropped unanswered: cheaper than a
        // TLS handshake, and the client sees a reset it can retry.
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            tracing::warn!("connection refused: capacity.max_connections reached");
            return ready(Err(io::Error::other("connection cap reached")));
        };
        ready(Ok((
            Guarded {
                inner: stream,
                idle: self.idle,
                deadline: Box::pin(tokio::time::sleep(self.idle)),
                _permit: permit,
            },
            service,
        )))
    }
}

/// A connection with an idle deadline; it frees its slot when dropped.
#[derive(Debug)]
pub struct Guarded<I> {
    inner: I,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + self.idle;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
