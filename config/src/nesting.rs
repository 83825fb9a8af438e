//! How deep a file's keys nest, checked before the file is deserialized.
//!
//! Owns the rule that no key path is deeper than [`MAX_KEY_DEPTH`] levels.
//! A key's depth is its full path from the root: the segments of its table
//! header, of its own dotted key (quoted segments count as one), and of the
//! keys of the inline tables around it. Arrays add no level. spindle's own
//! keys nest at most [`SCHEMA_DEPTH`] deep (`kpi.energy_per_output.energy.point`),
//! [`SIM_SCHEMA_DEPTH`] in `[device.sim]`
//! (`device.sim.points.NAME.counter.rate`), so the limit rejects nothing
//! spindle reads.
//!
//! Why here and not in the `toml` crate: toml refuses a key of more than 80
//! segments with a bare "recursion limit" and no position. Scanning the
//! file with `toml_parser`, the lexer and parser toml itself runs, finds the
//! first key that is too deep with its own byte offset. A syntax error found
//! earlier in the file wins (it is reported by toml as before), so every
//! file gets the first of its errors.

use toml_parser::parser::EventReceiver;
use toml_parser::{ErrorSink, ParseError, Source, Span};

/// The deepest key path a file may hold.
pub(crate) const MAX_KEY_DEPTH: usize = 16;

/// The deepest key path of spindle's schema outside `[device.sim]`.
pub(crate) const SCHEMA_DEPTH: usize = 4;

/// The deepest key path of a `[device.sim]` table (`spindle simulate`).
pub(crate) const SIM_SCHEMA_DEPTH: usize = 6;

/// Nested arrays and inline tables the scan follows (toml's own bound);
/// anything deeper is skipped here and refused by toml with its position.
const MAX_VALUE_NESTING: usize = 80;

/// A key path deeper than [`MAX_KEY_DEPTH`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "key nests {depth} levels deep (at most {MAX_KEY_DEPTH} allowed); no spindle key nests deeper than {SCHEMA_DEPTH} ({SIM_SCHEMA_DEPTH} in [device.sim])"
)]
pub(crate) struct KeyTooDeep {
    /// Levels of the key's full path.
    pub(crate) depth: usize,
    /// Byte offset of the key's first segment.
    pub(crate) offset: usize,
}

/// The first key of `text` nested deeper than [`MAX_KEY_DEPTH`], unless a
/// syntax error comes before it.
pub(crate) fn find_key_too_deep(text: &str) -> Option<KeyTooDeep> {
    let source = Source::new(text);
    let tokens = source.lex().into_vec();
    let mut scan = Scan::default();
    let mut syntax = FirstSyntaxError(None);
    toml_parser::parser::parse_document(&tokens, &mut scan, &mut syntax);
    scan.finish_key();
    let found = scan.found?;
    let first_error = [syntax.0, scan.refused_at].into_iter().flatten().min();
    match first_error {
        Some(error) if error < found.offset => None,
        _ => Some(found),
    }
}

/// Where the first syntax error starts.
struct FirstSyntaxError(Option<usize>);

impl ErrorSink for FirstSyntaxError {
    fn report_error(&mut self, error: ParseError) {
        let at = error.unexpected().map_or(0, |span| span.start());
        self.0 = Some(self.0.map_or(at, |first| first.min(at)));
    }
}

/// A key being read: where its first segment starts and how many it has.
#[derive(Debug)]
struct KeyInProgress {
    start: Option<usize>,
    segments: usize,
    header: bool,
}

/// Follows the parser's events, keeping the depth of every key.
#[derive(Debug, Default)]
struct Scan {
    /// Levels of the last table header: the base of the keys below it.
    table_depth: usize,
    /// For each open array or inline table, the depth its keys start from.
    open: Vec<usize>,
    key: Option<KeyInProgress>,
    /// Depth of the last key before `=`, until its value opens.
    pending_value: Option<usize>,
    /// The first key deeper than the limit.
    found: Option<KeyTooDeep>,
    /// The deepest key seen.
    deepest: usize,
    /// Where values nested past [`MAX_VALUE_NESTING`] were refused.
    refused_at: Option<usize>,
}

impl Scan {
    /// The depth keys start from here (not counting a header being read).
    fn base(&self) -> usize {
        self.open.last().copied().unwrap_or(self.table_depth)
    }

    /// Close the key in progress; returns its full depth.
    fn finish_key(&mut self) -> Option<usize> {
        let key = self.key.take()?;
        let depth = if key.header {
            key.segments
        } else {
            self.base().saturating_add(key.segments)
        };
        self.deepest = self.deepest.max(depth);
        if depth > MAX_KEY_DEPTH
            && self.found.is_none()
            && let Some(offset) = key.start
        {
            self.found = Some(KeyTooDeep { depth, offset });
        }
        Some(depth)
    }

    fn start_header(&mut self) {
        self.finish_key();
        self.open.clear();
        self.pending_value = None;
        self.key = Some(KeyInProgress {
            start: None,
            segments: 0,
            header: true,
        });
    }

    fn close_header(&mut self) {
        if let Some(depth) = self.finish_key() {
            self.table_depth = depth;
        }
    }

    /// An array or inline table opens; false when it is nested too deep to follow.
    fn open_value(&mut self, span: Span) -> bool {
        let base = self.pending_value.take().unwrap_or_else(|| self.base());
        self.open.push(base);
        if self.open.len() > MAX_VALUE_NESTING {
            self.refused_at.get_or_insert(span.start());
            false
        } else {
            true
        }
    }
}

impl EventReceiver for Scan {
    fn std_table_open(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.start_header();
    }

    fn std_table_close(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.close_header();
    }

    fn array_table_open(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.start_header();
    }

    fn array_table_close(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.close_header();
    }

    fn inline_table_open(&mut self, span: Span, _error: &mut dyn ErrorSink) -> bool {
        self.open_value(span)
    }

    fn inline_table_close(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.finish_key();
        self.open.pop();
    }

    fn array_open(&mut self, span: Span, _error: &mut dyn ErrorSink) -> bool {
        self.open_value(span)
    }

    fn array_close(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.open.pop();
    }

    fn simple_key(
        &mut self,
        span: Span,
        _kind: Option<toml_parser::decoder::Encoding>,
        _error: &mut dyn ErrorSink,
    ) {
        let key = self.key.get_or_insert(KeyInProgress {
            start: None,
            segments: 0,
            header: false,
        });
        key.start.get_or_insert(span.start());
        key.segments = key.segments.saturating_add(1);
    }

    fn key_val_sep(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.pending_value = self.finish_key();
    }

    fn scalar(
        &mut self,
        _span: Span,
        _kind: Option<toml_parser::decoder::Encoding>,
        _error: &mut dyn ErrorSink,
    ) {
        self.pending_value = None;
    }

    fn value_sep(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.finish_key();
        self.pending_value = None;
    }

    fn newline(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        // Inside an array a value may continue on the next line; a key may not.
        self.finish_key();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_of_first_deep_key(text: &str) -> Option<(usize, usize)> {
        find_key_too_deep(text).map(|found| (found.depth, found.offset))
    }

    fn dotted(segments: usize) -> String {
        vec!["a"; segments].join(".")
    }

    fn deepest_key(text: &str) -> usize {
        let mut scan = Scan::default();
        let tokens = Source::new(text).lex().into_vec();
        toml_parser::parser::parse_document(&tokens, &mut scan, &mut FirstSyntaxError(None));
        scan.finish_key();
        scan.deepest
    }

    #[test]
    fn the_schema_depths_the_message_names_are_those_of_the_examples() {
        let plant = include_str!("../../examples/plant.toml");
        let sim = include_str!("../../examples/plant-sim.toml");
        assert_eq!(deepest_key(plant), SCHEMA_DEPTH);
        assert_eq!(deepest_key(sim), SIM_SCHEMA_DEPTH);
        assert_eq!(
            deepest_key("[[kpi.energy_per_output]]\noutput = [ { point = \"d.p\" } ]\n"),
            4
        );
    }

    #[test]
    fn spindle_keys_are_far_below_the_limit() {
        let text = "[agent]\nid = \"x\"\n[[kpi.energy_per_output]]\nenergy = [ { point = \"a.b\", carrier = \"c\" } ]\n[[device]]\n[device.sim]\npoints.load = { ramp = { start = 0, rate = 2 } }\n";
        assert_eq!(depth_of_first_deep_key(text), None);
    }

    #[test]
    fn a_dotted_key_is_measured_from_its_table() {
        let text = format!("[x.y]\nb = 1\n{} = 1\n", dotted(15));
        assert_eq!(depth_of_first_deep_key(&text), Some((17, 12)));
        let text = format!("[x]\n{} = 1\n", dotted(15));
        assert_eq!(depth_of_first_deep_key(&text), None);
    }

    #[test]
    fn a_deep_header_is_found_at_its_first_segment() {
        let text = format!("a = 1\n[[{}]]\n", dotted(85));
        assert_eq!(depth_of_first_deep_key(&text), Some((85, 8)));
    }

    #[test]
    fn quoted_segments_count_once_and_dots_in_strings_not_at_all() {
        let text = format!(
            "\"{}\" = \"{}\"\ns = \"\"\"\n{} = 1\n\"\"\"\n",
            dotted(40),
            dotted(40),
            dotted(40)
        );
        assert_eq!(depth_of_first_deep_key(&text), None);
        let text = format!("'a'.\"b\".{} = 1\n", dotted(15));
        assert_eq!(depth_of_first_deep_key(&text), Some((17, 0)));
    }

    #[test]
    fn inline_tables_add_their_keys_and_arrays_add_nothing() {
        let text = format!("[t]\nx = [[{{ y = {{ {} = 1 }} }}]]\n", dotted(13));
        assert_eq!(depth_of_first_deep_key(&text), None);
        let text = format!("[t]\nx = [[{{ y = {{ {} = 1 }} }}]]\n", dotted(14));
        assert_eq!(depth_of_first_deep_key(&text), Some((17, 18)));
    }

    #[test]
    fn a_syntax_error_before_the_deep_key_is_left_to_toml() {
        let text = format!("a = = 1\n{} = 1\n", dotted(20));
        assert_eq!(depth_of_first_deep_key(&text), None);
        let text = format!("{} = 1\na = = 1\n", dotted(20));
        assert_eq!(depth_of_first_deep_key(&text), Some((20, 0)));
    }

    #[test]
    fn values_nested_past_toml_bound_are_not_followed() {
        let text = format!(
            "x = {}1{}\n{} = 1\n",
            "[".repeat(100),
            "]".repeat(100),
            dotted(20)
        );
        assert_eq!(depth_of_first_deep_key(&text), None);
    }
}
