//! The broker's two pieces of plumbing: the guest's connection (the
//! bytes the proxy already read come first; traffic counted) and an
//! answer body with secrets' values scrubbed out as it streams.

use super::intercept::Stats;
use super::rules::{self, Scrubber};
use super::upstream::BoxError;
use super::Brokered;
use http::HeaderMap;
use hyper::body::{Body, Bytes, Frame, Incoming};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An answer body with the secrets' values replaced by placeholders.
pub struct Scrubbed {
    inner: Incoming,
    scrubber: Scrubber,
    secrets: Arc<Vec<Brokered>>,
    trailers: Option<HeaderMap>,
    ended: bool,
}

impl Scrubbed {
    pub fn new(inner: Incoming, secrets: Arc<Vec<Brokered>>) -> Scrubbed {
        Scrubbed {
            inner,
            scrubber: Scrubber::new(&secrets),
            secrets,
            trailers: None,
            ended: false,
        }
    }
}

impl Body for Scrubbed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(f) => f,
            };
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let out = this.scrubber.feed(&data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(mut t) = frame.into_trailers() {
                            rules::scrub_headers(&this.secrets, &mut t);
                            this.trailers = Some(t);
                        }
                        this.ended = true;
                        let tail = this.scrubber.finish();
                        if !tail.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(tail)))));
                        }
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => {
                    this.ended = true;
                    let tail = this.scrubber.finish();
                    if !tail.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(tail)))));
                    }
                }
            }
        }
    }
}

/// The guest's connection: the bytes the proxy read to learn the name
/// come first; traffic both ways is counted and marks it active.
pub struct Guest {
    inner: tokio::net::TcpStream,
    prefix: Vec<u8>,
    at: usize,
    stats: Arc<Stats>,
}

impl Guest {
    pub fn new(inner: tokio::net::TcpStream, prefix: Vec<u8>, stats: Arc<Stats>) -> Guest {
        Guest {
            inner,
            prefix,
            at: 0,
            stats,
        }
    }
}

impl AsyncRead for Guest {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.stats.up.fetch_add(n as u64, Ordering::Relaxed);
            this.stats.touch();
        }
        r
    }
}

impl AsyncWrite for Guest {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &r {
            this.stats.down.fetch_add(*n as u64, Ordering::Relaxed);
            this.stats.touch();
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
