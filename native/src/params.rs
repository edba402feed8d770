//! The parameter set compiled into this build.

use napi_derive::napi;
use ntrust_native::{
    CRYPTO_ALGNAME, CRYPTO_BYTES, CRYPTO_CIPHERTEXTBYTES, CRYPTO_PUBLICKEYBYTES,
    CRYPTO_SECRETKEYBYTES,
};

/// The mongo-capsule suite id of this build (stable; stored in capsules and identity files).
#[cfg(feature = "hps4096821")]
pub const SUITE_ID: &str = "ntru-hps-4096-821";
/// The mongo-capsule suite id of this build (stable; stored in capsules and identity files).
#[cfg(feature = "hrss701")]
pub const SUITE_ID: &str = "ntru-hrss-701";

/// Which NTRU parameter set this addon implements, and its byte lengths.
#[napi(object)]
pub struct ParameterSet {
    /// mongo-capsule suite id, e.g. `ntru-hps-4096-821`.
    pub suite: String,
    /// Name used by the NTRU submission and its KAT files, e.g. `ntruhps4096821`.
    pub algorithm: String,
    /// Public key length in bytes.
    pub public_key_bytes: u32,
    /// Secret key length in bytes.
    pub secret_key_bytes: u32,
    /// Ciphertext length in bytes.
    pub cipher_text_bytes: u32,
    /// Shared secret length in bytes.
    pub shared_secret_bytes: u32,
}

/// Describes the parameter set compiled into this addon. The loader compares it with the suite it
/// expects, so a library copied under the wrong name is refused instead of producing foreign keys.
#[napi]
pub fn parameter_set() -> ParameterSet {
    ParameterSet {
        suite: SUITE_ID.to_string(),
        algorithm: CRYPTO_ALGNAME.to_string(),
        public_key_bytes: CRYPTO_PUBLICKEYBYTES as u32,
        secret_key_bytes: CRYPTO_SECRETKEYBYTES as u32,
        cipher_text_bytes: CRYPTO_CIPHERTEXTBYTES as u32,
        shared_secret_bytes: CRYPTO_BYTES as u32,
    }
}
