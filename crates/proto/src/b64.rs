//! Base64url without padding, the only base64 flavour JOSE and ACME use.
//!
//! [RFC 7515 §2] defines `BASE64URL(OCTETS)` as the URL-safe alphabet of
//! [RFC 4648 §5] "with all trailing '=' characters omitted". Decoding is
//! strict: padding, the standard alphabet (`+`, `/`), whitespace and
//! non-canonical trailing bits are all rejected, so each value has exactly
//! one accepted encoding.
//!
//! [RFC 7515 §2]: https://www.rfc-editor.org/rfc/rfc7515#section-2
//! [RFC 4648 §5]: https://www.rfc-editor.org/rfc/rfc4648#section-5

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ProtoError;

/// Encodes bytes as unpadded base64url, as every JOSE member requires.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url, rejecting padding and any other alphabet.
pub fn decode(text: &str) -> Result<Vec<u8>, ProtoError> {
    // `URL_SAFE_NO_PAD` uses `DecodePaddingMode::RequireNone` and rejects
    // non-zero trailing bits, which is exactly the strictness wanted here.
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| ProtoError::Malformed(format!("invalid base64url: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&encode(&data)).unwrap(), data);
        }
    }

    #[test]
    fn rfc4648_vectors_without_padding() {
        // RFC 4648 §10 test vectors, padding stripped.
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg");
        assert_eq!(encode(b"fo"), "Zm8");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"foob"), "Zm9vYg");
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn rejects_padding_and_std_alphabet() {
        assert!(decode("Zg==").is_err());
        assert!(decode("Zm8=").is_err());
        assert!(decode("+/8").is_err());
        assert!(decode("Zm 9v").is_err());
        assert!(decode("Zm9v\n").is_err());
        // One leftover character can never be valid.
        assert!(decode("Z").is_err());
        // Non-zero trailing bits: "Zh" would decode to 'f' only leniently.
        assert!(decode("Zh").is_err());
    }
}
