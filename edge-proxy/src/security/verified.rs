//! A bounded memo of signatures already verified, so a viewer replaying the same signed URL or
//! cookie (every segment of a video, every asset of a page) pays for one public-key operation,
//! not one per request.
//!
//! Only the public-key check is memoized: expiry, start time, IP ranges and the resource are
//! evaluated on every request. The memo key is a SHA-256 over every input of the check (key
//! id, hash algorithm, signed message, signature), so an entry answers exactly the question
//! the key would. Failures are never stored. Each compiled config has its own memo, so a reload
//! that changes a key cannot reuse an old answer.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use ring::digest;

use super::keys::{HashAlgorithm, PublicKey};

/// Entries kept (32-byte keys; about 10 MiB at the bound with moka's per-entry overhead).
pub const DEFAULT_CAPACITY: u64 = 65_536;
/// How long an entry may be reused; validity windows are checked per request regardless.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// Verified-signature memo shared by every clone of one compiled gate.
#[derive(Clone)]
pub struct VerifiedSignatures {
    memo: moka::sync::Cache<[u8; 32], ()>,
    /// Checks answered from the memo.
    pub reused: Counter,
    /// Checks that ran the public-key operation.
    pub computed: Counter,
}

impl std::fmt::Debug for VerifiedSignatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedSignatures")
            .field("entries", &self.memo.entry_count())
            .finish()
    }
}

impl Default for VerifiedSignatures {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, Counter::default(), Counter::default())
    }
}

impl VerifiedSignatures {
    /// A memo of at most `capacity` entries; a capacity of 0 disables memoization.
    pub fn new(capacity: u64, reused: Counter, computed: Counter) -> Self {
        Self {
            memo: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(DEFAULT_TTL)
                .build(),
            reused,
            computed,
        }
    }

    /// `key.verify(hash, message, signature)`, answered from the memo when this exact check
    /// already succeeded.
    pub fn verify(
        &self,
        key_id: &str,
        key: &PublicKey,
        hash: HashAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        let id = memo_key(key_id, hash, message, signature);
        if self.memo.get(&id).is_some() {
            self.reused.inc();
            return true;
        }
        self.computed.inc();
        let ok = key.verify(hash, message, signature);
        if ok {
            self.memo.insert(id, ());
        }
        ok
    }

    /// Entries currently held (approximate: moka applies writes lazily).
    pub fn len(&self) -> u64 {
        self.memo.run_pending_tasks();
        self.memo.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Length-prefixed fields so no two different inputs share an encoding.
fn memo_key(key_id: &str, hash: HashAlgorithm, message: &[u8], signature: &[u8]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for field in [key_id.as_bytes(), message, signature] {
        ctx.update(&(field.len() as u64).to_be_bytes());
        ctx.update(field);
    }
    ctx.update(match hash {
        HashAlgorithm::Sha1 => b"1",
        HashAlgorithm::Sha256 => b"2",
    });
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::super::keys::test_keys::*;
    use super::*;
    use rsa::Pkcs1v15Sign;
    use sha1::{Digest, Sha1};

    fn signed(msg: &[u8]) -> Vec<u8> {
        rsa_a()
            .sign(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(msg))
            .expect("sign")
    }

    #[test]
    fn second_check_is_reused_and_failures_are_not_stored() {
        let memo = VerifiedSignatures::default();
        let key = PublicKey::from_pem(RSA_A_PUB).expect("pem");
        let sig = signed(b"policy");
        assert!(memo.verify("KA", &key, HashAlgorithm::Sha1, b"policy", &sig));
        assert!(memo.verify("KA", &key, HashAlgorithm::Sha1, b"policy", &sig));
        assert_eq!((memo.computed.get(), memo.reused.get()), (1, 1));
        let mut bad = sig.clone();
        bad[3] ^= 1;
        for _ in 0..2 {
            assert!(!memo.verify("KA", &key, HashAlgorithm::Sha1, b"policy", &bad));
        }
        assert_eq!((memo.computed.get(), memo.reused.get()), (3, 1));
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn every_input_is_part_of_the_memo_key() {
        let memo = VerifiedSignatures::default();
        let key = PublicKey::from_pem(RSA_A_PUB).expect("pem");
        let other = PublicKey::from_pem(RSA_B_PUB).expect("pem");
        let sig = signed(b"policy");
        assert!(memo.verify("KA", &key, HashAlgorithm::Sha1, b"policy", &sig));
        // Same signature under another id (whose key differs), another hash, another message.
        assert!(!memo.verify("KB", &other, HashAlgorithm::Sha1, b"policy", &sig));
        assert!(!memo.verify("KA", &key, HashAlgorithm::Sha256, b"policy", &sig));
        assert!(!memo.verify("KA", &key, HashAlgorithm::Sha1, b"policy2", &sig));
        assert_eq!(memo.reused.get(), 0);
        // Field boundaries cannot be shifted to collide.
        assert_ne!(
            memo_key("KA", HashAlgorithm::Sha1, b"xy", b"z"),
            memo_key("KA", HashAlgorithm::Sha1, b"x", b"yz")
        );
        assert_ne!(
            memo_key("KAx", HashAlgorithm::Sha1, b"y", b"z"),
            memo_key("KA", HashAlgorithm::Sha1, b"xy", b"z")
        );
    }

    #[test]
    fn zero_capacity_always_computes() {
        let memo = VerifiedSignatures::new(0, Counter::default(), Counter::default());
        let key = PublicKey::from_pem(RSA_A_PUB).expect("pem");
        let sig = signed(b"p");
        for _ in 0..3 {
            assert!(memo.verify("KA", &key, HashAlgorithm::Sha1, b"p", &sig));
        }
        assert_eq!(memo.computed.get(), 3);
    }
}
