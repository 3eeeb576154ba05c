//! ARI (RFC 9773) polling: the CA's suggested renewal window for a slot's
//! certificate. A window that has already ended means "replace now", which
//! is how CAs (ours included) flag a certificate they revoked or are about
//! to revoke.

use certkeeper_store::SlotRow;
use rustls_pki_types::CertificateDer;

use crate::issuer::acme::AcmeIssuer;
use crate::planner;

/// RFC 9773 §4.3: honour the CA's Retry-After, within these bounds.
const MIN_POLL_SECONDS: i64 = 1;
/// A day: a CA that sends a longer Retry-After is still asked daily.
const MAX_POLL_SECONDS: i64 = 86_400;
/// After a failed poll, ask again in an hour.
const RETRY_FAILED_SECONDS: i64 = 3_600;

/// Asks the CA for `leaf`'s window and records it in `slot` (the chosen
/// moment is re-drawn only when the window moves). `fraction` is the
/// uniform draw in [0, 1) for the chosen moment. Returns whether the window
/// says "replace now".
pub async fn poll(
    issuer: &AcmeIssuer,
    leaf: &CertificateDer<'_>,
    slot: &mut SlotRow,
    now: i64,
    fraction: f64,
) -> bool {
    match issuer.renewal_window(leaf).await {
        Ok(Some((start, end, retry_after))) => {
            let (start, end) = (start.unix_timestamp(), end.unix_timestamp());
            if slot.ari_start != Some(start) || slot.ari_end != Some(end) {
                slot.ari_chosen = Some(planner::choose_in_window(start, end, fraction, now));
            }
            slot.ari_start = Some(start);
            slot.ari_end = Some(end);
            let wait = i64::try_from(retry_after.as_secs())
                .unwrap_or(MAX_POLL_SECONDS)
                .clamp(MIN_POLL_SECONDS, MAX_POLL_SECONDS);
            slot.ari_next_poll = Some(now.saturating_add(wait));
            end <= now
        }
        // The CA offers no ARI: ask again in a day, in case it starts to.
        Ok(None) => {
            slot.ari_next_poll = Some(now + MAX_POLL_SECONDS);
            false
        }
        Err(e) => {
            tracing::warn!(certificate = %slot.name, slot = %slot.slot, error = %e, "ARI poll failed");
            slot.ari_next_poll = Some(now + RETRY_FAILED_SECONDS);
            false
        }
    }
}
