//! Secrets handed to QEMU: AES-256-CBC with the domain's master key, as
//! libvirt's `qemuDomainSecretAESSetup` does, so a secret never appears in
//! clear text on the command line.

use aes::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
use base64::Engine as _;

use crate::props::Props;

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;

/// Id of the master-key `secret` object every other secret refers to.
pub const MASTER_KEY_ALIAS: &str = "masterKey0";

/// A secret encrypted for QEMU: ciphertext and IV, both base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedSecret {
    /// base64 of the AES-256-CBC ciphertext (PKCS#7 padded).
    pub ciphertext: String,
    /// base64 of the 16-byte IV.
    pub iv: String,
}

/// Encrypts `plain` with `key` and `iv`.
pub fn encrypt(key: &[u8; 32], iv: &[u8; 16], plain: &[u8]) -> EncryptedSecret {
    let ct = Aes256CbcEnc::new(key.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plain);
    let b64 = base64::engine::general_purpose::STANDARD;
    EncryptedSecret {
        ciphertext: b64.encode(ct),
        iv: b64.encode(iv),
    }
}

impl EncryptedSecret {
    /// The `-object secret` properties with id `alias`.
    pub fn object_props(&self, alias: &str) -> Props {
        Props::new()
            .with("qom-type", "secret")
            .with("id", alias)
            .with("data", self.ciphertext.as_str())
            .with("keyid", MASTER_KEY_ALIAS)
            .with("iv", self.iv.as_str())
            .with("format", "base64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypts_like_libvirt_with_the_test_key_and_iv() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let iv: [u8; 16] = std::array::from_fn(|i| i as u8);
        let s = encrypt(&key, &iv, b"AQCVn5hO6HzFAhAAq0NCv8jtJcIcE+HOBlMQ1A");
        assert_eq!(
            s.ciphertext,
            "9eao5F8qtkGt+seB1HYivWIxbtwUu6MQtg1zpj/oDtUsPr1q8wBYM91uEHCn6j/1"
        );
        assert_eq!(s.iv, "AAECAwQFBgcICQoLDA0ODw==");
    }
}
