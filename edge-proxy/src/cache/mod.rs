//! The object cache: key policy, stored entries, the header allowlist, fills readers follow
//! while the origin streams, slice arithmetic, and the storage seam with its memory tier.

pub mod entry;
pub mod fill;
pub mod headers;
pub mod key;
pub mod slice;
pub mod storage;
pub mod store;

pub use entry::{Body, Entry};
pub use fill::{Fill, FillError, FillReader, FillWriter};
pub use storage::Storage;
pub use store::Store;
