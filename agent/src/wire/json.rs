//! The one JSON writer of every payload: strings escaped where JSON needs
//! it, numbers in shortest round-trip form (integral ones as integers),
//! objects and arrays with their commas.

use std::fmt::Write as _;

/// `s` as a JSON string literal.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    // Names rarely need escaping: copy them whole.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A finite number as JSON; a non-finite one (never produced) as `null`.
pub fn number(out: &mut String, n: f64) {
    if !n.is_finite() {
        out.push_str("null");
    } else if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        // Exact: an integral f64 below 2^53 is an i64 without loss, and
        // integer formatting is far cheaper than a float's.
        #[allow(clippy::cast_possible_truncation)]
        let _ = write!(out, "{}", n as i64);
    } else {
        out.push_str(
            &serde_json::Number::from_f64(n).map_or_else(|| "null".to_owned(), |v| v.to_string()),
        );
    }
}

/// An unsigned integer.
pub fn unsigned(out: &mut String, n: u64) {
    let _ = write!(out, "{n}");
}

/// A number, or `null` when unknown.
pub fn opt_number(out: &mut String, n: Option<f64>) {
    match n {
        Some(n) => number(out, n),
        None => out.push_str("null"),
    }
}

/// `true` or `false`.
pub fn boolean(out: &mut String, b: bool) {
    out.push_str(if b { "true" } else { "false" });
}

/// Writes the members of one object: `{` on creation, commas between
/// members, `}` from [`Object::end`].
#[derive(Debug)]
pub struct Object<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Object<'a> {
    pub fn open(out: &'a mut String) -> Self {
        out.push('{');
        Object { out, empty: true }
    }

    /// Continues an object whose `{` and first members are already in `out`.
    pub fn resume(out: &'a mut String) -> Self {
        Object { out, empty: false }
    }

    /// `"key":` (after a comma unless first); write the value into the returned buffer.
    pub fn key(&mut self, key: &str) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        string(self.out, key);
        self.out.push(':');
        self.out
    }

    pub fn number(&mut self, key: &str, n: f64) {
        number(self.key(key), n);
    }

    pub fn opt_number(&mut self, key: &str, n: Option<f64>) {
        opt_number(self.key(key), n);
    }

    pub fn unsigned(&mut self, key: &str, n: u64) {
        unsigned(self.key(key), n);
    }

    pub fn string(&mut self, key: &str, s: &str) {
        string(self.key(key), s);
    }

    pub fn boolean(&mut self, key: &str, b: bool) {
        boolean(self.key(key), b);
    }

    pub fn end(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_only_where_json_needs_it() {
        for s in [
            "meter-1",
            "温度 °C",
            "a\"b",
            "back\\slash",
            "tab\tnew\nline\r",
            "\u{1}\u{1f}",
            "",
        ] {
            let mut out = String::new();
            string(&mut out, s);
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s, "{s:?} encoded as {out}");
        }
    }

    #[test]
    fn numbers_print_as_json_numbers_that_read_back_to_the_same_bits() {
        let mut s = String::new();
        number(&mut s, 12345.0);
        s.push(' ');
        number(&mut s, 0.1);
        s.push(' ');
        number(&mut s, -3.5e-7);
        s.push(' ');
        number(&mut s, f64::NAN);
        assert_eq!(s, "12345 0.1 -3.5e-7 null");
        for n in [
            -9_007_199_254_740_991.0,
            -65_536.0,
            -1.0,
            -0.0,
            0.0,
            65_535.0,
            4_294_967_295.0,
            9_007_199_254_740_991.0,
            9_007_199_254_740_992.0,
            1e300,
        ] {
            let mut s = String::new();
            number(&mut s, n);
            let back: f64 = serde_json::from_str(&s).unwrap();
            assert!(
                back.to_bits() == n.to_bits() || (n == 0.0 && back == 0.0),
                "{n} printed as {s}"
            );
        }
    }

    #[test]
    fn an_object_puts_commas_between_members_only() {
        let mut s = String::new();
        let mut o = Object::open(&mut s);
        o.unsigned("a", 1);
        o.string("b", "x");
        o.opt_number("c", None);
        o.end();
        assert_eq!(s, r#"{"a":1,"b":"x","c":null}"#);
        let mut s = String::new();
        Object::open(&mut s).end();
        assert_eq!(s, "{}");
    }
}
