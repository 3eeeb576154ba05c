//! The planner: a pure function of one certificate's state and `now` that
//! says what to do next and when to look again. No I/O, no clock reads, so
//! every renewal rule is tested without sleeping.

/// What the planner knows about one managed certificate.
#[derive(Clone, Debug, Default)]
pub struct CertView {
    /// Validity of the current certificate, unix seconds, if there is one.
    pub current: Option<(i64, i64)>,
    /// The CA's ARI window (start, end) and the point chosen in it.
    pub ari: Option<AriWindow>,
    /// An order was created and not finished (a crash, or a failure mid-way).
    pub in_flight: bool,
    /// Consecutive failures.
    pub failures: u32,
    /// No attempt before this time (backoff), unix seconds.
    pub next_attempt: i64,
    /// The configuration changed since the current certificate was obtained.
    pub config_changed: bool,
    /// `renew_before_days`, in seconds, when configured.
    pub renew_before_secs: Option<i64>,
    /// `certkeeper renew --force`: skip backoff and renewal time.
    pub forced: bool,
}

/// A renewal window suggested by the CA (RFC 9773), with the point chosen in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AriWindow {
    /// Window start.
    pub start: i64,
    /// Window end.
    pub end: i64,
    /// The moment chosen uniformly in the window (RFC 9773 §4.2), persisted so
    /// restarts do not re-draw it.
    pub chosen: i64,
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing until `until`.
    Wait {
        /// Next time the planner should look.
        until: i64,
    },
    /// Finish the order in flight (the same order, never a new one).
    Resume,
    /// No certificate yet: order one.
    Obtain,
    /// Replace the current certificate.
    Renew {
        /// Why, for logs and `status`.
        reason: String,
        /// Send ARI `replaces` (the renewal follows the CA's window).
        replaces: bool,
    },
}

/// A configuration the planner cannot honour.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// renew_before_days is at least the certificate's lifetime: it would renew forever.
    #[error(
        "renew_before_days ({before_days:.1} days) is not shorter than the certificate lifetime ({lifetime_days:.1} days); lower it below the lifetime"
    )]
    RenewBeforeTooLong {
        /// Configured value, days.
        before_days: f64,
        /// Lifetime of the issued certificate, days.
        lifetime_days: f64,
    },
}

/// When the current certificate is due for renewal: inside the CA's ARI
/// window when offered; else `renew_before` ahead of expiry when configured;
/// else at a third of its lifetime left (half for ten days or less), the
/// rule Let's Encrypt recommends.
pub fn renewal_due(view: &CertView, not_before: i64, not_after: i64) -> Result<i64, PlanError> {
    if let Some(ari) = view.ari {
        return Ok(ari.chosen);
    }
    let lifetime = (not_after - not_before).max(1);
    if let Some(before) = view.renew_before_secs {
        if before >= lifetime {
            return Err(PlanError::RenewBeforeTooLong {
                before_days: before as f64 / 86400.0,
                lifetime_days: lifetime as f64 / 86400.0,
            });
        }
        return Ok(not_after - before);
    }
    let left = if lifetime <= 10 * 86400 {
        lifetime / 2
    } else {
        lifetime / 3
    };
    Ok(not_after - left)
}

/// Decides the next step for one certificate.
pub fn plan(view: &CertView, now: i64) -> Result<Action, PlanError> {
    let backing_off =
        view.failures > 0 && now < view.next_attempt && !view.forced && !view.config_changed;
    if view.in_flight {
        return Ok(if backing_off {
            Action::Wait {
                until: view.next_attempt,
            }
        } else {
            Action::Resume
        });
    }
    let Some((not_before, not_after)) = view.current else {
        return Ok(if backing_off {
            Action::Wait {
                until: view.next_attempt,
            }
        } else {
            Action::Obtain
        });
    };
    if view.forced {
        return Ok(Action::Renew {
            reason: "forced by the operator".into(),
            replaces: view.ari.is_some(),
        });
    }
    if view.config_changed {
        return Ok(Action::Renew {
            reason: "configuration changed".into(),
            replaces: false,
        });
    }
    if backing_off {
        return Ok(Action::Wait {
            until: view.next_attempt,
        });
    }
    let due = renewal_due(view, not_before, not_after)?;
    if now >= due {
        let reason = if view.ari.is_some() {
            "inside the CA's ARI renewal window"
        } else {
            "renewal time reached"
        };
        return Ok(Action::Renew {
            reason: reason.into(),
            replaces: view.ari.is_some(),
        });
    }
    Ok(Action::Wait { until: due })
}

/// Delay before the next attempt after `failures` consecutive failures:
/// `initial` doubling per failure, capped at `max` (cert-manager's shape).
pub fn backoff(failures: u32, initial: i64, max: i64) -> i64 {
    let doublings = failures.saturating_sub(1).min(30);
    initial.saturating_mul(1i64 << doublings).min(max)
}

/// A point in [start, end] from a uniform `fraction` in [0, 1): RFC 9773 §4.2
/// asks clients to pick uniformly so renewals spread over the window. A
/// window already past (a revoked certificate) means now.
pub fn choose_in_window(start: i64, end: i64, fraction: f64, now: i64) -> i64 {
    if end <= now {
        return now;
    }
    let start = start.max(now);
    start + ((end - start) as f64 * fraction.clamp(0.0, 1.0)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86400;

    fn issued(lifetime_days: i64) -> CertView {
        CertView {
            current: Some((0, lifetime_days * DAY)),
            ..Default::default()
        }
    }

    #[test]
    fn ninety_day_certificates_renew_with_a_third_left() {
        let v = issued(90);
        assert_eq!(plan(&v, 59 * DAY), Ok(Action::Wait { until: 60 * DAY }));
        assert!(matches!(
            plan(&v, 60 * DAY),
            Ok(Action::Renew {
                replaces: false,
                ..
            })
        ));
    }

    #[test]
    fn short_lived_certificates_renew_at_half() {
        let v = CertView {
            current: Some((0, 160 * 3600)),
            ..Default::default()
        };
        assert_eq!(plan(&v, 0), Ok(Action::Wait { until: 80 * 3600 }));
    }

    #[test]
    fn ari_window_wins_and_sends_replaces() {
        let v = CertView {
            ari: Some(AriWindow {
                start: 10 * DAY,
                end: 11 * DAY,
                chosen: 10 * DAY + 5,
            }),
            ..issued(90)
        };
        assert_eq!(
            plan(&v, 10 * DAY),
            Ok(Action::Wait {
                until: 10 * DAY + 5
            })
        );
        assert!(matches!(
            plan(&v, 10 * DAY + 5),
            Ok(Action::Renew { replaces: true, .. })
        ));
    }

    #[test]
    fn renew_before_at_least_the_lifetime_is_an_error() {
        let v = CertView {
            renew_before_secs: Some(90 * DAY),
            ..issued(90)
        };
        assert!(matches!(
            plan(&v, 0),
            Err(PlanError::RenewBeforeTooLong { .. })
        ));
        let v = CertView {
            renew_before_secs: Some(30 * DAY),
            ..issued(90)
        };
        assert_eq!(plan(&v, 0), Ok(Action::Wait { until: 60 * DAY }));
    }

    #[test]
    fn backoff_holds_unless_forced_or_reconfigured() {
        let failing = CertView {
            failures: 3,
            next_attempt: 500,
            ..Default::default()
        };
        assert_eq!(plan(&failing, 100), Ok(Action::Wait { until: 500 }));
        assert_eq!(plan(&failing, 500), Ok(Action::Obtain));
        let forced = CertView {
            forced: true,
            ..failing.clone()
        };
        assert_eq!(plan(&forced, 100), Ok(Action::Obtain));
        let changed = CertView {
            config_changed: true,
            ..failing
        };
        assert_eq!(plan(&changed, 100), Ok(Action::Obtain));
    }

    #[test]
    fn an_order_in_flight_is_resumed_not_replaced() {
        let v = CertView {
            in_flight: true,
            ..issued(90)
        };
        assert_eq!(plan(&v, 0), Ok(Action::Resume));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1, 300, 86400), 300);
        assert_eq!(backoff(2, 300, 86400), 600);
        assert_eq!(backoff(20, 300, 86400), 86400);
    }

    #[test]
    fn window_choice_is_inside_or_now() {
        assert_eq!(choose_in_window(100, 200, 0.5, 0), 150);
        assert_eq!(choose_in_window(100, 200, 0.5, 500), 500);
        assert_eq!(choose_in_window(100, 200, 0.0, 150), 150);
    }
}
