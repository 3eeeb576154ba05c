//! Certificate serial numbers ([RFC 5280 §4.1.2.2]) in one canonical form.
//!
//! A serial is a positive INTEGER, so its DER content octets carry a leading
//! 0x00 whenever the high bit of the first value octet is set, and a lenient
//! CA may pad further. Two encodings of one serial must compare equal and be
//! shown the same way everywhere (our store, our CRL matching, `openssl x509
//! -serial`, the operator's CLI), so both come from here.
//!
//! [RFC 5280 §4.1.2.2]: https://www.rfc-editor.org/rfc/rfc5280#section-4.1.2.2

/// The integer's value octets: the DER content octets without leading zero
/// octets (empty for the serial 0).
pub fn magnitude(content_octets: &[u8]) -> &[u8] {
    let skip = content_octets.iter().take_while(|&&b| b == 0).count();
    content_octets.get(skip..).unwrap_or_default()
}

/// The serial in lowercase hex as `openssl x509 -serial` prints it: the
/// value's octets, no sign octet; `"00"` for zero.
pub fn serial_hex(content_octets: &[u8]) -> String {
    match magnitude(content_octets) {
        [] => "00".to_string(),
        value => value.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_and_unpadded_encodings_agree() {
        assert_eq!(magnitude(&[0, 0, 0x81, 2]), &[0x81, 2]);
        assert_eq!(magnitude(&[0x7f]), &[0x7f]);
        assert_eq!(magnitude(&[0]), &[] as &[u8]);
        assert_eq!(serial_hex(&[0x00, 0xfc, 0x54]), "fc54");
        assert_eq!(serial_hex(&[0x01, 0x00]), "0100");
        assert_eq!(serial_hex(&[0x00]), "00");
    }
}
