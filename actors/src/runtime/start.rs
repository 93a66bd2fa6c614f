//! Where a partition starts, by one rule for every way it comes to a node: an assignment
//! (with or without a promoted standby's copy in the store) and the restart of an actor that
//! died. A pure function of what is known, with unit tests.
//!
//! - Exactly once: the group's committed offset, always (the store is written only after a
//!   transaction commits, so it may lag; Kafka is the truth).
//! - At least once: the store's next offset when the store is the latest (its tables reflect
//!   every changelog write) and ahead of the group, else the group's. A store ahead of the group
//!   (a crash between the store write and the offset commit) means the partition starts past
//!   the group's offset, and must commit that offset even if nothing new arrives.

/// Where a partition starts, and what the group has committed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Start {
    /// The first offset to read (`None`: the consumer's reset policy, from the beginning).
    pub(crate) at: Option<i64>,
    /// The group's committed offset (`None`: none yet). Differs from `at` when the store is
    /// ahead: the partition's first commit moves the group there.
    pub(crate) committed: Option<i64>,
}

/// The rule (see the module doc). `stored`: the store's next offset; `group`: the group's
/// committed offset; `store_latest`: the store reflects every changelog write.
pub(crate) fn start_of(
    exactly_once: bool,
    stored: Option<i64>,
    group: Option<i64>,
    store_latest: bool,
) -> Start {
    let at = match (exactly_once, stored, group) {
        (true, _, g) => g,
        (false, Some(s), Some(g)) if store_latest && s > g => Some(s),
        (false, Some(s), None) if store_latest => Some(s),
        (false, _, g) => g,
    };
    Start {
        at,
        committed: group,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_once_starts_at_the_group_offset_whatever_the_store_says() {
        assert_eq!(start_of(true, Some(90), Some(50), true).at, Some(50));
        assert_eq!(start_of(true, Some(90), None, true).at, None);
    }

    #[test]
    fn at_least_once_starts_at_a_store_ahead_of_the_group_and_commits_it() {
        let s = start_of(false, Some(90), Some(50), true);
        assert_eq!(
            s,
            Start {
                at: Some(90),
                committed: Some(50)
            }
        );
        assert_ne!(s.at, s.committed, "the first commit moves the group");
        assert_eq!(start_of(false, Some(90), None, true).at, Some(90));
    }

    #[test]
    fn a_store_behind_the_group_or_not_the_latest_yields_to_the_group() {
        assert_eq!(start_of(false, Some(40), Some(50), true).at, Some(50));
        assert_eq!(start_of(false, Some(90), Some(50), false).at, Some(50));
        assert_eq!(start_of(false, Some(90), None, false).at, None);
        assert_eq!(start_of(false, None, Some(50), true).at, Some(50));
    }
}
