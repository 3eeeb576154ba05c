//! ACME Renewal Information (RFC 9773): certificate identifiers and the
//! suggested renewal window.

use certkeeper_proto::b64;

/// A suggested renewal window, unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenewalWindow {
    /// Window start.
    pub start: i64,
    /// Window end.
    pub end: i64,
}

/// Boulder's window: centred on notAfter − validity/3 (validity/2 for
/// certificates under 10 days), ± validity/100. A revoked certificate gets a
/// window that has already begun, so clients renew at once (RFC 9773 §4.2).
pub fn renewal_window(not_before: i64, not_after: i64, revoked: bool, now: i64) -> RenewalWindow {
    if revoked {
        return RenewalWindow {
            start: now - 3600,
            end: now - 1,
        };
    }
    let validity = (not_after - not_before + 1).max(1);
    let ideal = if validity < 10 * 86400 {
        not_after - validity / 2
    } else {
        not_after - validity / 3
    };
    // RFC 9773 §4.2: end must be after start, even for very short lifetimes.
    let spread = (validity / 100).max(1);
    RenewalWindow {
        start: ideal - spread,
        end: ideal + spread,
    }
}

/// Splits an RFC 9773 §4.1 certID (`base64url(AKI keyIdentifier) "." base64url(serial)`)
/// into the key identifier and the lowercase hex serial.
pub fn parse_cert_id(cert_id: &str) -> Result<(Vec<u8>, String), String> {
    let (aki, serial) = cert_id
        .split_once('.')
        .ok_or_else(|| "certID must be base64url(keyIdentifier).base64url(serial)".to_string())?;
    let aki = b64::decode(aki).map_err(|e| format!("certID key identifier: {e}"))?;
    let serial = b64::decode(serial).map_err(|e| format!("certID serial: {e}"))?;
    if aki.is_empty() || serial.is_empty() {
        return Err("certID has an empty part".into());
    }
    // The serial is the DER INTEGER's content, sign octet and all.
    Ok((aki, certkeeper_proto::serial::serial_hex(&serial)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ninety_day_window_is_two_thirds_in() {
        let nb = 0;
        let na = 90 * 86400 - 1;
        let w = renewal_window(nb, na, false, 0);
        // ideal = notAfter - 30 days; ± 0.9 days
        let ideal = na - 30 * 86400;
        assert_eq!((w.start, w.end), (ideal - 77760, ideal + 77760));
    }

    #[test]
    fn short_lived_window_is_half_way() {
        let na = 160 * 3600 - 1;
        let w = renewal_window(0, na, false, 0);
        assert_eq!(w.start, na - 80 * 3600 - 5760);
    }

    #[test]
    fn tiny_lifetimes_still_get_a_window() {
        let w = renewal_window(0, 89, false, 0);
        assert!(w.start < w.end);
    }

    #[test]
    fn revoked_window_is_now() {
        let w = renewal_window(0, 1_000_000, true, 500);
        assert!(w.end < 500 && w.start < w.end);
    }

    #[test]
    fn cert_id_round_trip() {
        let id = format!(
            "{}.{}",
            b64::encode(&[1, 2, 3]),
            b64::encode(&[0, 0x87, 0x65])
        );
        assert_eq!(parse_cert_id(&id), Ok((vec![1, 2, 3], "8765".to_string())));
        assert!(parse_cert_id("nodot").is_err());
    }
}
