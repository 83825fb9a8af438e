//! Near misses: which known word or name a mistyped value was meant to be.
//!
//! Owns the rule behind every "did you mean" of validation. The distance is
//! the optimal string alignment distance (insertions, deletions,
//! substitutions and swaps of two neighbours, each costing 1), ignoring
//! ASCII case. A candidate is suggested only when it is within
//! `max(1, characters typed / 3)` and no other candidate is as close; a
//! value longer than [`MAX_TYPED`] characters gets no suggestion (the work
//! grows with its length). Names, unlike keywords, are often numbered
//! (`rs485-1`, `cnc-07`, `chint-dtsu666`, `Etc/GMT+8`): a name that differs
//! from a candidate only in digits names another thing, not a typo, so it
//! gets no suggestion.
//!
//! Written here rather than taken from `strsim`: the rule is twenty lines
//! and the ASCII-case folding and the digit rule are ours anyway.

/// The longest value, in characters, for which a suggestion is sought.
const MAX_TYPED: usize = 64;

/// The keyword of a fixed vocabulary (`parity`, `type`, …) `typed` was meant to be.
pub(crate) fn closest_word<'c>(
    typed: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    closest(typed, candidates, false)
}

/// The name (a bus, device, point, profile, carrier, timezone) `typed` was
/// meant to be; never one that differs from it only in digits.
pub(crate) fn closest_name<'c>(
    typed: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    closest(typed, candidates, true)
}

fn closest<'c>(
    typed: &str,
    candidates: impl IntoIterator<Item = &'c str>,
    numbered: bool,
) -> Option<&'c str> {
    let typed_chars = folded(typed);
    if typed_chars.is_empty() || typed_chars.len() > MAX_TYPED {
        return None;
    }
    let limit = (typed_chars.len() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    let mut tied = false;
    for candidate in candidates {
        if candidate == typed {
            continue;
        }
        let candidate_chars = folded(candidate);
        if candidate_chars.len().abs_diff(typed_chars.len()) > limit
            || (numbered && differ_only_in_digits(&typed_chars, &candidate_chars))
        {
            continue;
        }
        let distance = distance(&typed_chars, &candidate_chars);
        match best {
            _ if distance > limit => {}
            Some((closest, name)) if distance == closest => tied |= name != candidate,
            Some((closest, _)) if distance > closest => {}
            _ => {
                best = Some((distance, candidate));
                tied = false;
            }
        }
    }
    best.filter(|_| !tied).map(|(_, name)| name)
}

fn folded(text: &str) -> Vec<char> {
    text.chars().map(|c| c.to_ascii_lowercase()).collect()
}

/// Same length, and every place they differ holds a digit in both.
fn differ_only_in_digits(a: &[char], b: &[char]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (x.is_ascii_digit() && y.is_ascii_digit()))
}

/// Optimal string alignment distance, row by row.
fn distance(a: &[char], b: &[char]) -> usize {
    let mut two_rows_up: Vec<usize> = Vec::new();
    let mut row_up: Vec<usize> = (0..=b.len()).collect();
    let mut a_before = None;
    for (i, &a_char) in a.iter().enumerate() {
        let mut row = Vec::with_capacity(b.len() + 1);
        row.push(i + 1);
        let mut b_before = None;
        for (j, &b_char) in b.iter().enumerate() {
            let substitute = row_up.get(j).map_or(usize::MAX, |d| {
                d.saturating_add(usize::from(a_char != b_char))
            });
            let delete = row_up
                .get(j + 1)
                .map_or(usize::MAX, |d| d.saturating_add(1));
            let insert = row.last().map_or(usize::MAX, |d| d.saturating_add(1));
            let mut cell = substitute.min(delete).min(insert);
            if a_before == Some(b_char)
                && b_before == Some(a_char)
                && let Some(d) = j.checked_sub(1).and_then(|k| two_rows_up.get(k))
            {
                cell = cell.min(d.saturating_add(1));
            }
            row.push(cell);
            b_before = Some(b_char);
        }
        two_rows_up = std::mem::replace(&mut row_up, row);
        a_before = Some(a_char);
    }
    row_up.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(a: &str, b: &str) -> usize {
        distance(&folded(a), &folded(b))
    }

    #[test]
    fn distance_counts_edits_and_a_swap_of_neighbours_as_one() {
        assert_eq!(d("", ""), 0);
        assert_eq!(d("even", ""), 4);
        assert_eq!(d("", "even"), 4);
        assert_eq!(d("evn", "even"), 1);
        assert_eq!(d("eevn", "even"), 1);
        assert_eq!(d("CADB", "CDAB"), 1);
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("Asia/Shangai", "Asia/Shanghai"), 1);
        assert_eq!(d("ca", "abc"), 3);
    }

    #[test]
    fn distance_ignores_ascii_case() {
        assert_eq!(d("cdab", "CDAB"), 0);
        assert_eq!(closest_word("cdab", ["ABCD", "CDAB"]), Some("CDAB"));
    }

    #[test]
    fn a_close_unique_candidate_is_suggested() {
        assert_eq!(closest_word("evn", ["none", "even", "odd"]), Some("even"));
        assert_eq!(
            closest_name("energy_imprt", ["energy_import", "energy_export"]),
            Some("energy_import")
        );
    }

    #[test]
    fn a_far_candidate_is_not_suggested() {
        assert_eq!(closest_word("mark", ["none", "even", "odd"]), None);
        assert_eq!(closest_name("gas", ["lpg", "coal", "steam"]), None);
        assert_eq!(closest_word("", ["a"]), None);
    }

    #[test]
    fn two_candidates_equally_close_are_not_suggested() {
        assert_eq!(closest_word("i36", ["i16", "i32"]), None);
        assert_eq!(closest_word("i36", ["i16", "i16"]), Some("i16"));
    }

    #[test]
    fn a_name_differing_only_in_digits_names_another_thing() {
        assert_eq!(closest_name("rs485-2", ["rs485-1"]), None);
        assert_eq!(closest_name("chint-dtsu777", ["chint-dtsu666"]), None);
        assert_eq!(closest_name("rs485_1", ["rs485-1"]), Some("rs485-1"));
        assert_eq!(closest_word("f23", ["f32", "f64"]), Some("f32"));
    }

    #[test]
    fn a_very_long_value_gets_no_suggestion() {
        let long = "a".repeat(MAX_TYPED + 1);
        let near = "a".repeat(MAX_TYPED);
        assert_eq!(closest_name(&long, [near.as_str()]), None);
    }
}
