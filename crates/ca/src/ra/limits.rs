//! Rate limits, as Boulder's `ratelimits` package does them: each limit is a
//! family of buckets (`Name:key`), each bucket one GCRA theoretical arrival
//! time (TAT) in the store. Defaults come from the policy's `[limits]`,
//! per-key overrides from the store (`certkeeper ca limits --set`).
//!
//! GCRA (`ratelimits/gcra.go`): a limit of `count` per `period` emits one unit
//! every `period / count` (the emission interval); a bucket holds `burst`
//! units. A spend of cost `c` moves the TAT to `max(tat, now) + c·interval`
//! and is allowed while that new TAT is at most `now + burst·interval`.

use certkeeper_proto::Identifier;

use super::Ra;
use crate::CaError;
use crate::policy::LimitConfig;
use certkeeper_store::{BucketState, Guarded, LimitBucket};

/// Milliseconds per second: TATs are stored in milliseconds.
const MS: i64 = 1000;

/// The limits certkeeper enforces, by Boulder's names (`ratelimits/names.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LimitName {
    /// New accounts per client IP address, spent at newAccount.
    NewRegistrationsPerIPAddress,
    /// New orders per account, spent at newOrder.
    NewOrdersPerAccount,
    /// Failed validations per identifier per account: spent when a
    /// validation fails, checked at newOrder.
    FailedAuthorizationsPerDomainPerAccount,
    /// Certificates per registered domain: checked at newOrder, spent at finalize.
    CertificatesPerDomain,
    /// Certificates per exact identifier set: checked at newOrder, spent at finalize.
    CertificatesPerFQDNSet,
}

impl LimitName {
    /// Every limit, in Boulder's order.
    pub const ALL: [LimitName; 5] = [
        LimitName::NewRegistrationsPerIPAddress,
        LimitName::NewOrdersPerAccount,
        LimitName::FailedAuthorizationsPerDomainPerAccount,
        LimitName::CertificatesPerDomain,
        LimitName::CertificatesPerFQDNSet,
    ];

    /// The name as written in the policy, in overrides and bucket ids.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitName::NewRegistrationsPerIPAddress => "NewRegistrationsPerIPAddress",
            LimitName::NewOrdersPerAccount => "NewOrdersPerAccount",
            LimitName::FailedAuthorizationsPerDomainPerAccount => {
                "FailedAuthorizationsPerDomainPerAccount"
            }
            LimitName::CertificatesPerDomain => "CertificatesPerDomain",
            LimitName::CertificatesPerFQDNSet => "CertificatesPerFQDNSet",
        }
    }

    /// Parses a limit name (exact spelling).
    pub fn parse(s: &str) -> Option<LimitName> {
        LimitName::ALL.into_iter().find(|n| n.as_str() == s)
    }

    /// The policy's default for this limit.
    pub fn default_in(self, limits: &crate::policy::Limits) -> LimitConfig {
        match self {
            LimitName::NewRegistrationsPerIPAddress => limits.new_registrations_per_ip_address,
            LimitName::NewOrdersPerAccount => limits.new_orders_per_account,
            LimitName::FailedAuthorizationsPerDomainPerAccount => {
                limits.failed_authorizations_per_domain_per_account
            }
            LimitName::CertificatesPerDomain => limits.certificates_per_domain,
            LimitName::CertificatesPerFQDNSet => limits.certificates_per_fqdn_set,
        }
    }

    /// The denial text, worded like Let's Encrypt's so its documentation applies.
    fn denial(self, key: &str, count: u64, window: &str, retry: &str) -> String {
        let (what, anchor) = match self {
            LimitName::NewRegistrationsPerIPAddress => (
                format!("too many new registrations ({count}) from this IP address"),
                "new-registrations-per-ip-address",
            ),
            LimitName::NewOrdersPerAccount => (
                format!("too many new orders ({count}) from this account"),
                "new-orders-per-account",
            ),
            LimitName::FailedAuthorizationsPerDomainPerAccount => (
                format!(
                    "too many failed authorizations ({count}) for {:?}",
                    key.split_once(':').map_or(key, |(_, ident)| ident)
                ),
                "authorization-failures-per-identifier-per-account",
            ),
            LimitName::CertificatesPerDomain => (
                format!("too many certificates ({count}) already issued for {key:?}"),
                "new-certificates-per-registered-domain",
            ),
            LimitName::CertificatesPerFQDNSet => (
                format!(
                    "too many certificates ({count}) already issued for this exact set of identifiers"
                ),
                "new-certificates-per-exact-set-of-identifiers",
            ),
        };
        format!(
            "{what} in the last {window}, retry after {retry}: see https://letsencrypt.org/docs/rate-limits/#{anchor}"
        )
    }
}

/// A limit in force for one bucket, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Units per period (for messages).
    pub count: u64,
    /// Period, milliseconds.
    pub period_ms: i64,
    /// Bucket capacity.
    pub burst: u64,
}

impl Limit {
    /// From the policy's (or an override's) numbers.
    pub fn from_config(c: &LimitConfig) -> Limit {
        Limit {
            count: c.count.max(1),
            period_ms: (c.period_seconds as i64).saturating_mul(MS),
            burst: c.burst().max(1),
        }
    }

    /// Time between two units: period / count (Boulder's `emissionInterval`).
    pub fn emission_interval(&self) -> i64 {
        (self.period_ms / self.count as i64).max(1)
    }

    /// How far ahead of now the TAT may run: burst · interval (`burstOffset`).
    pub fn burst_offset(&self) -> i64 {
        self.emission_interval().saturating_mul(self.burst as i64)
    }
}

/// The outcome of a GCRA spend (Boulder's `Decision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the spend fits.
    pub allowed: bool,
    /// Units left after it (0 when denied).
    pub remaining: u64,
    /// Milliseconds until the spend would fit (0 when allowed).
    pub retry_in_ms: i64,
    /// The TAT to store: unchanged when denied.
    pub new_tat: i64,
}

/// GCRA spend of `cost` units at `now` (ms) against a stored TAT; a bucket
/// never spent from (`None`) is full. Port of Boulder's `maybeSpend`.
pub fn maybe_spend(limit: &Limit, stored_tat: Option<i64>, now: i64, cost: u64) -> Decision {
    let stored = stored_tat.unwrap_or(now);
    // A TAT in the past means a full bucket: start from now.
    let tat = stored.max(now);
    let interval = limit.emission_interval();
    let new_tat = tat + interval.saturating_mul(cost as i64);
    let difference = now - (new_tat - limit.burst_offset());
    if difference < 0 {
        return Decision {
            allowed: false,
            remaining: 0,
            retry_in_ms: -difference,
            new_tat: stored,
        };
    }
    Decision {
        allowed: true,
        remaining: (difference / interval) as u64,
        retry_in_ms: 0,
        new_tat,
    }
}

/// GCRA refund of `cost` units: the TAT moves back, never below now
/// (Boulder's `maybeRefund`). `None` when there is nothing to refund.
pub fn maybe_refund(limit: &Limit, stored_tat: Option<i64>, now: i64, cost: u64) -> Option<i64> {
    let tat = stored_tat?;
    if tat <= now {
        return None;
    }
    Some((tat - limit.emission_interval().saturating_mul(cost as i64)).max(now))
}

/// What a transaction does with its bucket (Boulder's check/spend flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// May deny; never writes.
    Check,
    /// May deny; writes when allowed.
    CheckAndSpend,
    /// Never denies; writes when the bucket has room (counting, not gating).
    SpendOnly,
}

/// One bucket touched by a request.
#[derive(Clone, Debug)]
pub struct Txn {
    /// Which limit.
    pub name: LimitName,
    /// Bucket key within it.
    pub key: String,
    /// What to do.
    pub mode: Mode,
}

impl Txn {
    /// A transaction on `name`'s bucket `key`.
    pub fn new(name: LimitName, key: impl Into<String>, mode: Mode) -> Txn {
        Txn {
            name,
            key: key.into(),
            mode,
        }
    }

    fn bucket(&self) -> LimitBucket<'_> {
        LimitBucket {
            limit_name: self.name.as_str(),
            bucket_key: &self.key,
        }
    }
}

/// The bucket key of an identifier for `CertificatesPerDomain`: its
/// registered domain by the Public Suffix List (the last two labels when the
/// list knows no suffix, as for `example.test`); an IPv4 address as is; an
/// IPv6 address by its /64, the smallest block one subscriber usually holds.
pub fn registered_domain(ident: &Identifier) -> String {
    certkeeper_proto::identifier::registered_domain(&ident.value)
}

/// The bucket key for `CertificatesPerFQDNSet`: identifier values lowercased,
/// sorted, deduplicated and comma-joined.
pub fn fqdn_set_key(idents: &[Identifier]) -> String {
    let values: Vec<&str> = idents.iter().map(|i| i.value.as_str()).collect();
    certkeeper_proto::identifier::identifier_set(&values)
}

/// Go's `time.Duration` formatting, which Let's Encrypt's messages use: `168h0m0s`.
pub fn go_duration(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// Unix seconds as `2006-01-02 15:04:05 UTC`.
fn utc(secs: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(fmt).ok())
        .map_or_else(|| secs.to_string(), |s| format!("{s} UTC"))
}

impl Ra {
    /// The limit in force for a transaction's bucket: the operator's
    /// override, else the policy. Overrides are read with the bucket's TAT
    /// (one statement) and not cached, because `certkeeper ca limits --set`
    /// writes them from another process and they apply at once.
    fn limit_of(&self, txn: &Txn, state: &BucketState) -> Limit {
        match &state.limit_override {
            Some(o) => Limit {
                count: o.count.max(1) as u64,
                period_ms: o.period_seconds.saturating_mul(MS),
                burst: o.burst.max(1) as u64,
            },
            None => Limit::from_config(&txn.name.default_in(&self.policy.limits)),
        }
    }

    /// Applies a batch of transactions atomically at `now` (seconds): if any
    /// checking transaction is denied, nothing is written and the denial that
    /// lifts LAST is returned (Boulder's `BatchSpend` merges decisions the
    /// same way); otherwise every spending transaction is written, together
    /// with the `guarded` write in the same commit. Returns false when the
    /// guarded write lost a compare-and-set (nothing was written then).
    pub(crate) async fn limits_spend(
        &self,
        txns: &[Txn],
        guarded: Option<Guarded<'_>>,
    ) -> Result<bool, CaError> {
        let now_s = self.now();
        let now = now_s.saturating_mul(MS);
        let buckets: Vec<LimitBucket> = txns.iter().map(Txn::bucket).collect();
        // The denial that lifts last, with the limit it was decided under.
        let decide = |states: &[BucketState]| {
            let mut writes = Vec::new();
            let mut worst: Option<(usize, Decision, Limit)> = None;
            for (i, (t, state)) in txns.iter().zip(states).enumerate() {
                let limit = self.limit_of(t, state);
                let d = maybe_spend(&limit, state.tat, now, 1);
                if !d.allowed {
                    if t.mode != Mode::SpendOnly
                        && worst
                            .as_ref()
                            .is_none_or(|(_, w, _)| d.retry_in_ms > w.retry_in_ms)
                    {
                        worst = Some((i, d, limit));
                    }
                    continue;
                }
                if t.mode != Mode::Check {
                    writes.push((i, d.new_tat));
                }
            }
            let proceed = worst.is_none();
            (writes, worst, proceed)
        };
        // A pure check (no spend, nothing guarded) writes nothing, so it
        // needs no transaction on the single writer: read from the pool and
        // leave the writer to requests that commit.
        let check_only = guarded.is_none() && txns.iter().all(|t| t.mode == Mode::Check);
        let (denied, applied) = if check_only {
            let states = self.store.limit_states(&buckets).await?;
            (decide(&states).1, true)
        } else {
            self.store.limit_update(&buckets, decide, guarded).await?
        };
        let Some((i, d, l)) = denied else {
            return Ok(applied);
        };
        let t = &txns[i];
        let retry_after_secs = (d.retry_in_ms + MS - 1) / MS;
        let detail = t.name.denial(
            &t.key,
            l.burst,
            &go_duration(l.period_ms / MS),
            &utc(now_s + retry_after_secs),
        );
        tracing::info!(limit = t.name.as_str(), key = %t.key, retry_after_secs, "rate limited");
        metrics::counter!("certkeeper_ca_rate_limit_denials_total", "limit" => t.name.as_str())
            .increment(1);
        Err(CaError::RateLimited {
            detail,
            retry_after_secs: retry_after_secs.max(1) as u64,
        })
    }

    /// Gives back one unit to each bucket (after a spend whose operation then
    /// failed), atomically; errors are logged, as a lost refund only errs
    /// on the strict side.
    pub(crate) async fn limits_refund(&self, txns: &[Txn]) {
        let now = self.now().saturating_mul(MS);
        let buckets: Vec<LimitBucket> = txns.iter().map(Txn::bucket).collect();
        let r = self
            .store
            .limit_update(
                &buckets,
                |states| {
                    let writes = txns
                        .iter()
                        .zip(states)
                        .enumerate()
                        .filter_map(|(i, (t, state))| {
                            maybe_refund(&self.limit_of(t, state), state.tat, now, 1)
                                .map(|tat| (i, tat))
                        })
                        .collect();
                    (writes, (), true)
                },
                None,
            )
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "cannot refund rate limits");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 5 per 7 days, burst 5: Let's Encrypt's CertificatesPerFQDNSet.
    const WEEK_MS: i64 = 7 * 24 * 3600 * MS;

    fn five_per_week() -> Limit {
        Limit {
            count: 5,
            period_ms: WEEK_MS,
            burst: 5,
        }
    }

    #[test]
    fn emission_interval_and_burst_offset() {
        let l = five_per_week();
        assert_eq!(l.emission_interval(), WEEK_MS / 5);
        assert_eq!(l.burst_offset(), WEEK_MS);
    }

    #[test]
    fn a_full_bucket_allows_burst_then_denies_until_one_interval() {
        let l = five_per_week();
        let now = 1_000_000;
        let mut tat = None;
        for expect_remaining in (0..5).rev() {
            let d = maybe_spend(&l, tat, now, 1);
            assert!(d.allowed);
            assert_eq!(d.remaining, expect_remaining);
            tat = Some(d.new_tat);
        }
        assert_eq!(tat, Some(now + WEEK_MS));
        let d = maybe_spend(&l, tat, now, 1);
        assert!(!d.allowed);
        assert_eq!(d.new_tat, now + WEEK_MS, "a denial leaves the TAT alone");
        // One unit comes back one emission interval later, not a week later.
        assert_eq!(d.retry_in_ms, l.emission_interval());
        let d = maybe_spend(&l, tat, now + l.emission_interval() - 1, 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_in_ms, 1);
        let d = maybe_spend(&l, tat, now + l.emission_interval(), 1);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn burst_can_differ_from_count() {
        // 10 per hour with burst 2: two at once, then one every six minutes.
        let l = Limit {
            count: 10,
            period_ms: 3600 * MS,
            burst: 2,
        };
        let now = 0;
        let a = maybe_spend(&l, None, now, 1);
        let b = maybe_spend(&l, Some(a.new_tat), now, 1);
        let c = maybe_spend(&l, Some(b.new_tat), now, 1);
        assert!(a.allowed && b.allowed && !c.allowed);
        assert_eq!(c.retry_in_ms, 360 * MS);
    }

    #[test]
    fn an_old_tat_counts_as_a_full_bucket() {
        let l = five_per_week();
        let d = maybe_spend(&l, Some(5), 10 * WEEK_MS, 1);
        assert!(d.allowed);
        assert_eq!(d.remaining, 4);
        assert_eq!(d.new_tat, 10 * WEEK_MS + l.emission_interval());
    }

    #[test]
    fn refund_moves_back_one_interval_but_not_below_now() {
        let l = five_per_week();
        let i = l.emission_interval();
        assert_eq!(
            maybe_refund(&l, Some(1000 + 3 * i), 1000, 1),
            Some(1000 + 2 * i)
        );
        assert_eq!(maybe_refund(&l, Some(1000 + i / 2), 1000, 1), Some(1000));
        assert_eq!(maybe_refund(&l, Some(900), 1000, 1), None);
        assert_eq!(maybe_refund(&l, None, 1000, 1), None);
        // Spend then refund leaves the bucket as it was.
        let d = maybe_spend(&l, Some(1000 + i), 1000, 1);
        assert_eq!(maybe_refund(&l, Some(d.new_tat), 1000, 1), Some(1000 + i));
    }

    #[test]
    fn bucket_keys() {
        let dns = |v: &str| Identifier::dns(v);
        assert_eq!(registered_domain(&dns("a.b.example.com")), "example.com");
        assert_eq!(
            registered_domain(&dns("www.example.co.uk")),
            "example.co.uk"
        );
        assert_eq!(registered_domain(&dns("*.x.example.test")), "example.test");
        assert_eq!(registered_domain(&dns("example.test")), "example.test");
        let ip = |v: &str| Identifier {
            id_type: certkeeper_proto::IdentifierType::Ip,
            value: v.into(),
        };
        assert_eq!(registered_domain(&ip("192.0.2.7")), "192.0.2.7");
        assert_eq!(
            registered_domain(&ip("2001:db8:1:2:3:4:5:6")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            fqdn_set_key(&[
                dns("B.example.test"),
                dns("a.example.test"),
                dns("b.example.test")
            ]),
            "a.example.test,b.example.test"
        );
        assert_eq!(go_duration(604800), "168h0m0s");
        assert_eq!(go_duration(90), "1m30s");
        assert_eq!(utc(1795514400), "2026-11-24 10:00:00 UTC");
    }

    #[test]
    fn denial_is_worded_like_lets_encrypt() {
        let msg = LimitName::CertificatesPerFQDNSet.denial(
            "a.test",
            5,
            "168h0m0s",
            "2026-11-24 10:00:00 UTC",
        );
        assert_eq!(
            msg,
            "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2026-11-24 10:00:00 UTC: see https://letsencrypt.org/docs/rate-limits/#new-certificates-per-exact-set-of-identifiers"
        );
    }
}
