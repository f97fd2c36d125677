//! The fair share: how many sources this node should claim or hand over, given what
//! every live node holds. Pure arithmetic, so every rule is tested without a database.
//!
//! With S sources and K live nodes each node holds at most ⌈S/K⌉ (the cap) and, once
//! the sources are spread, at least ⌊S/K⌋ (the floor). Two rules get there:
//! - a node above the cap hands the extra over (a node joined, so the cap fell);
//! - when a live node is below the floor and no source is free, the richest node (most
//!   leases, ties broken by the smallest name, so exactly one node acts) hands one
//!   over, and nodes at or above the floor stop claiming until the poor node caught
//!   up. Six sources on three nodes then a fourth joins: 2,2,2,0 → 1,2,2,1 in one move.

/// What the database says about the live nodes, as seen by one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Census {
    /// How many sources this node's configuration shares out.
    pub sources: usize,
    /// Every live node other than this one, with the unexpired leases it holds.
    pub others: Vec<(String, usize)>,
    /// Sources nobody holds: released, expired, or never claimed.
    pub free: usize,
}

/// What this node does in this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Free sources to claim now (at most).
    pub claim: usize,
    /// Held sources to hand over now, on top of those already being handed over.
    pub hand_over: usize,
    /// Live nodes, this one included.
    pub live: usize,
    /// ⌈S/K⌉: the most a node holds.
    pub cap: usize,
}

/// Decides for node `me`, which holds `mine` leases, `handing` of them already on
/// their way to another node.
pub fn plan(me: &str, mine: usize, handing: usize, c: &Census) -> Plan {
    let live = c.others.len() + 1;
    let floor = c.sources / live;
    let cap = c.sources.div_ceil(live);
    let poor = c.others.iter().any(|(_, n)| *n < floor);
    let richest = c
        .others
        .iter()
        .all(|(name, n)| mine > *n || (mine == *n && me < name.as_str()));
    let mut over = mine.saturating_sub(cap);
    if poor && c.free == 0 && mine > floor && richest {
        over = over.max(1);
    }
    let hand_over = over.saturating_sub(handing);
    let limit = if poor && mine >= floor { floor } else { cap };
    let claim = if handing > 0 || over > 0 {
        0
    } else {
        limit.saturating_sub(mine).min(c.free)
    };
    Plan {
        claim,
        hand_over,
        live,
        cap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn census(sources: usize, others: &[(&str, usize)], free: usize) -> Census {
        Census {
            sources,
            others: others.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
            free,
        }
    }

    /// Runs ticks of every node in name order until nothing changes; returns holdings.
    fn settle(sources: usize, mut held: Vec<(&str, usize)>) -> Vec<usize> {
        for _ in 0..50 {
            let mut changed = false;
            for i in 0..held.len() {
                let total: usize = held.iter().map(|(_, n)| n).sum();
                let others: Vec<(&str, usize)> = held
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, h)| *h)
                    .collect();
                let p = plan(
                    held[i].0,
                    held[i].1,
                    0,
                    &census(sources, &others, sources - total),
                );
                if p.hand_over > 0 || p.claim > 0 {
                    changed = true;
                }
                held[i].1 = held[i].1 - p.hand_over + p.claim;
            }
            if !changed {
                break;
            }
        }
        held.iter().map(|(_, n)| *n).collect()
    }

    #[test]
    fn three_nodes_share_six_sources_two_each() {
        assert_eq!(settle(6, vec![("a", 0), ("b", 0), ("c", 0)]), [2, 2, 2]);
    }

    #[test]
    fn a_joining_node_gets_a_share_of_six_from_three() {
        let after = settle(6, vec![("a", 2), ("b", 2), ("c", 2), ("d", 0)]);
        assert_eq!(after.iter().sum::<usize>(), 6);
        assert!(after.iter().all(|n| (1..=2).contains(n)), "{after:?}");
        // Exactly one source moved.
        assert_eq!(after.iter().filter(|n| **n == 1).count(), 2, "{after:?}");
    }

    #[test]
    fn a_node_above_the_cap_hands_the_extra_over() {
        let p = plan("a", 3, 0, &census(6, &[("b", 3), ("c", 0)], 0));
        assert_eq!(p.cap, 2);
        assert_eq!(p.hand_over, 1);
        assert_eq!(p.claim, 0);
        // Already handing one over: nothing more.
        let p = plan("a", 3, 1, &census(6, &[("b", 3), ("c", 0)], 0));
        assert_eq!(p.hand_over, 0);
    }

    #[test]
    fn survivors_take_a_dead_nodes_sources() {
        // c died: its two sources are free, two nodes live.
        let p = plan("a", 2, 0, &census(6, &[("b", 2)], 2));
        assert_eq!((p.cap, p.claim), (3, 1));
    }

    #[test]
    fn only_the_richest_node_gives_to_a_poor_one() {
        // 7 sources, 3 nodes: floor 2, cap 3. a and b hold 3 each, c holds 1.
        let a = plan("a", 3, 0, &census(7, &[("b", 3), ("c", 1)], 0));
        let b = plan("b", 3, 0, &census(7, &[("a", 3), ("c", 1)], 0));
        assert_eq!((a.hand_over, b.hand_over), (1, 0));
        // Meanwhile nobody at the floor claims what a releases; c does.
        let a_after = plan("a", 2, 0, &census(7, &[("b", 3), ("c", 1)], 1));
        let c = plan("c", 1, 0, &census(7, &[("a", 2), ("b", 3)], 1));
        assert_eq!((a_after.claim, c.claim), (0, 1));
        assert_eq!(settle(7, vec![("a", 3), ("b", 3), ("c", 1)]), [2, 3, 2]);
    }

    #[test]
    fn more_nodes_than_sources_leaves_standbys() {
        assert_eq!(settle(2, vec![("a", 0), ("b", 0), ("c", 0)]), [1, 1, 0]);
    }

    #[test]
    fn a_lone_node_takes_everything() {
        let p = plan("a", 0, 0, &census(5, &[], 5));
        assert_eq!((p.live, p.cap, p.claim), (1, 5, 5));
    }
}
