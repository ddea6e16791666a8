//! SRV records and the order their targets are tried in (RFC 2782, as told in
//! docs/ovirt-protocol.md §7.2): lowest priority first; within a priority, a weighted random
//! draw, repeated until none is left, where a record of weight 0 has a small chance to come
//! first and otherwise comes after the weighted ones.

use serde::{Deserialize, Serialize};

/// One SRV record as read from the answer (the target not yet checked: see the discovery
/// step, which judges it with the host-name rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Dotted, without the final dot; "." is the root: "no such service here".
    pub target: String,
}

impl Srv {
    /// RFC 2782: a target of "." means the service is decidedly not available.
    pub fn is_no_service(&self) -> bool {
        self.target == "."
    }
}

/// `records` in the order to try them. `draw(n)` returns a number in `0..=n`, uniform in
/// the running system (tests give a fixed sequence).
pub fn order(records: &[Srv], draw: &mut dyn FnMut(u32) -> u32) -> Vec<Srv> {
    let mut by_priority = records.to_vec();
    by_priority.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    for group in by_priority.chunk_by(|a, b| a.priority == b.priority) {
        out.extend(order_one_priority(group.to_vec(), draw));
    }
    out
}

/// RFC 2782's selection within one priority: weight-0 records first in the list, a draw
/// in `0..=sum of weights`, the first record whose running sum reaches it is next.
fn order_one_priority(mut left: Vec<Srv>, draw: &mut dyn FnMut(u32) -> u32) -> Vec<Srv> {
    left.sort_by_key(|r| r.weight != 0);
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let sum: u32 = left.iter().map(|r| u32::from(r.weight)).sum();
        let pick = draw(sum).min(sum);
        let mut running = 0;
        let at = left
            .iter()
            .position(|r| {
                running += u32::from(r.weight);
                running >= pick
            })
            .unwrap_or(0);
        out.push(left.remove(at));
    }
    out
}

/// A uniform draw in `0..=n` from the kernel's random numbers (not for secrets: only
/// spreading nodes over engines).
pub fn system_draw(n: u32) -> u32 {
    let mut b = [0u8; 8];
    let got = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::INSECURE);
    let x = match got {
        Ok(8) => u64::from_ne_bytes(b),
        _ => u64::from(std::process::id()),
    };
    // The modulo bias of a 64-bit number over at most 2^32 values is negligible here.
    (x % (u64::from(n) + 1)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 443,
            target: target.into(),
        }
    }

    fn targets(v: &[Srv]) -> Vec<&str> {
        v.iter().map(|r| r.target.as_str()).collect()
    }

    /// A draw that returns the given numbers in turn, checking each bound it is asked for.
    fn fixed(values: Vec<u32>, bounds: Vec<u32>) -> impl FnMut(u32) -> u32 {
        let mut i = 0;
        move |n| {
            assert_eq!(n, bounds[i], "bound of draw {i}");
            i += 1;
            values[i - 1]
        }
    }

    #[test]
    fn lower_priority_always_first() {
        let records = [
            srv(20, 100, "c"),
            srv(10, 0, "a"),
            srv(30, 5, "d"),
            srv(10, 0, "b"),
        ];
        let got = order(&records, &mut |_| 0);
        assert_eq!(targets(&got), ["a", "b", "c", "d"]);
        let got = order(&records, &mut |n| n);
        assert_eq!(&targets(&got)[2..], ["c", "d"]);
    }

    #[test]
    fn weights_pick_by_running_sum() {
        // Weights 10, 30, 60: running sums 10, 40, 100.
        let records = [srv(1, 10, "a"), srv(1, 30, "b"), srv(1, 60, "c")];
        // 41 → c (sum 100); then a, b left (sums 10, 40): 11 → b; then a.
        let got = order(&records, &mut fixed(vec![41, 11, 0], vec![100, 40, 10]));
        assert_eq!(targets(&got), ["c", "b", "a"]);
        // 10 → a (the running sum reaches it exactly); then 0 → b; then c.
        let got = order(&records, &mut fixed(vec![10, 0, 60], vec![100, 90, 60]));
        assert_eq!(targets(&got), ["a", "b", "c"]);
    }

    #[test]
    fn weight_zero_first_only_on_a_zero_draw() {
        let records = [srv(1, 5, "heavy"), srv(1, 0, "zero")];
        let got = order(&records, &mut fixed(vec![0, 0], vec![5, 5]));
        assert_eq!(targets(&got), ["zero", "heavy"]);
        let got = order(&records, &mut fixed(vec![1, 0], vec![5, 0]));
        assert_eq!(targets(&got), ["heavy", "zero"]);
    }

    #[test]
    fn a_draw_out_of_range_is_clamped() {
        let records = [srv(1, 1, "a"), srv(1, 1, "b")];
        let got = order(&records, &mut |_| u32::MAX);
        assert_eq!(targets(&got), ["b", "a"]);
    }

    #[test]
    fn the_system_draw_stays_in_range_and_weights_show() {
        let records = [srv(1, 1, "light"), srv(1, 99, "heavy")];
        let heavy_first = (0..1000)
            .filter(|_| order(&records, &mut system_draw)[0].target == "heavy")
            .count();
        assert!(heavy_first > 900, "{heavy_first} of 1000");
        for n in [0, 1, 7, u32::MAX] {
            assert!((0..100).all(|_| system_draw(n) <= n));
        }
    }

    #[test]
    fn the_root_target_means_no_service() {
        assert!(srv(0, 0, ".").is_no_service());
        assert!(!srv(0, 0, "engine.example").is_no_service());
    }
}
