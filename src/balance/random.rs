//! Weighted random: each endpoint with probability weight / total weight.

use super::{Balancer, Member, PickContext};

#[derive(Debug)]
pub struct WeightedRandom {
    /// Running sums of the weights; `None` when all weights are equal.
    cumulative: Option<Box<[u64]>>,
}

impl WeightedRandom {
    pub fn new(members: &[Member]) -> Self {
        let uniform = members.windows(2).all(|w| w[0].weight == w[1].weight);
        let cumulative = (!uniform).then(|| {
            members
                .iter()
                .scan(0u64, |sum, m| {
                    *sum += u64::from(m.weight.max(1));
                    Some(*sum)
                })
                .collect()
        });
        Self { cumulative }
    }
}

impl Balancer for WeightedRandom {
    fn pick(&self, members: &[Member], ctx: &mut PickContext<'_>) -> Option<usize> {
        if members.is_empty() {
            return None;
        }
        Some(match &self.cumulative {
            None => ctx.rng.usize(..members.len()),
            Some(cumulative) => {
                let total = *cumulative.last()?;
                let ticket = ctx.rng.u64(..total);
                cumulative.partition_point(|&sum| sum <= ticket)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_shares, distribution, members};
    use super::*;

    #[test]
    fn shares_follow_weights_within_two_percent() {
        for weights in [&[1, 1, 1][..], &[5, 1, 1], &[1, 2, 3, 4], &[100, 1]] {
            let m = members(weights);
            assert_shares(
                &distribution(&WeightedRandom::new(&m), &m, 100_000),
                weights,
                0.02,
            );
        }
    }
}
