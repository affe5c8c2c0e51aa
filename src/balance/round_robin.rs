//! Smooth weighted round robin.
//!
//! Equal weights need no table: the n-th request goes to endpoint n mod N. Unequal weights get
//! a schedule built once, when the table is published: earliest-deadline-first with each
//! endpoint's turns spaced 1/weight apart and offset by half a period (as Envoy does), so that
//! weights interleave (`a a b a c a a` for 5:1:1) instead of bursting (`a a a a a b c`). A pick
//! is then one atomic increment and one index.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Balancer, Member, PickContext};

/// The longest schedule kept; larger weight sums are scaled down to fit.
const MAX_SCHEDULE: u64 = 1 << 16;

#[derive(Debug)]
pub struct RoundRobin {
    /// `None` when all weights are equal.
    schedule: Option<Box<[u32]>>,
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new(members: &[Member]) -> Self {
        let weights: Vec<u64> = members.iter().map(|m| u64::from(m.weight.max(1))).collect();
        let uniform = weights.windows(2).all(|w| w[0] == w[1]);
        Self {
            schedule: (!uniform).then(|| schedule(&weights)),
            next: AtomicUsize::new(0),
        }
    }
}

impl RoundRobin {
    fn next_turn(&self, members: usize) -> usize {
        // Relaxed is enough: the counter only has to hand out distinct tickets.
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        match &self.schedule {
            None => ticket % members,
            Some(schedule) => schedule[ticket % schedule.len()] as usize,
        }
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, members: &[Member], ctx: &mut PickContext<'_>) -> Option<usize> {
        if members.is_empty() {
            return None;
        }
        // A joining endpoint (slow start) keeps its turn only with probability ramp; otherwise
        // the turn passes on. A few tries bound the cost when everything is ramping.
        let mut index = 0;
        for _ in 0..4 {
            index = self.next_turn(members.len());
            let ramp = ctx.ramp(&members[index]);
            if ramp >= 1.0 || ctx.rng.f64() < ramp {
                break;
            }
        }
        Some(index)
    }
}

/// One endpoint's next turn in the EDF schedule: its deadline is (2·turns + 1) / (2·weight).
#[derive(PartialEq, Eq)]
struct Turn {
    turns: u64,
    weight: u64,
    index: u32,
}

impl Ord for Turn {
    /// Earliest deadline first (BinaryHeap is a max-heap, so the order is reversed); ties go to
    /// the heavier endpoint, then the lower index, so the schedule is deterministic.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        let mine = (2 * self.turns + 1) * other.weight;
        let theirs = (2 * other.turns + 1) * self.weight;
        theirs
            .cmp(&mine)
            .then(self.weight.cmp(&other.weight))
            .then(other.index.cmp(&self.index))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

fn schedule(weights: &[u64]) -> Box<[u32]> {
    let gcd = weights.iter().copied().fold(0, gcd);
    let mut weights: Vec<u64> = weights.iter().map(|w| w / gcd.max(1)).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE {
        // Keep proportions as well as a bounded schedule allows; every endpoint keeps a turn.
        weights
            .iter_mut()
            .for_each(|w| *w = (*w * MAX_SCHEDULE / total).max(1));
    }
    let length: u64 = weights.iter().sum();
    let mut heap: BinaryHeap<Turn> = weights
        .iter()
        .enumerate()
        .map(|(index, &weight)| Turn {
            turns: 0,
            weight,
            index: index as u32,
        })
        .collect();
    let mut out = Vec::with_capacity(length as usize);
    for _ in 0..length {
        let Some(mut turn) = heap.pop() else { break };
        out.push(turn.index);
        turn.turns += 1;
        heap.push(turn);
    }
    out.into_boxed_slice()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_shares, distribution, members};
    use super::*;

    #[test]
    fn equal_weights_take_turns() {
        let m = members(&[1, 1, 1]);
        let rr = RoundRobin::new(&m);
        assert_eq!(distribution(&rr, &m, 300), [100, 100, 100]);
    }

    #[test]
    fn weights_interleave_instead_of_bursting() {
        assert_eq!(&*schedule(&[5, 1, 1]), [0, 0, 0, 1, 2, 0, 0]);
        let long = schedule(&[3, 2]);
        assert_eq!(&*long, [0, 1, 0, 1, 0]);
        // No endpoint waits more than one slot past its fair spacing (total / weight).
        let weights = [10u64, 3, 1];
        let s = schedule(&weights);
        for (index, &weight) in weights.iter().enumerate() {
            let positions: Vec<usize> = s
                .iter()
                .enumerate()
                .filter(|(_, &i)| i as usize == index)
                .map(|(p, _)| p)
                .collect();
            assert_eq!(positions.len() as u64, weight);
            let max_gap = positions.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            assert!(
                max_gap as u64 <= 14u64.div_ceil(weight) + 1,
                "endpoint {index}: gap {max_gap} in {s:?}"
            );
        }
    }

    #[test]
    fn weighted_shares_are_exact_over_a_schedule() {
        let weights = [7, 2, 1, 10];
        let m = members(&weights);
        let rr = RoundRobin::new(&m);
        assert_shares(&distribution(&rr, &m, 100_000), &weights, 0.0001);
    }

    #[test]
    fn huge_weight_sums_are_scaled_into_a_bounded_schedule() {
        let weights: Vec<u32> = (0..1000).map(|i| 1000 - i % 7).collect();
        let s = schedule(&weights.iter().map(|&w| u64::from(w)).collect::<Vec<_>>());
        assert!(s.len() as u64 <= MAX_SCHEDULE + 1000);
        let m = members(&weights);
        assert_shares(
            &distribution(&RoundRobin::new(&m), &m, 200_000),
            &weights,
            0.001,
        );
    }
}
