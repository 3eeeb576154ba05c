//! The planner: a pure function of a certificate's slots, which one is
//! served, and `now`, that says what to do next and when to look again. No
//! I/O, no clock reads, so every renewal, swap and re-key rule is tested
//! without sleeping (and by property tests below).
//!
//! Per slot it picks one [`Action`] (wait, resume, obtain, renew, re-key,
//! poll); per certificate it decides whether to [`Swap`] the served slot.
//! Whether an action may contact the CA *now* (Retry-After, budgets) is the
//! guard's decision, not the planner's.

use crate::model::{CertFacts, Health, Slot};

/// What the planner knows about one slot of a managed certificate.
#[derive(Clone, Debug, Default)]
pub struct CertView {
    /// Validity of the current certificate, unix seconds, if there is one.
    pub current: Option<(i64, i64)>,
    /// The current certificate must be replaced with a new key: revoked,
    /// key blocked, or sharing its key with the other slot.
    pub rekey: Option<String>,
    /// When the CA's ARI window or the CRL is next due for a look.
    pub next_poll: Option<i64>,
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
    /// Replace the current certificate with one on a **new** key, whatever
    /// `reuse_key` says: the old one is revoked or its key must not be used.
    Rekey {
        /// Why, for logs and `status`.
        reason: String,
    },
    /// Ask the CA's ARI endpoint and the CRL about the current certificate.
    Poll,
}

impl Action {
    /// Whether the action sends anything to the CA's order endpoints.
    pub fn orders(&self) -> bool {
        matches!(
            self,
            Action::Resume | Action::Obtain | Action::Renew { .. } | Action::Rekey { .. }
        )
    }
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
    if let Some(reason) = &view.rekey {
        return Ok(if backing_off {
            Action::Wait {
                until: view.next_attempt,
            }
        } else {
            Action::Rekey {
                reason: reason.clone(),
            }
        });
    }
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
    if let Some(poll) = view.next_poll
        && poll <= now
    {
        return Ok(Action::Poll);
    }
    let until = view.next_poll.map_or(due, |poll| due.min(poll));
    Ok(Action::Wait { until })
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

/// One slot as the planner sees it.
#[derive(Clone, Debug, Default)]
pub struct SlotInput {
    /// Its current certificate, if any.
    pub facts: Option<CertFacts>,
    /// Its lifecycle state (`rekey` is filled in by [`plan_certificate`]).
    pub view: CertView,
}

impl SlotInput {
    fn health(&self, now: i64) -> Health {
        Health::of(self.facts.as_ref(), self.view.ari.map(|a| a.end), now)
    }
}

/// Everything the planner sees of one managed certificate.
#[derive(Clone, Debug, Default)]
pub struct CertificateInput {
    /// The primary slot.
    pub primary: SlotInput,
    /// The backup slot, when a backup issuer is configured.
    pub backup: Option<SlotInput>,
    /// The slot served now.
    pub served: Option<Slot>,
    /// Serve the primary again once it is healthy (`return_to_primary`).
    pub return_to_primary: bool,
    /// The operator chose the served slot (`certkeeper swap`): no automatic
    /// return to the primary (a swap away from an unhealthy slot still happens).
    pub pinned: bool,
}

/// Change which slot is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Swap {
    /// The slot to serve.
    pub to: Slot,
    /// Why, for the event and `status`.
    pub reason: String,
}

/// What to do for one managed certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Serve another slot, first (it needs no CA and takes no time).
    pub swap: Option<Swap>,
    /// One action per configured slot.
    pub actions: Vec<(Slot, Action)>,
    /// The next time anything here is due: a wait ending, the served
    /// certificate expiring or its ARI window closing.
    pub wake: Option<i64>,
}

/// Decides the swap and the per-slot actions for one certificate.
pub fn plan_certificate(input: &CertificateInput, now: i64) -> Result<Plan, PlanError> {
    let mut slots: Vec<(Slot, SlotInput)> = vec![(Slot::Primary, input.primary.clone())];
    if let Some(b) = &input.backup {
        slots.push((Slot::Backup, b.clone()));
    }
    let primary_spki = input.primary.facts.as_ref().map(|f| f.spki_sha256.clone());
    for (slot, s) in &mut slots {
        let Some(f) = &s.facts else { continue };
        s.view.rekey = if f.revoked {
            Some("the certificate is revoked".into())
        } else if f.key_blocked {
            Some("its key is blocked (revoked or reported for keyCompromise)".into())
        } else if *slot == Slot::Backup && primary_spki.as_deref() == Some(f.spki_sha256.as_str()) {
            Some("it shares its key with the primary".into())
        } else {
            None
        };
    }
    let health = |slot: Slot| {
        slots
            .iter()
            .find(|(s, _)| *s == slot)
            .map_or(Health::Missing, |(_, s)| s.health(now))
    };
    let served = input.served.unwrap_or(Slot::Primary);
    let swap = if input.backup.is_none() {
        (served == Slot::Backup).then(|| Swap {
            to: Slot::Primary,
            reason: "no backup is configured any more".into(),
        })
    } else {
        let (mine, other) = (health(served), health(served.other()));
        if !mine.is_healthy() && other.is_healthy() {
            Some(Swap {
                to: served.other(),
                reason: format!("the {served} certificate is {mine}"),
            })
        } else if served == Slot::Backup
            && input.return_to_primary
            && !input.pinned
            && other.is_healthy()
        {
            Some(Swap {
                to: Slot::Primary,
                reason: "the primary is healthy again".into(),
            })
        } else {
            None
        }
    };
    let mut actions = Vec::new();
    let mut wake: Option<i64> = None;
    let mut soonest = |t: i64| {
        if t > now {
            wake = Some(wake.map_or(t, |w| w.min(t)));
        }
    };
    for (slot, s) in &slots {
        let action = plan(&s.view, now)?;
        if let Action::Wait { until } = action {
            soonest(until);
        }
        actions.push((*slot, action));
    }
    let serving = swap.as_ref().map_or(served, |s| s.to);
    if let Some((_, s)) = slots.iter().find(|(slot, _)| *slot == serving) {
        if let Some(f) = &s.facts {
            soonest(f.not_after);
            soonest(f.not_before);
        }
        if let Some(ari) = s.view.ari {
            soonest(ari.end);
        }
    }
    Ok(Plan {
        swap,
        actions,
        wake,
    })
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

    fn facts(spki: &str, not_after: i64, revoked: bool, blocked: bool) -> CertFacts {
        CertFacts {
            serial: format!("s-{spki}"),
            issuer: "ca".into(),
            spki_sha256: spki.into(),
            not_before: 0,
            not_after,
            revoked,
            key_blocked: blocked,
        }
    }

    fn slot(facts: Option<CertFacts>) -> SlotInput {
        SlotInput {
            view: CertView {
                current: facts.as_ref().map(|f| (f.not_before, f.not_after)),
                ..Default::default()
            },
            facts,
        }
    }

    #[test]
    fn a_revoked_primary_swaps_to_a_healthy_backup_and_is_rekeyed() {
        let input = CertificateInput {
            primary: slot(Some(facts("a", 90 * DAY, true, false))),
            backup: Some(slot(Some(facts("b", 90 * DAY, false, false)))),
            served: Some(Slot::Primary),
            return_to_primary: true,
            pinned: false,
        };
        let p = plan_certificate(&input, DAY).expect("plan");
        assert_eq!(p.swap.map(|s| s.to), Some(Slot::Backup));
        assert!(matches!(
            p.actions[0],
            (Slot::Primary, Action::Rekey { .. })
        ));
    }

    #[test]
    fn back_to_the_primary_once_healthy_unless_pinned_or_configured_to_stay() {
        let mut input = CertificateInput {
            primary: slot(Some(facts("a", 90 * DAY, false, false))),
            backup: Some(slot(Some(facts("b", 90 * DAY, false, false)))),
            served: Some(Slot::Backup),
            return_to_primary: true,
            pinned: false,
        };
        let to = |i: &CertificateInput| plan_certificate(i, DAY).expect("plan").swap.map(|s| s.to);
        assert_eq!(to(&input), Some(Slot::Primary));
        input.pinned = true;
        assert_eq!(to(&input), None);
        input.pinned = false;
        input.return_to_primary = false;
        assert_eq!(to(&input), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn any_facts() -> impl Strategy<Value = Option<CertFacts>> {
            proptest::option::of(
                (0..3usize, 1..200i64, any::<bool>(), any::<bool>()).prop_map(
                    |(key, days, revoked, blocked)| {
                        facts(["k1", "k2", "k3"][key], days * DAY, revoked, blocked)
                    },
                ),
            )
        }

        fn any_slot() -> impl Strategy<Value = SlotInput> {
            (
                any_facts(),
                any::<bool>(),
                0..4u32,
                proptest::option::of(0..200i64),
            )
                .prop_map(|(f, in_flight, failures, ari_end)| {
                    let mut s = slot(f);
                    s.view.in_flight = in_flight;
                    s.view.failures = failures;
                    s.view.next_attempt = failures as i64 * DAY;
                    s.view.ari = ari_end.map(|d| AriWindow {
                        start: d * DAY - DAY,
                        end: d * DAY,
                        chosen: d * DAY - DAY / 2,
                    });
                    s
                })
        }

        fn any_input() -> impl Strategy<Value = CertificateInput> {
            (
                any_slot(),
                proptest::option::of(any_slot()),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(|(primary, backup, on_backup, back, pinned)| {
                    CertificateInput {
                        primary,
                        backup,
                        served: Some(if on_backup {
                            Slot::Backup
                        } else {
                            Slot::Primary
                        }),
                        return_to_primary: back,
                        pinned,
                    }
                })
        }

        fn slot_of(input: &CertificateInput, s: Slot) -> Option<&SlotInput> {
            match s {
                Slot::Primary => Some(&input.primary),
                Slot::Backup => input.backup.as_ref(),
            }
        }

        fn health(input: &CertificateInput, s: Slot, now: i64) -> Health {
            slot_of(input, s).map_or(Health::Missing, |x| x.health(now))
        }

        proptest! {
            /// A revoked (or otherwise unservable) certificate is never the
            /// one served after the plan when the other slot is healthy.
            #[test]
            fn never_serves_an_unhealthy_slot_when_a_healthy_one_exists(
                input in any_input(), now_days in 0..200i64,
            ) {
                let now = now_days * DAY;
                let plan = plan_certificate(&input, now).expect("plan");
                let served = plan
                    .swap
                    .as_ref()
                    .map_or(input.served.unwrap_or(Slot::Primary), |s| s.to);
                if input.backup.is_some() {
                    let other = served.other();
                    prop_assert!(
                        health(&input, served, now).is_healthy()
                            || !health(&input, other, now).is_healthy(),
                        "serving {served:?} ({:?}) while {other:?} is healthy",
                        health(&input, served, now)
                    );
                    // Swaps only ever go to a healthy slot.
                    if let Some(swap) = &plan.swap {
                        prop_assert!(health(&input, swap.to, now).is_healthy());
                    }
                } else {
                    prop_assert_eq!(served, Slot::Primary);
                }
            }

            /// Two slots never keep the same key: when they share one, the
            /// backup is re-keyed as soon as it may act.
            #[test]
            fn slots_sharing_a_key_get_the_backup_rekeyed(
                input in any_input(), now_days in 0..200i64,
            ) {
                let now = now_days * DAY;
                let plan = plan_certificate(&input, now).expect("plan");
                let (Some(p), Some(b)) = (
                    input.primary.facts.as_ref(),
                    input.backup.as_ref().and_then(|b| b.facts.as_ref()),
                ) else {
                    return Ok(());
                };
                let backup = input.backup.as_ref().expect("backup");
                let backing_off = backup.view.failures > 0 && now < backup.view.next_attempt;
                if p.spki_sha256 == b.spki_sha256 && !backup.view.in_flight && !backing_off {
                    let action = &plan.actions.iter().find(|(s, _)| *s == Slot::Backup).expect("backup action").1;
                    prop_assert!(matches!(action, Action::Rekey { .. }), "{action:?}");
                }
            }

            /// A revoked or key-blocked slot never renews on its old key and
            /// never just waits for its renewal date.
            #[test]
            fn revoked_or_blocked_slots_are_rekeyed_not_renewed(
                input in any_input(), now_days in 0..200i64,
            ) {
                let now = now_days * DAY;
                let plan = plan_certificate(&input, now).expect("plan");
                for (s, action) in &plan.actions {
                    let x = slot_of(&input, *s).expect("slot");
                    let Some(f) = &x.facts else { continue };
                    let backing_off = x.view.failures > 0 && now < x.view.next_attempt;
                    if (f.revoked || f.key_blocked) && !x.view.in_flight && !backing_off {
                        prop_assert!(matches!(action, Action::Rekey { .. }), "{s:?}: {action:?}");
                    }
                }
            }
        }
    }
}
