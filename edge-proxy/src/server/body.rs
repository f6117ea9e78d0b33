//! The viewer response body: a shared `Bytes` from the cache (no copy, no boxing on the hit path)
//! or an origin stream for objects that pass through uncached.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::origin::{OriginBody, OriginError};

pub enum EdgeBody {
    Full(Option<Bytes>),
    /// An already-received prefix, then the rest of the origin body.
    Stream {
        prefix: Option<Bytes>,
        rest: OriginBody,
        /// Exact length when the origin declared it.
        len: Option<u64>,
    },
}

impl EdgeBody {
    pub fn empty() -> EdgeBody {
        EdgeBody::Full(None)
    }

    pub fn full(b: Bytes) -> EdgeBody {
        if b.is_empty() {
            EdgeBody::Full(None)
        } else {
            EdgeBody::Full(Some(b))
        }
    }
}

impl From<&'static str> for EdgeBody {
    fn from(s: &'static str) -> Self {
        EdgeBody::full(Bytes::from_static(s.as_bytes()))
    }
}

impl http_body::Body for EdgeBody {
    type Data = Bytes;
    type Error = OriginError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, OriginError>>> {
        match self.get_mut() {
            EdgeBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            EdgeBody::Stream { prefix, rest, .. } => {
                if let Some(p) = prefix.take() {
                    if !p.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(p))));
                    }
                }
                match rest.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, EdgeBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EdgeBody::Full(None) => SizeHint::with_exact(0),
            EdgeBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            EdgeBody::Stream { len: Some(n), .. } => SizeHint::with_exact(*n),
            EdgeBody::Stream { .. } => SizeHint::default(),
        }
    }
}

/// Requests whose response (including its body) is still being sent; shutdown waits for
/// these before closing connections, so a long stream-through is not cut short.
#[derive(Default)]
pub struct ActiveRequests {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

impl ActiveRequests {
    pub fn enter(self: &std::sync::Arc<Self>) -> RequestGuard {
        self.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        RequestGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves once no request is active.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Marks one request active until dropped (with its response body).
pub struct RequestGuard(std::sync::Arc<ActiveRequests>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

/// A response body that keeps its request counted as active until fully sent or dropped.
pub struct TrackedBody {
    pub inner: EdgeBody,
    pub _guard: RequestGuard,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = OriginError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, OriginError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Skips `skip` bytes and yields at most `take` bytes of a stream (a range over a pass-through).
pub fn slice_stream(body: OriginBody, skip: u64, take: u64) -> OriginBody {
    let s = futures::stream::unfold(
        (body, skip, take),
        |(mut body, mut skip, mut take)| async move {
            use futures::StreamExt;
            loop {
                if take == 0 {
                    return None;
                }
                match body.next().await? {
                    Err(e) => return Some((Err(e), (body, 0, 0))),
                    Ok(mut chunk) => {
                        let len = chunk.len() as u64;
                        if skip >= len {
                            skip -= len;
                            continue;
                        }
                        let start = skip as usize;
                        skip = 0;
                        let end = (start as u64 + take).min(len) as usize;
                        let out = chunk.split_off(start).split_to(end - start);
                        take -= out.len() as u64;
                        return Some((Ok(out), (body, skip, take)));
                    }
                }
            }
        },
    );
    Box::pin(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn slices_across_chunks() {
        let chunks: Vec<Result<Bytes, OriginError>> = vec![
            Ok(Bytes::from_static(b"0123")),
            Ok(Bytes::from_static(b"4567")),
            Ok(Bytes::from_static(b"89")),
        ];
        for (skip, take, want) in [
            (0u64, 10u64, "0123456789"),
            (2, 3, "234"),
            (3, 3, "345"),
            (4, 4, "4567"),
            (9, 5, "9"),
            (10, 5, ""),
        ] {
            let body: OriginBody = Box::pin(futures::stream::iter(chunks.clone()));
            let out: Vec<Bytes> = slice_stream(body, skip, take)
                .map(|r| r.expect("chunk"))
                .collect()
                .await;
            assert_eq!(out.concat(), want.as_bytes(), "skip {skip} take {take}");
        }
    }
}
