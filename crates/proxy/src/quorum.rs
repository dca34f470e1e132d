//! Quorum arithmetic and Swift's best-response selection (`PROTOCOLS.md`, "Proxy
//! behaviour clients rely on"; Swift `Controller.have_quorum` / `_compute_quorum_response`).

use cairn_common::config::WriteQuorum;

/// Replicated quorum: `(n + 1) // 2` (n=3 → 2, n=2 → 1, n=4 → 2, n=5 → 3).
pub fn quorum_size(n: usize) -> usize {
    n.div_ceil(2)
}

/// An object policy's write quorum over `n` replicas.
pub fn policy_quorum(n: usize, q: WriteQuorum) -> usize {
    match q {
        WriteQuorum::Majority => quorum_size(n),
        WriteQuorum::All => n,
    }
    .max(1)
}

/// The status classes that may form a quorum: 2xx, 3xx, 4xx (never 5xx).
const CLASSES: [u16; 3] = [200, 300, 400];

fn class_count(statuses: &[u16], hundred: u16) -> usize {
    statuses
        .iter()
        .filter(|s| (hundred..hundred + 100).contains(*s))
        .count()
}

/// Has one status class reached `quorum`?
pub fn have_quorum(statuses: &[u16], quorum: usize) -> bool {
    statuses.len() >= quorum && CLASSES.iter().any(|h| class_count(statuses, *h) >= quorum)
}

/// The index of the response to return: in the first class (2xx, 3xx, 4xx) with at
/// least `quorum` members, the highest status. `None` → answer 503.
pub fn best_index(statuses: &[u16], quorum: usize) -> Option<usize> {
    if statuses.is_empty() {
        return None;
    }
    for h in CLASSES {
        if class_count(statuses, h) >= quorum.max(1) {
            let best = statuses
                .iter()
                .copied()
                .filter(|s| (h..h + 100).contains(s))
                .max()?;
            return statuses.iter().position(|s| *s == best);
        }
    }
    None
}

/// Swift's `best_response` with `overrides` (object DELETE uses `404 → 204`): when no
/// class reaches quorum, count overridden statuses as their replacement, but never
/// answer with a faked one. Returns the index of the reply to use.
pub fn best_index_with_overrides(
    statuses: &[u16],
    quorum: usize,
    overrides: &[(u16, u16)],
) -> Option<usize> {
    if let Some(i) = best_index(statuses, quorum) {
        return Some(i);
    }
    let faked: Vec<bool> = statuses
        .iter()
        .map(|s| overrides.iter().any(|(from, _)| from == s))
        .collect();
    let mapped: Vec<u16> = statuses
        .iter()
        .map(|s| {
            overrides
                .iter()
                .find(|(from, _)| from == s)
                .map_or(*s, |(_, to)| *to)
        })
        .collect();
    for h in CLASSES {
        if class_count(&mapped, h) >= quorum.max(1) {
            return mapped
                .iter()
                .enumerate()
                .filter(|(i, s)| !faked[*i] && (h..h + 100).contains(*s))
                .max_by_key(|(_, s)| **s)
                .map(|(i, _)| i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(
            (1..=6).map(quorum_size).collect::<Vec<_>>(),
            vec![1, 1, 2, 2, 3, 3]
        );
        assert_eq!(policy_quorum(3, WriteQuorum::All), 3);
        assert_eq!(policy_quorum(3, WriteQuorum::Majority), 2);
    }

    #[test]
    fn best() {
        assert_eq!(best_index(&[201, 201, 503], 2), Some(0));
        assert_eq!(best_index(&[201, 202, 503], 2), Some(1));
        assert_eq!(best_index(&[503, 404, 404], 2), Some(1));
        assert_eq!(best_index(&[201, 404, 503], 2), None);
        assert_eq!(best_index(&[503, 503, 503], 2), None);
        assert_eq!(best_index(&[204, 404, 404], 2), Some(1));
        assert_eq!(best_index(&[409, 204, 204], 2), Some(1));
        assert_eq!(best_index(&[], 2), None);
        assert_eq!(
            best_index_with_overrides(&[204, 404, 503], 2, &[(404, 204)]),
            Some(0)
        );
        assert_eq!(
            best_index_with_overrides(&[404, 404, 503], 2, &[(404, 204)]),
            Some(0)
        );
        assert_eq!(
            best_index_with_overrides(&[404, 503, 503], 2, &[(404, 204)]),
            None
        );
        assert!(have_quorum(&[201, 201], 2));
        assert!(!have_quorum(&[201, 404], 2));
        assert!(!have_quorum(&[503, 503], 2));
    }
}
