//! Sorting rows that mostly come grouped already.

/// Sorts `rows` by `key`, stably, where rows of one group (`same_group`)
/// mostly come together and the groups mostly in order, as a run writes a
/// user's rows: each group is sorted on its own, and all of `rows` at once
/// only when the groups are still out of order after that.
pub fn sort_grouped<T, K: Ord>(
    rows: &mut [T],
    same_group: impl Fn(&T, &T) -> bool,
    key: impl Fn(&T) -> K,
) {
    for group in rows.chunk_by_mut(&same_group) {
        group.sort_by_key(&key);
    }
    if !rows.is_sorted_by_key(&key) {
        rows.sort_by_key(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_and_ungrouped_rows_sort_alike_and_stably() {
        // (group, value, original position)
        let rows = [
            (2, 5, 0),
            (2, 1, 1),
            (1, 9, 2),
            (1, 9, 3),
            (3, 0, 4),
            (1, 2, 5),
        ];
        let mut sorted = rows;
        sort_grouped(&mut sorted, |a, b| a.0 == b.0, |r| (r.0, r.1));
        assert_eq!(
            sorted,
            [
                (1, 2, 5),
                (1, 9, 2),
                (1, 9, 3),
                (2, 1, 1),
                (2, 5, 0),
                (3, 0, 4)
            ]
        );
        let mut in_order = [(1, 3, 0), (1, 1, 1), (2, 2, 2)];
        sort_grouped(&mut in_order, |a, b| a.0 == b.0, |r| (r.0, r.1));
        assert_eq!(in_order, [(1, 1, 1), (1, 3, 0), (2, 2, 2)]);
    }
}
