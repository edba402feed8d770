//! Key generation, encapsulation and decapsulation with randomness from the OS CSPRNG.
//!
//! Inputs arrive as borrowed `&[u8]` views of JavaScript memory and are checked for their exact length
//! before anything else. Secret keys and shared secrets are written straight into heap buffers wrapped
//! in `Zeroizing`: on every error path they are wiped on drop, and on success the same allocation becomes
//! the memory of the JavaScript `Buffer` (an external buffer, no copy), so the caller's `fill(0)` wipes
//! the only copy. Secrets are never held in stack arrays that a move could duplicate. (ntrust-native's
//! own intermediate polynomials are not wiped; see the caveats in src/crypto/ntru.ts.)

use napi::bindgen_prelude::Buffer;
use napi::{Error, Result, Status};
use napi_derive::napi;
use ntrust_native::{
    crypto_kem_dec, crypto_kem_enc, crypto_kem_keypair, CRYPTO_BYTES, CRYPTO_CIPHERTEXTBYTES,
    CRYPTO_PUBLICKEYBYTES, CRYPTO_SECRETKEYBYTES,
};
use zeroize::Zeroizing;

use crate::params::SUITE_ID;
use crate::rng::OsRandom;

/// A fresh key pair.
#[napi(object)]
pub struct KeyPair {
    /// The public key (safe to share).
    pub public_key: Buffer,
    /// The secret key. The caller owns the only copy and should wipe it (`fill(0)`) when done.
    pub secret_key: Buffer,
}

/// The result of encapsulating to a public key.
#[napi(object)]
pub struct Encapsulation {
    /// The KEM ciphertext to send to the key owner.
    pub cipher_text: Buffer,
    /// The 32-byte shared secret. The caller owns the only copy and should wipe it when done.
    pub shared_secret: Buffer,
}

/// Borrows `bytes` as a fixed-size array, or fails with a message naming the operation and the input.
fn exact<'a, const N: usize>(op: &str, what: &str, bytes: &'a [u8]) -> Result<&'a [u8; N]> {
    <&[u8; N]>::try_from(bytes).map_err(|_| {
        Error::new(
            Status::InvalidArg,
            format!(
                "{SUITE_ID} {op}: {what} must be {N} bytes, got {}",
                bytes.len()
            ),
        )
    })
}

/// A zeroed heap buffer for secret bytes, wiped when dropped.
fn secret_buffer(len: usize) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(vec![0u8; len])
}

/// The buffer as the fixed-size array ntrust-native expects. Every caller allocates exactly `N` bytes.
fn array_mut<const N: usize>(buf: &mut [u8]) -> &mut [u8; N] {
    buf.try_into()
        .expect("secret buffers are allocated with the exact length")
}

/// Hands the allocation itself to JavaScript; what is left behind is an empty vector.
fn into_buffer(mut secret: Zeroizing<Vec<u8>>) -> Buffer {
    Buffer::from(std::mem::take(&mut *secret))
}

/// Wraps an ntrust-native failure. Its errors describe internal slice conversions or the random
/// source, never key material, so the text is safe to pass on.
fn failed(op: &str, e: Box<dyn std::error::Error>) -> Error {
    Error::new(
        Status::GenericFailure,
        format!("{SUITE_ID} {op} failed: {e}"),
    )
}

pub(crate) fn keypair_with_os_random() -> Result<(Vec<u8>, Zeroizing<Vec<u8>>)> {
    let mut pk = vec![0u8; CRYPTO_PUBLICKEYBYTES];
    let mut sk = secret_buffer(CRYPTO_SECRETKEYBYTES);
    crypto_kem_keypair(array_mut(&mut pk), array_mut(&mut sk), &mut OsRandom)
        .map_err(|e| failed("keypair", e))?;
    Ok((pk, sk))
}

pub(crate) fn encapsulate_with_os_random(
    public_key: &[u8],
) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>)> {
    let pk = exact::<CRYPTO_PUBLICKEYBYTES>("encapsulate", "public key", public_key)?;
    let mut ct = vec![0u8; CRYPTO_CIPHERTEXTBYTES];
    let mut ss = secret_buffer(CRYPTO_BYTES);
    crypto_kem_enc(array_mut(&mut ct), array_mut(&mut ss), pk, &mut OsRandom)
        .map_err(|e| failed("encapsulate", e))?;
    Ok((ct, ss))
}

pub(crate) fn decapsulate_into(
    cipher_text: &[u8],
    secret_key: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let ct = exact::<CRYPTO_CIPHERTEXTBYTES>("decapsulate", "ciphertext", cipher_text)?;
    let sk = exact::<CRYPTO_SECRETKEYBYTES>("decapsulate", "secret key", secret_key)?;
    let mut ss = secret_buffer(CRYPTO_BYTES);
    crypto_kem_dec(array_mut(&mut ss), ct, sk).map_err(|e| failed("decapsulate", e))?;
    Ok(ss)
}

/// Generates a key pair from the operating system CSPRNG.
#[napi]
pub fn keypair() -> Result<KeyPair> {
    let (pk, sk) = keypair_with_os_random()?;
    Ok(KeyPair {
        public_key: pk.into(),
        secret_key: into_buffer(sk),
    })
}

/// Encapsulates a fresh shared secret to `publicKey`, with randomness from the OS CSPRNG.
/// Throws if `publicKey` does not have this parameter set's public key length.
#[napi]
pub fn encapsulate(public_key: &[u8]) -> Result<Encapsulation> {
    let (ct, ss) = encapsulate_with_os_random(public_key)?;
    Ok(Encapsulation {
        cipher_text: ct.into(),
        shared_secret: into_buffer(ss),
    })
}

/// Recovers the shared secret from `cipherText` with `secretKey`.
///
/// A ciphertext made for another key, or a modified one, does not throw: NTRU's implicit rejection
/// returns a pseudorandom secret derived from the secret key and the ciphertext instead, so the caller
/// must authenticate whatever the secret protects. Throws only for wrong input lengths.
#[napi]
pub fn decapsulate(cipher_text: &[u8], secret_key: &[u8]) -> Result<Buffer> {
    Ok(into_buffer(decapsulate_into(cipher_text, secret_key)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let (pk, sk) = keypair_with_os_random().unwrap();
        let (ct, ss) = encapsulate_with_os_random(&pk).unwrap();
        let ss2 = decapsulate_into(&ct, &sk[..]).unwrap();
        assert_eq!(*ss, *ss2);
    }

    #[test]
    fn wrong_key_gives_another_secret_without_error() {
        let (pk, _) = keypair_with_os_random().unwrap();
        let (_, other_sk) = keypair_with_os_random().unwrap();
        let (ct, ss) = encapsulate_with_os_random(&pk).unwrap();
        let wrong = decapsulate_into(&ct, &other_sk[..]).unwrap();
        assert_ne!(*ss, *wrong);
    }

    #[test]
    fn wrong_lengths_name_the_operation() {
        let e = encapsulate_with_os_random(&[0u8; 3]).err().unwrap();
        assert!(
            e.reason.contains("encapsulate: public key must be"),
            "{}",
            e.reason
        );
        let e = decapsulate_into(&[0u8; CRYPTO_CIPHERTEXTBYTES], &[0u8; 1])
            .err()
            .unwrap();
        assert!(
            e.reason.contains("decapsulate: secret key must be"),
            "{}",
            e.reason
        );
    }
}
