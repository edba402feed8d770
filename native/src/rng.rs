//! Random sources handed to ntrust-native, which asks for randomness through its `RNGState` trait.
//!
//! Production code uses `OsRandom` (the operating system CSPRNG: getrandom(2) on Linux). The NIST
//! AES-256-CTR DRBG that ntrust-native ships (`AesState`) is deterministic and is used only by the
//! known-answer test in `kat.rs`.

use std::error::Error;
use std::fmt;

use ntrust_native::RNGState;

/// The operating system CSPRNG. It holds no state, so nothing secret outlives a call.
pub struct OsRandom;

/// getrandom failed (no entropy source, or the sandbox forbids the syscall).
#[derive(Debug)]
pub struct OsRandomError(getrandom::Error);

impl fmt::Display for OsRandomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the operating system random number generator failed: {}",
            self.0
        )
    }
}

impl Error for OsRandomError {}

impl RNGState for OsRandom {
    fn randombytes(&mut self, x: &mut [u8]) -> Result<(), Box<dyn Error>> {
        getrandom::fill(x).map_err(|e| Box::new(OsRandomError(e)) as Box<dyn Error>)
    }

    // The trait also models seeding the NIST DRBG. The OS generator cannot be seeded, and nothing in
    // ntrust-native's KEM functions calls this; a caller that wants determinism must use `AesState`.
    fn randombytes_init(&mut self, _entropy_input: [u8; 48]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_random_fills_and_differs() {
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        OsRandom.randombytes(&mut a).unwrap();
        OsRandom.randombytes(&mut b).unwrap();
        assert_ne!(a, [0u8; 64]);
        assert_ne!(a, b);
    }
}
