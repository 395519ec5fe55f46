//! Password hashing: argon2id in PHC string format.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Hashes `password` with argon2id and a fresh random salt.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_else(|e| unreachable!("argon2 with default parameters cannot fail: {e}"))
}

/// Checks that `phc` is a PHC string we can verify, e.g. from `subscriber import`.
pub fn check_phc(phc: &str) -> Result<(), String> {
    let h = PasswordHash::new(phc).map_err(|e| format!("not a PHC password hash ({e})"))?;
    match h.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => Ok(()),
        other => Err(format!(
            "unsupported password hash algorithm '{other}' (use argon2id)"
        )),
    }
}

/// Verifies `password` against a PHC string; false for a malformed hash.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// [`verify_password`] with `memory` as argon2's working memory, for a thread that
/// checks many passwords: it keeps the 19 MiB rather than allocating them per check
/// (freed blocks that size, interleaved with small long-lived allocations, leave every
/// malloc arena holding ~57 MiB: 900 MiB after 1,000 concurrent logins).
pub fn verify_password_with(memory: &mut Vec<argon2::Block>, password: &str, phc: &str) -> bool {
    let Ok(h) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        argon2::Algorithm::try_from(h.algorithm),
        argon2::Params::try_from(&h),
    ) else {
        return false;
    };
    let Ok(version) = h.version.map(argon2::Version::try_from).transpose() else {
        return false;
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version.unwrap_or_default(), params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok()
        // Output's equality is constant-time.
        && argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("s3cret");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("S3cret", &h));
        let mut memory = Vec::new();
        assert!(verify_password_with(&mut memory, "s3cret", &h));
        assert!(!verify_password_with(&mut memory, "S3cret", &h));
        assert!(!verify_password_with(
            &mut memory,
            "s3cret",
            "$argon2id$nonsense"
        ));
        // Other parameters than the default, with the memory already there.
        let low = Argon2::new(
            argon2::Algorithm::Argon2i,
            argon2::Version::V0x10,
            argon2::Params::new(64, 1, 1, None).unwrap(),
        )
        .hash_password(b"x", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
        assert!(verify_password_with(&mut memory, "x", &low));
        assert!(!verify_password_with(&mut memory, "y", &low));
        assert!(!verify_password("s3cret", "garbage"));
        assert!(check_phc(&h).is_ok());
        assert!(check_phc("$2y$10$abcdefghijklmnopqrstuv").is_err());
    }
}
