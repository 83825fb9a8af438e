//! `parse` never panics, whatever it is given: arbitrary text, arbitrary
//! bytes read as text, keys nested at any depth, and valid configurations
//! with random edits.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use spindle_config::{ParseOptions, parse, parse_with};

const BASE: &str = include_str!("base.toml");
const PLANT: &str = include_str!("../../examples/plant.toml");

/// Fragments that make plausible but often wrong values.
const FRAGMENTS: &[&str] = &[
    "",
    "0",
    "-1",
    "65535",
    "65536",
    "9223372036854775807",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "\"\"",
    "\"0ms\"",
    "\"99999999999999999999d\"",
    "\"1h30m\"",
    "\"x.y.z\"",
    "\".\"",
    "\"a.\"",
    "[]",
    "{}",
    "[1, nan]",
    "true",
    "\"0x4000\"",
    "\"Asia/Shanghai\"",
    "\"25:61\"",
    "\"mqtt://[::1]:0\"",
    "\"m³\"",
    "\"é\"",
    "\n[[device]]\n",
    "\n[[device.point]]\n",
    "\n[device.sim]\n",
    "=",
    "\"",
];

fn mutate(base: &str, edits: &[(usize, usize, usize)]) -> String {
    let mut text = base.to_owned();
    for &(at, remove, fragment) in edits {
        let mut start = at % (text.len() + 1);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + remove % 24).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        text.replace_range(start..end, FRAGMENTS[fragment % FRAGMENTS.len()]);
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse("fuzz.toml", &text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse("fuzz.toml", &text);
    }

    #[test]
    fn toml_shaped_text_never_panics(text in "(\\[\\[?[a-z.]{1,12}\\]\\]?\n|[a-z_]{1,10} = (\"[^\"\n]{0,12}\"|-?[0-9]{1,6}|nan|true|\\[\\]|\\{ [a-z]+ = [0-9] \\})\n){0,30}") {
        let _ = parse("fuzz.toml", &text);
        let _ = parse_with("fuzz.toml", &text, ParseOptions { allow_sim: true });
    }

    #[test]
    fn keys_nested_at_any_depth_never_panic_and_have_a_position(
        segments in proptest::collection::vec("[a-z]{1,3}|\"[a-z. ]{0,4}\"|'[a-z.]{0,3}'", 1..120),
        shape in 0..4_u8,
        at_end in any::<bool>(),
    ) {
        let key = segments.join(".");
        let line = match shape {
            0 => format!("{key} = 1\n"),
            1 => format!("[{key}]\n"),
            2 => format!("[[{key}]]\n"),
            _ => format!("x = {{ {key} = [{{ {key} = 1 }}] }}\n"),
        };
        let text = if at_end { format!("{BASE}{line}") } else { format!("{line}{BASE}") };
        if let Err(errors) = parse("fuzz.toml", &text) {
            for error in &errors.0 {
                prop_assert!(error.line >= 1 && error.column >= 1, "{error}");
                prop_assert!(!error.message.contains("recursion limit"), "{error}");
            }
        }
    }

    #[test]
    fn mutated_valid_configurations_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<usize>()), 1..6),
        plant in any::<bool>(),
    ) {
        let text = mutate(if plant { PLANT } else { BASE }, &edits);
        if let Err(errors) = parse("fuzz.toml", &text) {
            prop_assert!(!errors.0.is_empty());
            for error in &errors.0 {
                prop_assert!(error.line >= 1 && error.column >= 1, "{error}");
                prop_assert!(!error.message.is_empty());
            }
        }
    }
}
