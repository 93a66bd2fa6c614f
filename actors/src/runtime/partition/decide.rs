//! What a partition does about an event that failed: the decision as a pure function of the
//! facts (no actor, no clock), so that every path is a unit test. The batch loop in
//! `partition` gathers the facts, asks, and carries the decision out.

use std::time::Duration;

/// What is known when an event fails.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts {
    /// An agent error or panic (retried); otherwise the record itself is at fault.
    pub(crate) retriable: bool,
    /// Retries already made for this event.
    pub(crate) attempt: u32,
    /// The agent's `retries`.
    pub(crate) retries: u32,
    /// Exactly once: the open transaction can only abort.
    pub(crate) doomed: bool,
    /// The node may still write for its partitions (see `lease`).
    pub(crate) lease_valid: bool,
    /// The partition is being revoked.
    pub(crate) revoked: bool,
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Exactly once: stop and wait for the round's abort; a record at fault is condemned
    /// (it goes to the policy when it comes again).
    AwaitAbort { condemn: bool },
    /// The node may have lost the partition: wait for the group, not counted as a retry.
    AwaitGroup { wait: Duration },
    /// Revoked meanwhile: drop the uncommitted work, the next owner resumes.
    GiveUp,
    /// Try again after `backoff`, as retry number `attempt`.
    Retry { attempt: u32, backoff: Duration },
    /// The agent's policy (skip, dead-letter, stop) settles the record.
    Policy,
}

/// Back-off settings: the first wait, doubled per retry, and its bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) first: Duration,
    pub(crate) max: Duration,
}

/// See the module doc. The order matters: a doomed transaction or a lapsed lease is not the
/// event's fault, so neither spends a retry nor reaches the policy.
pub(crate) fn decide(f: Facts, backoff: Backoff) -> Decision {
    if f.doomed {
        return Decision::AwaitAbort {
            condemn: !f.retriable,
        };
    }
    if !f.lease_valid {
        return match f.revoked {
            true => Decision::GiveUp,
            false => Decision::AwaitGroup { wait: backoff.max },
        };
    }
    if f.retriable && f.attempt < f.retries {
        if f.revoked {
            return Decision::GiveUp;
        }
        let attempt = f.attempt + 1;
        let wait = backoff
            .first
            .saturating_mul(1 << attempt.min(16))
            .min(backoff.max);
        return Decision::Retry {
            attempt,
            backoff: wait,
        };
    }
    Decision::Policy
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_secs(10),
    };

    fn facts() -> Facts {
        Facts {
            retriable: true,
            attempt: 0,
            retries: 3,
            doomed: false,
            lease_valid: true,
            revoked: false,
        }
    }

    #[test]
    fn agent_errors_are_retried_with_doubling_back_off_then_go_to_the_policy() {
        let waits: Vec<_> = (0..3)
            .map(|attempt| decide(Facts { attempt, ..facts() }, B))
            .collect();
        let retry = |attempt, ms| Decision::Retry {
            attempt,
            backoff: Duration::from_millis(ms),
        };
        assert_eq!(waits, [retry(1, 200), retry(2, 400), retry(3, 800)]);
        assert_eq!(
            decide(
                Facts {
                    attempt: 3,
                    ..facts()
                },
                B
            ),
            Decision::Policy
        );
        let long = Facts {
            attempt: 40,
            retries: 50,
            ..facts()
        };
        assert!(matches!(decide(long, B), Decision::Retry { backoff, .. } if backoff == B.max));
    }

    #[test]
    fn a_record_at_fault_goes_to_the_policy_at_once() {
        let f = Facts {
            retriable: false,
            ..facts()
        };
        assert_eq!(decide(f, B), Decision::Policy);
    }

    #[test]
    fn a_doomed_transaction_waits_for_the_abort_and_condemns_a_record_at_fault() {
        let doomed = Facts {
            doomed: true,
            ..facts()
        };
        assert_eq!(decide(doomed, B), Decision::AwaitAbort { condemn: false });
        let at_fault = Facts {
            retriable: false,
            ..doomed
        };
        assert_eq!(decide(at_fault, B), Decision::AwaitAbort { condemn: true });
        // Retries spent or not, revoked or not: the abort comes first.
        let spent = Facts {
            attempt: 9,
            revoked: true,
            ..doomed
        };
        assert_eq!(decide(spent, B), Decision::AwaitAbort { condemn: false });
    }

    #[test]
    fn a_lapsed_lease_waits_for_the_group_without_spending_a_retry() {
        let lapsed = Facts {
            lease_valid: false,
            attempt: 3,
            ..facts()
        };
        assert_eq!(decide(lapsed, B), Decision::AwaitGroup { wait: B.max });
        let revoked = Facts {
            revoked: true,
            ..lapsed
        };
        assert_eq!(decide(revoked, B), Decision::GiveUp);
    }

    #[test]
    fn a_revoked_partition_gives_up_instead_of_retrying() {
        let f = Facts {
            revoked: true,
            ..facts()
        };
        assert_eq!(decide(f, B), Decision::GiveUp);
        // Its retries spent, the policy still settles the record (the commit before the
        // partition goes includes it).
        let spent = Facts { attempt: 3, ..f };
        assert_eq!(decide(spent, B), Decision::Policy);
    }
}
