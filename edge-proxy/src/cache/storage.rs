//! The storage seam (in the spirit of `pingora-cache`'s storage/lock split): a tier only
//! stores and finds complete entries; collapsing concurrent misses and the fills that readers
//! follow while the origin streams (`fill`) live outside it, in the request path. A fill is
//! committed with [`Storage::insert`] once its last byte arrived, so a tier never holds a short
//! body. Today's tier is memory ([`super::Store`], moka); a disk tier implements the same trait.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::entry::Entry;
use super::key::PathMatcher;

/// A cache tier.
pub trait Storage: Send + Sync {
    /// The entry under `key`: its metadata and a body that reads from any offset
    /// (`Entry::body`).
    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Arc<Entry>>>;

    /// Whether `key` is stored, answered synchronously (a disk tier answers from its index):
    /// lets collapsing tell "not stored yet" from "stored a moment ago".
    fn contains(&self, key: &str) -> bool;

    /// Stores a complete entry (never a `Body::Filling` one).
    fn insert(&self, key: String, entry: Arc<Entry>) -> BoxFuture<'_, ()>;

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()>;

    /// Drops every entry (slices included) whose path matches one of `matchers`.
    fn purge<'a>(&'a self, matchers: &'a [PathMatcher]) -> BoxFuture<'a, ()>;
}

impl Storage for super::Store {
    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Arc<Entry>>> {
        Box::pin(self.get(key))
    }

    fn contains(&self, key: &str) -> bool {
        super::Store::contains(self, key)
    }

    fn insert(&self, key: String, entry: Arc<Entry>) -> BoxFuture<'_, ()> {
        debug_assert!(!matches!(entry.body, super::Body::Filling(_)));
        Box::pin(super::Store::insert(self, key, entry))
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(super::Store::remove(self, key))
    }

    fn purge<'a>(&'a self, matchers: &'a [PathMatcher]) -> BoxFuture<'a, ()> {
        Box::pin(self.invalidate_matching(matchers))
    }
}
