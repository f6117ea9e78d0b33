//! The in-memory object cache: key policy, stored entries and the byte-weighted store.

pub mod entry;
pub mod key;
pub mod store;

pub use entry::Entry;
pub use store::Store;
