//! Trusted public keys and signature verification (RSA PKCS#1 v1.5 and ECDSA P-256, over
//! SHA-1 or SHA-256 as CloudFront's `Hash-Algorithm` says).
//!
//! PEM parsing uses the RustCrypto crates; verification runs on `ring` (an order of magnitude
//! faster for RSA, and verification sits on the hit path of every signed request). `ring` has
//! no ECDSA over SHA-1, so that one combination stays on `p256`.

use p256::pkcs8::DecodePublicKey;
use ring::signature::{self as ring_sig, UnparsedPublicKey};
use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPublicKey};
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;

/// The digest a viewer's signature was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// CloudFront's default when no `Hash-Algorithm` is sent.
    Sha1,
    Sha256,
}

impl HashAlgorithm {
    /// Parses the `Hash-Algorithm` parameter value (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("SHA1") {
            Some(Self::Sha1)
        } else if s.eq_ignore_ascii_case("SHA256") {
            Some(Self::Sha256)
        } else {
            None
        }
    }
}

/// Why a PEM public key was refused at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM RSA or EC P-256 public key")]
    Unsupported,
    #[error("RSA key of {0} bits is too small (2048 minimum)")]
    RsaTooSmall(usize),
    #[error("RSA key of {0} bits is too large (8192 maximum)")]
    RsaTooLarge(usize),
}

/// An RSA public key in the PKCS#1 DER form `ring` verifies with.
#[derive(Clone)]
pub struct RsaKey {
    pkcs1_der: Box<[u8]>,
    bits: usize,
}

/// An EC P-256 public key: the SEC1 point for `ring`, the parsed key for SHA-1 signatures.
#[derive(Clone)]
pub struct EcKey {
    point: Box<[u8]>,
    sha1: p256::ecdsa::VerifyingKey,
}

/// A public key viewers' signatures are checked against.
#[derive(Clone)]
pub enum PublicKey {
    Rsa(RsaKey),
    EcdsaP256(EcKey),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Public, but still no reason to print it.
        match self {
            PublicKey::Rsa(k) => write!(f, "PublicKey::Rsa({} bits)", k.bits),
            PublicKey::EcdsaP256(_) => f.write_str("PublicKey::EcdsaP256"),
        }
    }
}

impl PublicKey {
    /// Parses a SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`, RSA or EC P-256) or a PKCS#1
    /// `BEGIN RSA PUBLIC KEY`.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let pem = pem.trim();
        let rsa = RsaPublicKey::from_public_key_pem(pem)
            .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
            .ok();
        if let Some(k) = rsa {
            let bits = k.n().bits();
            if bits < 2048 {
                return Err(KeyError::RsaTooSmall(bits));
            }
            if bits > 8192 {
                return Err(KeyError::RsaTooLarge(bits));
            }
            let der = k.to_pkcs1_der().map_err(|_| KeyError::Unsupported)?;
            return Ok(PublicKey::Rsa(RsaKey {
                pkcs1_der: der.as_bytes().into(),
                bits,
            }));
        }
        let key = p256::ecdsa::VerifyingKey::from_public_key_pem(pem)
            .map_err(|_| KeyError::Unsupported)?;
        Ok(PublicKey::EcdsaP256(EcKey {
            point: key.to_encoded_point(false).as_bytes().into(),
            sha1: key,
        }))
    }

    /// Whether `signature` signs `message` with this key. Never panics on hostile input.
    pub fn verify(&self, hash: HashAlgorithm, message: &[u8], signature: &[u8]) -> bool {
        match (self, hash) {
            (PublicKey::Rsa(k), HashAlgorithm::Sha1) => UnparsedPublicKey::new(
                &ring_sig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                &k.pkcs1_der,
            )
            .verify(message, signature)
            .is_ok(),
            (PublicKey::Rsa(k), HashAlgorithm::Sha256) => {
                UnparsedPublicKey::new(&ring_sig::RSA_PKCS1_2048_8192_SHA256, &k.pkcs1_der)
                    .verify(message, signature)
                    .is_ok()
            }
            // openssl and Java produce DER; accept the fixed 64-byte r||s form too.
            (PublicKey::EcdsaP256(k), HashAlgorithm::Sha256) => {
                UnparsedPublicKey::new(&ring_sig::ECDSA_P256_SHA256_ASN1, &k.point)
                    .verify(message, signature)
                    .is_ok()
                    || (signature.len() == 64
                        && UnparsedPublicKey::new(&ring_sig::ECDSA_P256_SHA256_FIXED, &k.point)
                            .verify(message, signature)
                            .is_ok())
            }
            (PublicKey::EcdsaP256(k), HashAlgorithm::Sha1) => {
                use p256::ecdsa::signature::hazmat::PrehashVerifier;
                use sha1::{Digest, Sha1};
                let sig = p256::ecdsa::Signature::from_der(signature)
                    .or_else(|_| p256::ecdsa::Signature::from_slice(signature));
                match sig {
                    Ok(sig) => k.sha1.verify_prehash(&Sha1::digest(message), &sig).is_ok(),
                    Err(_) => false,
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_keys {
    //! Fixed test key pairs from `testdata/` (test material only).
    use rsa::pkcs8::DecodePrivateKey;

    pub const RSA_A_PUB: &str = include_str!("testdata/rsa_a.pub.pem");
    pub const RSA_B_PUB: &str = include_str!("testdata/rsa_b.pub.pem");
    pub const RSA_1024_PUB: &str = include_str!("testdata/rsa_1024.pub.pem");
    pub const EC_A_PUB: &str = include_str!("testdata/ec_a.pub.pem");
    pub const EC_P384_PUB: &str = include_str!("testdata/ec_p384.pub.pem");

    pub fn rsa_a() -> rsa::RsaPrivateKey {
        rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("testdata/rsa_a.pem")).expect("rsa_a")
    }
    pub fn rsa_b() -> rsa::RsaPrivateKey {
        rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("testdata/rsa_b.pem")).expect("rsa_b")
    }
    pub fn ec_a() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_pkcs8_pem(include_str!("testdata/ec_a.pem")).expect("ec_a")
    }
}

#[cfg(test)]
mod tests {
    use super::test_keys::*;
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use rsa::Pkcs1v15Sign;
    use sha1::{Digest, Sha1};
    use sha2::Sha256;

    fn rsa_sign(k: &rsa::RsaPrivateKey, hash: HashAlgorithm, msg: &[u8]) -> Vec<u8> {
        match hash {
            HashAlgorithm::Sha1 => k.sign(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(msg)),
            HashAlgorithm::Sha256 => k.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg)),
        }
        .expect("sign")
    }

    #[test]
    fn rsa_verifies_both_hashes_and_rejects_tampering() {
        let sk = rsa_a();
        let key = PublicKey::from_pem(RSA_A_PUB).expect("pem");
        for hash in [HashAlgorithm::Sha1, HashAlgorithm::Sha256] {
            let sig = rsa_sign(&sk, hash, b"policy");
            assert!(key.verify(hash, b"policy", &sig));
            assert!(!key.verify(hash, b"policy!", &sig));
            let other = if hash == HashAlgorithm::Sha1 {
                HashAlgorithm::Sha256
            } else {
                HashAlgorithm::Sha1
            };
            assert!(!key.verify(other, b"policy", &sig), "hash confusion");
            let mut bad = sig.clone();
            bad[10] ^= 1;
            assert!(!key.verify(hash, b"policy", &bad));
            assert!(!key.verify(hash, b"policy", &sig[..sig.len() - 1]));
            assert!(!key.verify(hash, b"policy", &[]));
        }
    }

    #[test]
    fn ecdsa_verifies_der_and_fixed_signatures() {
        let sk = ec_a();
        let key = PublicKey::from_pem(EC_A_PUB).expect("pem");
        for hash in [HashAlgorithm::Sha1, HashAlgorithm::Sha256] {
            let digest: Vec<u8> = match hash {
                HashAlgorithm::Sha1 => Sha1::digest(b"policy").to_vec(),
                HashAlgorithm::Sha256 => Sha256::digest(b"policy").to_vec(),
            };
            let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest).expect("sign");
            assert!(key.verify(hash, b"policy", sig.to_der().as_bytes()));
            assert!(key.verify(hash, b"policy", &sig.to_bytes()));
            assert!(!key.verify(hash, b"other", sig.to_der().as_bytes()));
            assert!(!key.verify(hash, b"policy", b"\x30\x02\x00\x00"));
        }
    }

    #[test]
    fn rejects_wrong_key() {
        let sk = rsa_a();
        let other = PublicKey::from_pem(RSA_B_PUB).expect("pem");
        let sig = rsa_sign(&sk, HashAlgorithm::Sha1, b"m");
        assert!(!other.verify(HashAlgorithm::Sha1, b"m", &sig));
    }

    #[test]
    fn pem_errors() {
        assert_eq!(
            PublicKey::from_pem("hello").unwrap_err(),
            KeyError::Unsupported
        );
        // A private key is not accepted as a public key; nor is another curve.
        assert!(PublicKey::from_pem(include_str!("testdata/rsa_a.pem")).is_err());
        assert_eq!(
            PublicKey::from_pem(EC_P384_PUB).unwrap_err(),
            KeyError::Unsupported
        );
        assert_eq!(
            PublicKey::from_pem(RSA_1024_PUB).unwrap_err(),
            KeyError::RsaTooSmall(1024)
        );
        assert!(matches!(
            PublicKey::from_pem(RSA_B_PUB),
            Ok(PublicKey::Rsa(_))
        ));
    }

    #[test]
    fn debug_never_prints_key_material() {
        let key = PublicKey::from_pem(RSA_A_PUB).expect("pem");
        assert_eq!(format!("{key:?}"), "PublicKey::Rsa(2048 bits)");
    }
}
