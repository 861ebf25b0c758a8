//! Password authentication: nonces, scramble checks for
//! `mysql_native_password` and `caching_sha2_password`, and the RSA key used
//! by `caching_sha2_password` full authentication without TLS.
//!
//! rwsplit knows each user's password, so it checks a client's scramble by
//! computing the expected one; comparisons are constant-time.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use base64::Engine;
use mysql_common::scramble::{scramble_native, scramble_sha256};

pub const NATIVE_PASSWORD: &str = "mysql_native_password";
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";

/// caching_sha2_password: the client asks for the server's public key.
pub const SHA2_REQUEST_PUBLIC_KEY: u8 = 0x02;
/// caching_sha2_password: the scramble matched a cached entry.
pub const SHA2_FAST_AUTH_OK: u8 = 0x03;
/// caching_sha2_password: the client must send the password itself.
pub const SHA2_PERFORM_FULL_AUTH: u8 = 0x04;

/// The password plugins rwsplit verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPlugin {
    NativePassword,
    CachingSha2Password,
}

impl AuthPlugin {
    pub fn from_name(name: &[u8]) -> Option<AuthPlugin> {
        match name {
            b"mysql_native_password" => Some(AuthPlugin::NativePassword),
            b"caching_sha2_password" => Some(AuthPlugin::CachingSha2Password),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AuthPlugin::NativePassword => NATIVE_PASSWORD,
            AuthPlugin::CachingSha2Password => CACHING_SHA2_PASSWORD,
        }
    }

    /// The client's answer to `nonce` for `password` under this plugin.
    pub fn scramble(self, nonce: &[u8], password: &str) -> Vec<u8> {
        let password = password.as_bytes();
        match self {
            AuthPlugin::NativePassword => scramble_native(nonce, password).map(Vec::from),
            AuthPlugin::CachingSha2Password => scramble_sha256(nonce, password).map(Vec::from),
        }
        .unwrap_or_default()
    }

    /// Whether `response` is the right scramble of `password` for `nonce`.
    pub fn verify(self, nonce: &[u8], password: &str, response: &[u8]) -> bool {
        let expected = self.scramble(nonce, password);
        !expected.is_empty() && verify_slices_are_equal(&expected, response).is_ok()
    }
}

/// A fresh 20-byte challenge. Bytes are printable ASCII: the second part of
/// the nonce is NUL-terminated in the greeting, and some clients mishandle
/// other bytes.
pub fn nonce() -> [u8; 20] {
    let mut bytes = [0u8; 20];
    // The system RNG failing is not recoverable; aws-lc aborts on it itself.
    aws_lc_rs::rand::fill(&mut bytes).expect("system random number generator");
    bytes.map(|b| 0x21 + b % 94)
}

/// Whether `password` is the plaintext a client sent in full authentication
/// (`password` followed by a NUL byte).
pub fn verify_cleartext(password: &str, sent: &[u8]) -> bool {
    let sent = sent.strip_suffix(&[0]).unwrap_or(sent);
    verify_slices_are_equal(password.as_bytes(), sent).is_ok()
}

/// The RSA key pair `caching_sha2_password` clients encrypt the password
/// with when there is no TLS. Generated when rwsplit starts.
pub struct RsaKey {
    private: OaepPrivateDecryptingKey,
    public_pem: String,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey").finish_non_exhaustive()
    }
}

impl RsaKey {
    /// Generates a 2048-bit key pair.
    pub fn generate() -> Result<RsaKey, aws_lc_rs::error::Unspecified> {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048)?;
        let der = private.public_key().as_der()?;
        let public_pem = pem("PUBLIC KEY", der.as_ref());
        Ok(RsaKey {
            private: OaepPrivateDecryptingKey::new(private)?,
            public_pem,
        })
    }

    /// The public key as the PEM text sent to clients.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// Decrypts what a client sent: RSA-OAEP of (password + NUL) XOR nonce.
    /// Returns the password bytes with the NUL, or `None` if it does not
    /// decrypt.
    pub fn decrypt_password(&self, ciphertext: &[u8], nonce: &[u8]) -> Option<Vec<u8>> {
        let mut plain = vec![0u8; self.private.min_output_size()];
        let plain = self
            .private
            .decrypt(&OAEP_SHA1_MGF1SHA1, ciphertext, &mut plain, None)
            .ok()?;
        if nonce.is_empty() {
            return None;
        }
        Some(
            plain
                .iter()
                .zip(nonce.iter().cycle())
                .map(|(b, n)| b ^ n)
                .collect(),
        )
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrambles_verify_only_the_right_password() {
        let nonce = nonce();
        for plugin in [AuthPlugin::NativePassword, AuthPlugin::CachingSha2Password] {
            let response = plugin.scramble(&nonce, "s3cret");
            assert!(plugin.verify(&nonce, "s3cret", &response));
            assert!(!plugin.verify(&nonce, "s3cret!", &response));
            assert!(!plugin.verify(&nonce, "s3cret", &response[1..]));
            assert!(!plugin.verify(&nonce, "s3cret", b""));
            assert!(
                !plugin.verify(&nonce, "", b""),
                "empty passwords never verify"
            );
        }
    }

    #[test]
    fn nonces_are_printable_and_fresh() {
        let (a, b) = (nonce(), nonce());
        assert_ne!(a, b);
        assert!(a.iter().all(|c| c.is_ascii_graphic()));
    }

    #[test]
    fn cleartext_passwords() {
        assert!(verify_cleartext("pw", b"pw\0"));
        assert!(verify_cleartext("pw", b"pw"));
        assert!(!verify_cleartext("pw", b"pW\0"));
    }

    #[test]
    fn rsa_round_trip_with_the_client_side_encryption() {
        let key = RsaKey::generate().unwrap();
        assert!(key.public_pem().starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let nonce = nonce();
        let plain: Vec<u8> = b"s3cret\0"
            .iter()
            .zip(nonce.iter().cycle())
            .map(|(b, n)| b ^ n)
            .collect();
        // The client side, as mysql_common implements it for MySQL 8.
        let ciphertext = mysql_common::crypto::encrypt(&plain, key.public_pem().as_bytes());
        assert_eq!(
            key.decrypt_password(&ciphertext, &nonce).as_deref(),
            Some(&b"s3cret\0"[..])
        );
        assert_eq!(key.decrypt_password(b"garbage", &nonce), None);
    }
}
