//! The `config` check: any text through `spindle_config::parse` (raw, then
//! validate) never panics; a refused file gets at least one error, and each
//! error names the file and a 1-based position inside the text.
//!
//! Input: the file's bytes, read as UTF-8 with invalid sequences replaced
//! (`load` refuses a file that is not UTF-8 before it parses).

const FILE: &str = "fuzz.toml";

pub(crate) fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Err(errors) = spindle_config::parse(FILE, &text) else {
        return;
    };
    assert!(!errors.0.is_empty(), "refused without an error");
    let lines = text.matches('\n').count() + 1;
    for error in &errors.0 {
        assert_eq!(error.file, FILE);
        assert!(
            (1..=lines).contains(&error.line) && error.column >= 1,
            "{error}: outside the {lines} lines of the text"
        );
    }
}
