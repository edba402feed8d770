//! NTRU (NIST PQC round 3 submission) key encapsulation for mongo-capsule, as a Node-API addon.
//!
//! The arithmetic is `ntrust-native`, a pure-Rust port of the round-3 reference implementation. Each
//! build of this crate carries exactly one parameter set, chosen with a cargo feature (see Cargo.toml).
//!
//! - `kem`: key generation, encapsulation, decapsulation; randomness from the OS CSPRNG.
//! - `kat`: regenerates the NIST known-answer response file with the NIST AES-256-CTR DRBG (tests only).
//! - `params`: the parameter set this build was compiled for, so the loader can check it.
//! - `rng`: the OS random source handed to ntrust-native.

#[cfg(all(feature = "hps4096821", feature = "hrss701"))]
compile_error!(
    "enable exactly one of the features `hps4096821` and `hrss701` (one parameter set per build)"
);
#[cfg(not(any(feature = "hps4096821", feature = "hrss701")))]
compile_error!("enable one of the features `hps4096821` or `hrss701`");

pub mod kat;
pub mod kem;
pub mod params;
pub mod rng;
