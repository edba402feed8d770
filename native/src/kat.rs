//! NIST known-answer test: regenerates the `PQCkemKAT_<sk bytes>.rsp` response file of the round-3
//! submission package, byte for byte, so its SHA-256 can be compared with the published value.
//!
//! This is the only place that uses the deterministic NIST AES-256-CTR DRBG. It exists for the
//! known-answer test; its keys come from public seeds and must never protect anything.

use std::fmt::Write;

use napi::{Error, Result, Status};
use napi_derive::napi;
use ntrust_native::{
    crypto_kem_dec, crypto_kem_enc, crypto_kem_keypair, AesState, RNGState, CRYPTO_ALGNAME,
    CRYPTO_BYTES, CRYPTO_CIPHERTEXTBYTES, CRYPTO_PUBLICKEYBYTES, CRYPTO_SECRETKEYBYTES,
};

use crate::params::SUITE_ID;

/// Number of records in the NIST response file.
const KAT_COUNT: usize = 100;

fn failed(what: &str, count: usize, e: impl std::fmt::Display) -> Error {
    Error::new(
        Status::GenericFailure,
        format!("{SUITE_ID} KAT record {count}: {what}: {e}"),
    )
}

fn push_field(out: &mut String, name: &str, bytes: &[u8]) {
    out.push_str(name);
    out.push_str(" = ");
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02X}");
    }
    out.push('\n');
}

/// Builds the response file text. The master DRBG is seeded with the bytes 0..47 and yields one 48-byte
/// seed per record; each record reseeds the DRBG with its seed and then runs keypair, encapsulate and
/// decapsulate, exactly as NIST's PQCgenKAT_kem does.
pub(crate) fn response_file() -> Result<String> {
    let mut entropy = [0u8; 48];
    for (i, b) in entropy.iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut master = AesState::new();
    master.randombytes_init(entropy);

    let record_len = 2
        * (48
            + CRYPTO_PUBLICKEYBYTES
            + CRYPTO_SECRETKEYBYTES
            + CRYPTO_CIPHERTEXTBYTES
            + CRYPTO_BYTES)
        + 64;
    let mut out = String::with_capacity(KAT_COUNT * record_len + 32);
    let _ = write!(out, "# {CRYPTO_ALGNAME}\n\n");

    for count in 0..KAT_COUNT {
        let mut seed = [0u8; 48];
        master
            .randombytes(&mut seed)
            .map_err(|e| failed("seed", count, e))?;

        let mut drbg = AesState::new();
        drbg.randombytes_init(seed);
        let mut pk = [0u8; CRYPTO_PUBLICKEYBYTES];
        let mut sk = [0u8; CRYPTO_SECRETKEYBYTES];
        let mut ct = [0u8; CRYPTO_CIPHERTEXTBYTES];
        let mut ss = [0u8; CRYPTO_BYTES];
        let mut ss_dec = [0u8; CRYPTO_BYTES];
        crypto_kem_keypair(&mut pk, &mut sk, &mut drbg).map_err(|e| failed("keypair", count, e))?;
        crypto_kem_enc(&mut ct, &mut ss, &pk, &mut drbg)
            .map_err(|e| failed("encapsulate", count, e))?;
        crypto_kem_dec(&mut ss_dec, &ct, &sk).map_err(|e| failed("decapsulate", count, e))?;
        if ss != ss_dec {
            return Err(failed("decapsulate", count, "shared secrets differ"));
        }

        let _ = writeln!(out, "count = {count}");
        push_field(&mut out, "seed", &seed);
        push_field(&mut out, "pk", &pk);
        push_field(&mut out, "sk", &sk);
        push_field(&mut out, "ct", &ct);
        push_field(&mut out, "ss", &ss);
        out.push('\n');
    }
    Ok(out)
}

/// For the known-answer test only. Regenerates the full 100-record NIST KAT response file (`.rsp`) of
/// this parameter set with the deterministic NIST AES-256-CTR DRBG and returns its text; the test
/// compares its SHA-256 with the published digest. Everything in it derives from public seeds.
#[napi]
pub fn kat_response_file() -> Result<String> {
    response_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let text = response_file().unwrap();
        assert!(text.starts_with(&format!("# {CRYPTO_ALGNAME}\n\ncount = 0\nseed = 061550234D158C5EC95595FE04EF7A25767F2E24CC2BC479D09D86DC9ABCFDE7056A8C266F9EF97ED08541DBD2E1FFA1\n")));
        assert_eq!(text.matches("count = ").count(), KAT_COUNT);
        assert!(text.ends_with("\n\n"));
    }
}
