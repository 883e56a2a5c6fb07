//! `select_nouns` takes `n_centres` from the caller: its memory must not depend on it.

use laic::{Order, select_nouns};

#[test]
fn select_with_a_huge_centre_count_neither_allocates_it_nor_fails() {
    let values = [0.5f32, 0.1, 0.3, 0.2, 0.9, 0.4];
    let assignment = [7u32, 7, 7, 1 << 30, 1 << 30, 3];
    let got = select_nouns(&values, &assignment, usize::MAX, 2, Order::Smallest).unwrap();
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
    let got = select_nouns(&values, &assignment, 1 << 40, 1, Order::Largest).unwrap();
    assert_eq!(got, vec![0, 4, 5]);
}

#[test]
fn select_ranks_within_each_centre_and_breaks_ties_by_index() {
    let values = [1.0f32, 1.0, 0.5, 1.0, 2.0, 0.5];
    let assignment = [0u32, 0, 0, 2, 2, 0];
    assert_eq!(
        select_nouns(&values, &assignment, 3, 2, Order::Smallest).unwrap(),
        vec![2, 3, 4, 5]
    );
    assert_eq!(
        select_nouns(&values, &assignment, 3, 2, Order::Largest).unwrap(),
        vec![0, 1, 3, 4]
    );
}
