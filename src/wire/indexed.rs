//! Per-index state of a stream — choices, tool calls, output items — found in constant time
//! whatever order the indices arrive in, and handed out in index order at the end.

use std::collections::HashMap;

/// Something kept per stream index.
pub(crate) trait Keyed {
    /// The index the state belongs to.
    fn key(&self) -> u32;
}

/// Up to this many entries are found by a scan (streams have one choice, a few tool calls);
/// past it, through a map. Either way an index costs O(1) amortised, so a hostile order (say
/// 100k indices, descending) costs O(n), not the O(n²) of a sorted insert.
const SCAN: usize = 8;

/// Entries in arrival order, with a map from index to position once there are many.
#[derive(Debug)]
pub(crate) struct Indexed<T> {
    items: Vec<T>,
    positions: Option<HashMap<u32, usize>>,
}

impl<T> Default for Indexed<T> {
    fn default() -> Self {
        Indexed {
            items: Vec::new(),
            positions: None,
        }
    }
}

impl<T: Keyed> Indexed<T> {
    /// The entry for `key`. A missing one is made by `make` if `admit` allows it (it charges
    /// the entry to a budget); `None` when it is missing and not admitted.
    pub(crate) fn entry(
        &mut self,
        key: u32,
        admit: impl FnOnce() -> bool,
        make: impl FnOnce() -> T,
    ) -> Option<&mut T> {
        let at = match self.position(key) {
            Some(at) => at,
            None => {
                if !admit() {
                    return None;
                }
                self.items.push(make());
                let at = self.items.len() - 1;
                match &mut self.positions {
                    Some(positions) => {
                        positions.insert(key, at);
                    }
                    None if self.items.len() > SCAN => {
                        let positions = self.items.iter().enumerate();
                        self.positions = Some(positions.map(|(at, t)| (t.key(), at)).collect());
                    }
                    None => {}
                }
                at
            }
        };
        self.items.get_mut(at)
    }

    fn position(&self, key: u32) -> Option<usize> {
        match &self.positions {
            Some(positions) => positions.get(&key).copied(),
            // The latest entry first: consecutive events usually name the same index.
            None => self.items.iter().rposition(|t| t.key() == key),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The entries in index order.
    pub(crate) fn into_sorted(mut self) -> Vec<T> {
        self.items.sort_unstable_by_key(Keyed::key);
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Slot(u32, u32);

    impl Keyed for Slot {
        fn key(&self) -> u32 {
            self.0
        }
    }

    #[test]
    fn any_order_gives_one_entry_per_index_in_index_order() {
        let mut indexed = Indexed::default();
        let order: Vec<u32> = (0..50).rev().chain([7, 3, 49, 0]).collect();
        for key in order {
            if let Some(slot) = indexed.entry(key, || true, || Slot(key, 0)) {
                slot.1 += 1;
            }
        }
        let sorted = indexed.into_sorted();
        assert_eq!(sorted.len(), 50);
        assert!(sorted.iter().enumerate().all(|(i, s)| s.0 == i as u32));
        assert_eq!(sorted[7].1, 2);
        assert_eq!(sorted[1].1, 1);
    }

    #[test]
    fn a_refused_entry_is_not_made() {
        let mut indexed: Indexed<Slot> = Indexed::default();
        assert!(indexed.entry(1, || false, || Slot(1, 0)).is_none());
        assert!(indexed.is_empty());
        assert!(indexed.entry(1, || true, || Slot(1, 0)).is_some());
        assert!(
            indexed.entry(1, || false, || Slot(1, 9)).is_some(),
            "exists already"
        );
    }
}
