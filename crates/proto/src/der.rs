//! The small subset of DER ([X.690 §10]) needed for SubjectPublicKeyInfo.
//!
//! Only what [RFC 5280 §4.1.2.7] SPKIs for P-256, P-384, RSA and Ed25519
//! need: single-byte tags, definite lengths, SEQUENCE, INTEGER, BIT STRING,
//! NULL and OBJECT IDENTIFIER. The reader is strict DER: non-minimal lengths,
//! indefinite lengths, non-minimal or negative INTEGERs and trailing bytes
//! are all rejected.
//!
//! [X.690 §10]: https://www.itu.int/rec/T-REC-X.690
//! [RFC 5280 §4.1.2.7]: https://www.rfc-editor.org/rfc/rfc5280#section-4.1.2.7

use crate::error::ProtoError;

/// Universal tag for INTEGER.
pub(crate) const INTEGER: u8 = 0x02;
/// Universal tag for BIT STRING.
pub(crate) const BIT_STRING: u8 = 0x03;
/// Universal tag for NULL.
pub(crate) const NULL: u8 = 0x05;
/// Universal tag for OBJECT IDENTIFIER.
pub(crate) const OID: u8 = 0x06;
/// Universal constructed tag for SEQUENCE.
pub(crate) const SEQUENCE: u8 = 0x30;

/// Content octets of id-ecPublicKey, 1.2.840.10045.2.1 ([RFC 5480 §2.1.1]).
///
/// [RFC 5480 §2.1.1]: https://www.rfc-editor.org/rfc/rfc5480#section-2.1.1
pub(crate) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// Content octets of secp256r1, 1.2.840.10045.3.1.7 ([RFC 5480 §2.1.1.1]).
///
/// [RFC 5480 §2.1.1.1]: https://www.rfc-editor.org/rfc/rfc5480#section-2.1.1.1
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// Content octets of secp384r1, 1.3.132.0.34 ([RFC 5480 §2.1.1.1]).
///
/// [RFC 5480 §2.1.1.1]: https://www.rfc-editor.org/rfc/rfc5480#section-2.1.1.1
pub(crate) const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// Content octets of rsaEncryption, 1.2.840.113549.1.1.1 ([RFC 3279 §2.3.1]).
///
/// [RFC 3279 §2.3.1]: https://www.rfc-editor.org/rfc/rfc3279#section-2.3.1
pub(crate) const OID_RSA_ENCRYPTION: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// Content octets of id-Ed25519, 1.3.101.112 ([RFC 8410 §3]).
///
/// [RFC 8410 §3]: https://www.rfc-editor.org/rfc/rfc8410#section-3
pub(crate) const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

fn malformed(what: &str) -> ProtoError {
    ProtoError::Malformed(format!("invalid DER: {what}"))
}

/// A cursor over DER-encoded bytes that hands out one TLV at a time.
pub(crate) struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `input`.
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self { input }
    }

    /// Reads the next TLV and returns its contents if the tag is `tag`.
    pub(crate) fn expect(&mut self, tag: u8) -> Result<&'a [u8], ProtoError> {
        let (&actual, rest) = self
            .input
            .split_first()
            .ok_or_else(|| malformed("unexpected end of input"))?;
        if actual != tag {
            return Err(malformed("unexpected tag"));
        }
        let (&first, rest) = rest
            .split_first()
            .ok_or_else(|| malformed("missing length"))?;
        let (len, rest) = match first {
            0..=0x7f => (usize::from(first), rest),
            0x80 => return Err(malformed("indefinite length")),
            // Up to four length octets is far more than any key needs.
            0x81..=0x84 => {
                let count = usize::from(first & 0x7f);
                if rest.len() < count {
                    return Err(malformed("truncated length"));
                }
                let (octets, rest) = rest.split_at(count);
                if octets.first() == Some(&0) {
                    return Err(malformed("non-minimal length"));
                }
                let len = octets
                    .iter()
                    .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
                if len < 0x80 {
                    return Err(malformed("non-minimal length"));
                }
                (len, rest)
            }
            _ => return Err(malformed("length too large")),
        };
        if rest.len() < len {
            return Err(malformed("truncated contents"));
        }
        let (contents, rest) = rest.split_at(len);
        self.input = rest;
        Ok(contents)
    }

    /// Reads an INTEGER that must be positive and returns its magnitude
    /// without the sign octet.
    pub(crate) fn positive_integer(&mut self) -> Result<&'a [u8], ProtoError> {
        let contents = self.expect(INTEGER)?;
        match contents {
            [] => Err(malformed("empty INTEGER")),
            [first, ..] if first & 0x80 != 0 => Err(malformed("negative INTEGER")),
            [0] => Err(malformed("zero INTEGER")),
            [0, second, ..] if second & 0x80 == 0 => Err(malformed("non-minimal INTEGER")),
            [0, rest @ ..] => Ok(rest),
            _ => Ok(contents),
        }
    }

    /// Reads a BIT STRING with no unused bits and returns its octets.
    pub(crate) fn bit_string(&mut self) -> Result<&'a [u8], ProtoError> {
        match self.expect(BIT_STRING)? {
            [0, rest @ ..] => Ok(rest),
            _ => Err(malformed("BIT STRING with unused bits")),
        }
    }

    /// Fails unless every byte has been consumed.
    pub(crate) fn finish(self) -> Result<(), ProtoError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(malformed("trailing data"))
        }
    }
}

/// Appends one TLV with a definite, minimal length.
pub(crate) fn write_tlv(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let octets = len.to_be_bytes();
        // `skip` counts a prefix of `octets`, so the slice is in bounds.
        let skip = octets.iter().take_while(|&&b| b == 0).count();
        let octets = &octets[skip..];
        out.push(0x80 | octets.len() as u8);
        out.extend_from_slice(octets);
    }
    out.extend_from_slice(contents);
}

/// Returns a complete TLV as a new vector.
pub(crate) fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    write_tlv(&mut out, tag, contents);
    out
}

/// Encodes an unsigned big-endian magnitude as a non-negative INTEGER,
/// adding a 0x00 octet when the high bit is set.
pub(crate) fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    // `skip` counts a prefix of `magnitude`, so the slice is in bounds.
    let skip = magnitude.iter().take_while(|&&b| b == 0).count();
    let magnitude = &magnitude[skip..];
    let mut contents = Vec::with_capacity(magnitude.len() + 1);
    match magnitude.first() {
        None => contents.push(0),
        Some(first) if first & 0x80 != 0 => contents.push(0),
        Some(_) => {}
    }
    contents.extend_from_slice(magnitude);
    tlv(INTEGER, &contents)
}

/// Encodes octets as a BIT STRING with zero unused bits.
pub(crate) fn bit_string(octets: &[u8]) -> Vec<u8> {
    let mut contents = Vec::with_capacity(octets.len() + 1);
    contents.push(0);
    contents.extend_from_slice(octets);
    tlv(BIT_STRING, &contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_minimal() {
        assert_eq!(tlv(NULL, &[]), [0x05, 0x00]);
        assert_eq!(&tlv(OID, &[0; 0x7f])[..2], [0x06, 0x7f]);
        assert_eq!(&tlv(OID, &[0; 0x80])[..3], [0x06, 0x81, 0x80]);
        assert_eq!(&tlv(OID, &[0; 0x100])[..4], [0x06, 0x82, 0x01, 0x00]);
        for len in [0usize, 1, 0x7f, 0x80, 0xff, 0x100, 0x1234] {
            let encoded = tlv(SEQUENCE, &vec![7; len]);
            let mut r = Reader::new(&encoded);
            assert_eq!(r.expect(SEQUENCE).unwrap().len(), len);
            r.finish().unwrap();
        }
    }

    #[test]
    fn integers() {
        assert_eq!(unsigned_integer(&[]), [0x02, 0x01, 0x00]);
        assert_eq!(unsigned_integer(&[0, 0, 1]), [0x02, 0x01, 0x01]);
        assert_eq!(unsigned_integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(unsigned_integer(&[0x7f, 0xff]), [0x02, 0x02, 0x7f, 0xff]);
        let mut r = Reader::new(&[0x02, 0x02, 0x00, 0x80]);
        assert_eq!(r.positive_integer().unwrap(), [0x80]);
    }

    #[test]
    fn rejects_non_der() {
        let bad: &[&[u8]] = &[
            &[],
            &[0x30],
            &[0x30, 0x80, 0x00, 0x00],       // indefinite length
            &[0x30, 0x81, 0x01, 0x00],       // non-minimal long form
            &[0x30, 0x82, 0x00, 0x80],       // leading zero length octet
            &[0x30, 0x85, 1, 1, 1, 1, 1],    // too many length octets
            &[0x30, 0x02, 0x00],             // truncated
            &[0x30, 0x84, 0xff, 0xff, 0xff], // truncated length
            &[0x31, 0x00],                   // wrong tag
        ];
        for input in bad {
            assert!(Reader::new(input).expect(SEQUENCE).is_err(), "{input:02x?}");
        }
        for int in [
            &[0x02, 0x00][..],
            &[0x02, 0x01, 0x80],
            &[0x02, 0x02, 0x00, 0x01],
            &[0x02, 0x01, 0x00],
        ] {
            assert!(Reader::new(int).positive_integer().is_err(), "{int:02x?}");
        }
        assert!(Reader::new(&[0x03, 0x02, 0x01, 0xff]).bit_string().is_err());
        let mut r = Reader::new(&[0x05, 0x00, 0x00]);
        r.expect(NULL).unwrap();
        assert!(r.finish().is_err());
    }
}
