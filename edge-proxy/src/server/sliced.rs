//! Answers from an object stored as slices: each slice the answer covers comes from the store
//! or from its own collapsed origin fetch (`fetch::fetch_slice`), one after the other as the
//! viewer reads, so a whole-object GET streams slice after slice with at most one slice being
//! fetched for it at a time. Every slice must carry the head's ETag and exact bytes; a slice
//! from another version ends the answer (the body is cut) instead of splicing two versions.

use std::sync::Arc;

use futures::StreamExt;

use super::fetch::{self, Fetched};
use super::respond::fill_stream;
use super::{Edge, Generation};
use crate::cache::key::slice_key;
use crate::cache::{Body, Entry};
use crate::origin::{OriginBody, OriginError};

/// Why a slice could not be had.
#[derive(Debug)]
pub enum SliceFailure {
    /// The object is no longer the version the head describes; the head was dropped.
    Changed,
    Origin(OriginError),
}

impl SliceFailure {
    fn into_origin_error(self) -> OriginError {
        match self {
            SliceFailure::Changed => {
                OriginError::Body("object changed while its slices were read".into())
            }
            SliceFailure::Origin(e) => e,
        }
    }
}

/// Slice `index` of the object stored under `key` whose head is `head`.
pub async fn slice(
    edge: &Arc<Edge>,
    generation: &Arc<Generation>,
    key: &str,
    head: &Arc<Entry>,
    index: u64,
) -> Result<Arc<Entry>, SliceFailure> {
    let Some(slicing) = head.slicing() else {
        return Err(SliceFailure::Changed);
    };
    let (start, end) = slicing.bounds(index);
    let skey = slice_key(key, index);
    let belongs = |e: &Entry| e.etag == head.etag && e.len == end - start && !e.is_negative();
    // Twice at most: a slice stored between the lookup and joining is looked up again.
    for _ in 0..2 {
        if let Some(e) = generation.storage().lookup(&skey).await {
            if belongs(&e) {
                return Ok(e);
            }
        }
        let Some(result) = fetch::fetch_slice(edge, generation, &skey, index, head.clone()).await
        else {
            continue;
        };
        return match result.as_deref() {
            Ok(Fetched::Entry { entry, .. }) if belongs(entry) => Ok(entry.clone()),
            Ok(_) => {
                // Outdated head: the next request learns the object anew.
                generation.storage().remove(key).await;
                edge.metrics.slice_changed.inc();
                Err(SliceFailure::Changed)
            }
            Err(e) => Err(SliceFailure::Origin(e.clone())),
        };
    }
    Err(SliceFailure::Origin(OriginError::Other(
        "slice neither stored nor fetchable".into(),
    )))
}

/// Bytes `start..end` (relative to the slice) of one slice entry.
fn read(entry: &Entry, start: u64, end: u64) -> OriginBody {
    match &entry.body {
        Body::Bytes(b) => {
            let part = b.slice(start as usize..end as usize);
            Box::pin(futures::stream::iter([Ok(part)]))
        }
        Body::Filling(fill) => fill_stream(fill.reader(start, end)),
        Body::Sliced { .. } => Box::pin(futures::stream::iter([Err(OriginError::Other(
            "a slice cannot be sliced".into(),
        ))])),
    }
}

struct Cursor {
    edge: Arc<Edge>,
    generation: Arc<Generation>,
    key: String,
    head: Arc<Entry>,
    start: u64,
    end: u64,
    next: u64,
    last: u64,
    first: Option<Arc<Entry>>,
    current: Option<OriginBody>,
    done: bool,
}

/// The body of bytes `start..end` (non-empty) of a sliced object; `first` is the slice
/// holding `start`, already in hand (fetched before the answer's headers went out, so a
/// changed object can still be retried cleanly).
pub fn body(
    edge: Arc<Edge>,
    generation: Arc<Generation>,
    key: String,
    head: Arc<Entry>,
    start: u64,
    end: u64,
    first: Arc<Entry>,
) -> OriginBody {
    let Some(slicing) = head.slicing() else {
        return Box::pin(futures::stream::iter([Err(OriginError::Other(
            "not a sliced entry".into(),
        ))]));
    };
    let span = slicing.covering(start, end);
    let cursor = Cursor {
        edge,
        generation,
        key,
        head,
        start,
        end,
        next: *span.start(),
        last: *span.end(),
        first: Some(first),
        current: None,
        done: false,
    };
    Box::pin(futures::stream::unfold(cursor, |mut c| async move {
        if c.done {
            return None;
        }
        loop {
            if let Some(cur) = c.current.as_mut() {
                match cur.next().await {
                    Some(Ok(chunk)) => return Some((Ok(chunk), c)),
                    Some(Err(e)) => {
                        c.done = true;
                        return Some((Err(e), c));
                    }
                    None => c.current = None,
                }
            }
            if c.next > c.last {
                return None;
            }
            let index = c.next;
            let entry = match c.first.take() {
                Some(e) => e,
                None => match slice(&c.edge, &c.generation, &c.key, &c.head, index).await {
                    Ok(e) => e,
                    Err(f) => {
                        c.done = true;
                        return Some((Err(f.into_origin_error()), c));
                    }
                },
            };
            let (s, e) = c.head.slicing()?.within(index, c.start, c.end);
            c.current = Some(read(&entry, s, e));
            c.next += 1;
        }
    }))
}
