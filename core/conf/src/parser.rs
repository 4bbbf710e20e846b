//! A parser for libvirt's configuration-file syntax (`virconf`), as read by
//! libvirt 9.0 for `qemu.conf`, `libvirtd.conf`, `virtqemud.conf` and friends.
//!
//! The grammar, faithful to libvirt's parser:
//!
//! ```text
//! file      := { blank-lines statement separator }
//! statement := comment | NAME '=' value [ comment ]
//! separator := end of file | end of line | ';'
//! NAME      := [A-Za-z][A-Za-z0-9_]*
//! value     := string | number | list
//! number    := [+-]? [0-9]+         (a leading '-' makes it signed)
//! list      := '[' [ value { ',' value } [ ',' ] ] ']'   (may span lines)
//! string    := '"' chars '"' | '\'' chars '\'' | '"""' chars-and-newlines '"""'
//! comment   := '#' up to the end of the line
//! ```
//!
//! Strings have **no escape sequences**, exactly as in libvirt: a backslash
//! is an ordinary character, a `"..."` string ends at the next `"` and may
//! not span lines. A value containing `"` is written in single quotes
//! (`'say "hi"'`), one containing both quote characters or newlines in
//! triple double quotes (`"""..."""`). Booleans are the numbers `0` and `1`.
//! Comments are not allowed between the items of a list (libvirt rejects
//! them too).
//!
//! Unlike libvirt, a number that does not fit in 64 bits is an error rather
//! than a silently wrapped value, string values must be UTF-8, and a file
//! holding only blank lines is accepted.
//!
//! ```
//! use qvisor_conf::parser::{ConfFile, Value};
//!
//! let conf = ConfFile::parse_str("example.conf", "vnc_tls = 1\nuser = \"qemu\"\n").unwrap();
//! assert_eq!(conf.get("vnc_tls").map(|e| &e.value), Some(&Value::Unsigned(1)));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

/// Largest file [`ConfFile::read`] accepts, as libvirt (10 MiB).
pub const MAX_CONFIG_FILE_SIZE: u64 = 10 * 1024 * 1024;

/// A 1-based place in a configuration file. Columns count characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A configuration value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A quoted string.
    String(String),
    /// A number written with a leading `-` (libvirt's `VIR_CONF_LLONG`).
    Signed(i64),
    /// A number written without a sign or with `+` (libvirt's
    /// `VIR_CONF_ULLONG`); booleans are `Unsigned(0)` and `Unsigned(1)`.
    Unsigned(u64),
    /// A bracketed list.
    List(Vec<ListItem>),
}

impl Value {
    /// The name of this value's type as error messages use it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::Signed(_) => "signed integer",
            Value::Unsigned(_) => "unsigned integer",
            Value::List(_) => "list",
        }
    }
}

/// One element of a [`Value::List`], with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListItem {
    /// The element.
    pub value: Value,
    /// Where the element starts.
    pub pos: Position,
}

/// One `name = value` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The setting's name.
    pub key: String,
    /// Where the name starts.
    pub pos: Position,
    /// The value.
    pub value: Value,
    /// Where the value starts.
    pub value_pos: Position,
}

/// A parsed configuration file: its settings in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfFile {
    origin: String,
    entries: Vec<Entry>,
}

/// Errors from reading or parsing a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("Failed to open file '{}': {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_FILE_SIZE`].
    #[error("Failed to read file '{}': larger than {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// The text is not valid configuration syntax.
    #[error("configuration file syntax error: {origin}:{pos}: {message}, found {token}")]
    Syntax {
        /// The file name (or `memory conf` for a string).
        origin: String,
        /// Where the problem is.
        pos: Position,
        /// What was expected, in libvirt's words (`expecting a value`).
        message: &'static str,
        /// The offending text, quoted, or `end of line` / `end of file`.
        token: String,
    },
}

impl Error {
    /// The libvirt error code this error maps to.
    pub fn code(&self) -> crate::ErrorCode {
        match self {
            Error::Read { .. } | Error::TooLarge { .. } => crate::ErrorCode::SystemError,
            Error::Syntax { .. } => crate::ErrorCode::ConfSyntax,
        }
    }
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

impl ConfFile {
    /// Parses `text`; `origin` names it in error messages (a path, or
    /// `memory conf` as libvirt says for in-memory text).
    pub fn parse(origin: &str, text: &[u8]) -> Result<Self> {
        let mut parser = Parser {
            origin,
            text,
            cur: 0,
            line: 1,
            line_start: 0,
        };
        let entries = parser.file()?;
        Ok(ConfFile {
            origin: origin.to_owned(),
            entries,
        })
    }

    /// Parses a string; see [`ConfFile::parse`].
    pub fn parse_str(origin: &str, text: &str) -> Result<Self> {
        Self::parse(origin, text.as_bytes())
    }

    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        use std::io::Read;
        let read_err = |source| Error::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut text = Vec::new();
        file.take(MAX_CONFIG_FILE_SIZE + 1)
            .read_to_end(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_CONFIG_FILE_SIZE {
            return Err(Error::TooLarge {
                path: path.to_owned(),
                limit: MAX_CONFIG_FILE_SIZE,
            });
        }
        Self::parse(&path.to_string_lossy(), &text)
    }

    /// The name errors use for this file.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// All settings in file order, duplicates included.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The setting named `key`. When a name is set more than once the
    /// first setting wins, as in libvirt.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

struct Parser<'a> {
    origin: &'a str,
    text: &'a [u8],
    cur: usize,
    line: u32,
    line_start: usize,
}

fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn is_eol(c: u8) -> bool {
    c == b'\n' || c == b'\r'
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.cur).copied()
    }

    fn at_end(&self) -> bool {
        self.cur >= self.text.len()
    }

    /// Consumes one byte, keeping the line count.
    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.cur += 1;
            if c == b'\n' {
                self.line = self.line.saturating_add(1);
                self.line_start = self.cur;
            }
        }
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.bump();
        }
    }

    fn skip_blanks_and_eol(&mut self) {
        while self.peek().is_some_and(|c| is_blank(c) || is_eol(c)) {
            self.bump();
        }
    }

    fn skip_to_eol(&mut self) {
        while self.peek().is_some_and(|c| !is_eol(c)) {
            self.bump();
        }
    }

    fn pos_at(&self, offset: usize) -> Position {
        let start = self.line_start.min(offset);
        let before = self.text.get(start..offset).unwrap_or_default();
        // Count characters: every byte that does not continue a UTF-8 sequence.
        let chars = before.iter().filter(|&&b| (b & 0xC0) != 0x80).count();
        Position {
            line: self.line,
            column: u32::try_from(chars).unwrap_or(u32::MAX).saturating_add(1),
        }
    }

    fn pos(&self) -> Position {
        self.pos_at(self.cur)
    }

    /// A syntax error at byte `offset` on the current line.
    fn error_at(&self, offset: usize, message: &'static str) -> Error {
        Error::Syntax {
            origin: self.origin.to_owned(),
            pos: self.pos_at(offset),
            message,
            token: self.token_at(offset),
        }
    }

    fn error(&self, message: &'static str) -> Error {
        self.error_at(self.cur, message)
    }

    /// The text at `offset` shown in errors: one word, or what ends it.
    fn token_at(&self, offset: usize) -> String {
        const MAX_CHARS: usize = 24;
        let rest = self.text.get(offset..).unwrap_or_default();
        match rest.first() {
            None => return "end of file".to_owned(),
            Some(c) if is_eol(*c) => return "end of line".to_owned(),
            _ => {}
        }
        let is_stop = |c: &u8| is_blank(*c) || is_eol(*c);
        let len = rest.iter().position(is_stop).unwrap_or(rest.len()).max(1);
        let word = String::from_utf8_lossy(rest.get(..len).unwrap_or_default());
        let mut shown: String = word.chars().take(MAX_CHARS).collect();
        if word.chars().count() > MAX_CHARS {
            shown.push_str("...");
        }
        format!("'{shown}'")
    }

    fn file(&mut self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        loop {
            self.skip_blanks_and_eol();
            if self.at_end() {
                return Ok(entries);
            }
            if let Some(entry) = self.statement()? {
                entries.push(entry);
            }
            self.separator()?;
        }
    }

    fn separator(&mut self) -> Result<()> {
        self.skip_blanks();
        match self.peek() {
            None => Ok(()),
            Some(c) if is_eol(c) => {
                self.skip_blanks_and_eol();
                Ok(())
            }
            Some(b';') => {
                self.bump();
                self.skip_blanks_and_eol();
                Ok(())
            }
            Some(_) => Err(self.error("expecting a separator")),
        }
    }

    /// A comment (returns `None`) or a setting.
    fn statement(&mut self) -> Result<Option<Entry>> {
        if self.peek() == Some(b'#') {
            self.skip_to_eol();
            return Ok(None);
        }
        let pos = self.pos();
        let key = self.name()?;
        self.skip_blanks();
        if self.peek() != Some(b'=') {
            return Err(self.error("expecting an assignment"));
        }
        self.bump();
        self.skip_blanks();
        let value_pos = self.pos();
        let value = self.value(0)?;
        self.skip_blanks();
        if self.peek() == Some(b'#') {
            self.skip_to_eol();
        }
        Ok(Some(Entry {
            key,
            pos,
            value,
            value_pos,
        }))
    }

    fn name(&mut self) -> Result<String> {
        let start = self.cur;
        if !self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            return Err(self.error("expecting a name"));
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.bump();
        }
        let name = self.text.get(start..self.cur).unwrap_or_default();
        // Only ASCII letters, digits and '_' were accepted above.
        Ok(String::from_utf8_lossy(name).into_owned())
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        /// Lists nested deeper than this are refused rather than risking
        /// the stack on hostile input (libvirt's getters accept no nesting).
        const MAX_DEPTH: usize = 64;
        self.skip_blanks();
        match self.peek() {
            None => Err(self.error("expecting a value")),
            Some(b'"' | b'\'') => self.string().map(Value::String),
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(self.error("lists nested too deeply"));
                }
                self.list(depth)
            }
            Some(c) if c.is_ascii_digit() || c == b'-' || c == b'+' => self.number(),
            Some(_) => Err(self.error("expecting a value")),
        }
    }

    fn list(&mut self, depth: usize) -> Result<Value> {
        let open = self.cur;
        let open_line = (self.line, self.line_start);
        self.bump(); // '['
        self.skip_blanks_and_eol();
        let mut items = Vec::new();
        if self.peek().is_some_and(|c| c != b']') {
            let pos = self.pos();
            items.push(ListItem {
                value: self.value(depth + 1)?,
                pos,
            });
            self.skip_blanks_and_eol();
        }
        while let Some(c) = self.peek() {
            if c == b']' {
                break;
            }
            if c != b',' {
                return Err(self.error("expecting a separator in list"));
            }
            self.bump();
            self.skip_blanks_and_eol();
            if self.peek() == Some(b']') {
                break;
            }
            let pos = self.pos();
            items.push(ListItem {
                value: self.value(depth + 1)?,
                pos,
            });
            self.skip_blanks_and_eol();
        }
        if self.peek() == Some(b']') {
            self.bump();
            Ok(Value::List(items))
        } else {
            // Point at the opening bracket: that is what is left unclosed.
            self.line = open_line.0;
            self.line_start = open_line.1;
            Err(self.error_at(open, "list is not closed with ]"))
        }
    }

    fn number(&mut self) -> Result<Value> {
        let start = self.cur;
        let negative = self.peek() == Some(b'-');
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.bump();
        }
        if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
            return Err(self.error_at(start, "unterminated number"));
        }
        let mut magnitude: u64 = 0;
        let mut overflow = false;
        while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
            match magnitude
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(c - b'0')))
            {
                Some(m) => magnitude = m,
                None => overflow = true,
            }
            self.bump();
        }
        let out_of_range = || self.error_at(start, "number out of range");
        if overflow {
            return Err(out_of_range());
        }
        if negative {
            // -(2^63) is the most negative i64; 0 - magnitude checks the rest.
            let value = 0i64
                .checked_sub_unsigned(magnitude)
                .ok_or_else(out_of_range)?;
            Ok(Value::Signed(value))
        } else {
            Ok(Value::Unsigned(magnitude))
        }
    }

    fn string(&mut self) -> Result<String> {
        let open = self.cur;
        let rest = self.text.get(open..).unwrap_or_default();
        let (content_start, content_end, close_len) = if rest.starts_with(b"\"\"\"") {
            // Triple quotes: may span lines, ends at the next `"""`.
            let body = rest.get(3..).unwrap_or_default();
            let Some(len) = body.windows(3).position(|w| w == b"\"\"\"") else {
                return Err(self.error_at(open, "unterminated string"));
            };
            (open + 3, open + 3 + len, 3)
        } else {
            let quote = rest.first().copied().unwrap_or(b'"');
            let body = rest.get(1..).unwrap_or_default();
            match body.iter().position(|&c| c == quote || is_eol(c)) {
                Some(len) if body.get(len) == Some(&quote) => (open + 1, open + 1 + len, 1),
                _ => return Err(self.error_at(open, "unterminated string")),
            }
        };
        let content = self
            .text
            .get(content_start..content_end)
            .unwrap_or_default();
        let value = match std::str::from_utf8(content) {
            Ok(s) => s.to_owned(),
            Err(e) => {
                return Err(
                    self.error_at(content_start + e.valid_up_to(), "invalid UTF-8 in string")
                )
            }
        };
        while self.cur < content_end + close_len {
            self.bump();
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ConfFile {
        match ConfFile::parse_str("test.conf", text) {
            Ok(conf) => conf,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    fn parse_err(text: &str) -> (Position, &'static str, String) {
        match ConfFile::parse_str("test.conf", text) {
            Err(Error::Syntax {
                pos,
                message,
                token,
                ..
            }) => (pos, message, token),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    fn value(text: &str, key: &str) -> Value {
        match parse(text).get(key) {
            Some(e) => e.value.clone(),
            None => panic!("{key} not set"),
        }
    }

    fn strs(items: &[&str]) -> Value {
        Value::List(
            items
                .iter()
                .map(|s| ListItem {
                    value: Value::String((*s).to_owned()),
                    pos: Position { line: 0, column: 0 },
                })
                .collect(),
        )
    }

    /// Compares list values ignoring positions.
    fn strip(v: Value) -> Value {
        match v {
            Value::List(items) => Value::List(
                items
                    .into_iter()
                    .map(|i| ListItem {
                        value: strip(i.value),
                        pos: Position { line: 0, column: 0 },
                    })
                    .collect(),
            ),
            other => other,
        }
    }

    #[test]
    fn double_quoted_string_is_taken_verbatim() {
        assert_eq!(
            value("vnc_listen = \"0.0.0.0\"\n", "vnc_listen"),
            Value::String("0.0.0.0".into())
        );
    }

    #[test]
    fn backslash_is_an_ordinary_character_as_in_libvirt() {
        assert_eq!(
            value(r#"p = "C:\dir\""#, "p"),
            Value::String(r"C:\dir\".into())
        );
    }

    #[test]
    fn single_quoted_string_may_hold_double_quotes() {
        assert_eq!(
            value("p = 'say \"hi\"'", "p"),
            Value::String("say \"hi\"".into())
        );
    }

    #[test]
    fn triple_quoted_string_spans_lines_and_counts_them() {
        let conf = parse("a = \"\"\"one\n'two' \"x\"\nthree\"\"\"\nb = 1\n");
        assert_eq!(
            conf.get("a").map(|e| e.value.clone()),
            Some(Value::String("one\n'two' \"x\"\nthree".into()))
        );
        assert_eq!(conf.get("b").map(|e| e.pos.line), Some(4));
    }

    #[test]
    fn empty_string_is_accepted() {
        assert_eq!(value("a = \"\"", "a"), Value::String(String::new()));
    }

    #[test]
    fn utf8_string_is_accepted() {
        assert_eq!(
            value("a = \"héllo ✓\"", "a"),
            Value::String("héllo ✓".into())
        );
    }

    #[test]
    fn unsigned_signed_and_plus_numbers_parse() {
        let conf =
            parse("a = 42\nb = -5\nc = +7\nd = 18446744073709551615\ne = -9223372036854775808\n");
        let get = |k: &str| conf.get(k).map(|e| e.value.clone());
        assert_eq!(get("a"), Some(Value::Unsigned(42)));
        assert_eq!(get("b"), Some(Value::Signed(-5)));
        assert_eq!(get("c"), Some(Value::Unsigned(7)));
        assert_eq!(get("d"), Some(Value::Unsigned(u64::MAX)));
        assert_eq!(get("e"), Some(Value::Signed(i64::MIN)));
    }

    #[test]
    fn number_too_large_is_out_of_range() {
        let (pos, msg, token) = parse_err("a = 18446744073709551616\n");
        assert_eq!((pos.line, pos.column, msg), (1, 5, "number out of range"));
        assert_eq!(token, "'18446744073709551616'");
        let (_, msg, _) = parse_err("a = -9223372036854775809\n");
        assert_eq!(msg, "number out of range");
    }

    #[test]
    fn sign_without_digits_is_unterminated_number() {
        let (pos, msg, _) = parse_err("a = -\n");
        assert_eq!((pos.column, msg), (5, "unterminated number"));
    }

    #[test]
    fn list_spans_lines_with_trailing_comma() {
        let v = value(
            "cgroup_device_acl = [\n    \"/dev/null\", \"/dev/full\",\n    \"/dev/kvm\",\n]\n",
            "cgroup_device_acl",
        );
        assert_eq!(strip(v), strs(&["/dev/null", "/dev/full", "/dev/kvm"]));
    }

    #[test]
    fn empty_list_parses() {
        assert_eq!(value("a = [ ]", "a"), Value::List(vec![]));
        assert_eq!(value("a = []", "a"), Value::List(vec![]));
    }

    #[test]
    fn list_items_carry_positions() {
        let v = value("a = [\n  \"x\",\n    \"y\" ]", "a");
        let Value::List(items) = v else {
            panic!("not a list")
        };
        let positions: Vec<_> = items.iter().map(|i| (i.pos.line, i.pos.column)).collect();
        assert_eq!(positions, vec![(2, 3), (3, 5)]);
    }

    #[test]
    fn comments_blank_lines_and_trailing_comments_are_skipped() {
        let conf = parse("# header\n\n   \n\t# indented\na = 1 # why\n\nb = \"x\"# tight\n");
        let keys: Vec<_> = conf.entries().iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, vec!["a", "b"]);
        assert_eq!(conf.get("b").map(|e| e.pos.line), Some(7));
    }

    #[test]
    fn semicolon_separates_statements_on_one_line() {
        let conf = parse("a = 1; b = 2\n");
        assert_eq!(conf.entries().len(), 2);
    }

    #[test]
    fn crlf_line_endings_are_accepted() {
        let conf = parse("a = 1\r\nb = [\r\n \"x\"\r\n]\r\n");
        assert_eq!(conf.get("b").map(|e| e.pos.line), Some(2));
    }

    #[test]
    fn empty_and_blank_files_have_no_entries() {
        assert!(parse("").entries().is_empty());
        assert!(parse("\n  \n\t\n").entries().is_empty());
        assert!(parse("# only a comment").entries().is_empty());
    }

    #[test]
    fn last_line_without_newline_is_accepted() {
        assert_eq!(value("a = 1", "a"), Value::Unsigned(1));
    }

    #[test]
    fn first_of_duplicate_keys_wins_as_in_libvirt() {
        let conf = parse("a = 1\na = 2\n");
        assert_eq!(
            conf.get("a").map(|e| e.value.clone()),
            Some(Value::Unsigned(1))
        );
        assert_eq!(conf.entries().len(), 2);
    }

    #[test]
    fn positions_of_key_and_value_are_recorded() {
        let conf = parse("\n  vnc_tls =  1\n");
        let e = conf.get("vnc_tls").cloned();
        assert_eq!(
            e.map(|e| (e.pos, e.value_pos)),
            Some((
                Position { line: 2, column: 3 },
                Position {
                    line: 2,
                    column: 14
                }
            ))
        );
    }

    #[test]
    fn unquoted_word_is_expecting_a_value_with_token() {
        let (pos, msg, token) = parse_err("a = 1\nvnc_listen = 0.0.0.0x\n");
        assert_eq!((pos.line, pos.column), (2, 15));
        // '0' starts a number; the error is the text after it.
        assert_eq!(msg, "expecting a separator");
        assert_eq!(token, "'.0.0.0x'");
        let (pos, msg, token) = parse_err("user = qemu\n");
        assert_eq!((pos.line, pos.column, msg), (1, 8, "expecting a value"));
        assert_eq!(token, "'qemu'");
    }

    #[test]
    fn missing_assignment_is_reported() {
        let (pos, msg, token) = parse_err("vnc_tls 1\n");
        assert_eq!(
            (pos.column, msg, token.as_str()),
            (9, "expecting an assignment", "'1'")
        );
    }

    #[test]
    fn name_must_start_with_a_letter() {
        let (pos, msg, token) = parse_err("_x = 1\n");
        assert_eq!(
            (pos.column, msg, token.as_str()),
            (1, "expecting a name", "'_x'")
        );
    }

    #[test]
    fn missing_value_at_end_of_line_is_reported() {
        let (pos, msg, token) = parse_err("a =\nb = 1\n");
        assert_eq!((pos.line, pos.column, msg), (1, 4, "expecting a value"));
        assert_eq!(token, "end of line");
        let (_, msg, token) = parse_err("a = ");
        assert_eq!((msg, token.as_str()), ("expecting a value", "end of file"));
    }

    #[test]
    fn unterminated_string_points_at_its_opening_quote() {
        let (pos, msg, token) = parse_err("a = 1\nb = \"abc\nc = 2\n");
        assert_eq!((pos.line, pos.column, msg), (2, 5, "unterminated string"));
        assert_eq!(token, "'\"abc'");
        let (pos, msg, _) = parse_err("b = \"\"\"abc\n\n");
        assert_eq!((pos.line, msg), (1, "unterminated string"));
    }

    #[test]
    fn unclosed_list_points_at_its_bracket() {
        let (pos, msg, _) = parse_err("a = [\n \"x\",\n \"y\"\n");
        assert_eq!(
            (pos.line, pos.column, msg),
            (1, 5, "list is not closed with ]")
        );
    }

    #[test]
    fn missing_comma_in_list_is_reported() {
        let (pos, msg, token) = parse_err("a = [ \"x\" \"y\" ]\n");
        assert_eq!((pos.column, msg), (11, "expecting a separator in list"));
        assert_eq!(token, "'\"y\"'");
    }

    #[test]
    fn comment_inside_list_is_rejected_as_in_libvirt() {
        let (pos, msg, _) = parse_err("a = [ \"x\", # no\n \"y\" ]\n");
        assert_eq!((pos.line, msg), (1, "expecting a value"));
    }

    #[test]
    fn nested_lists_parse_but_depth_is_bounded() {
        assert!(ConfFile::parse_str("t", "a = [[1], [2]]").is_ok());
        let deep = format!("a = {}", "[".repeat(100_000));
        let (_, msg, _) = parse_err(&deep);
        assert_eq!(msg, "lists nested too deeply");
    }

    #[test]
    fn garbage_after_value_needs_a_separator() {
        let (pos, msg, token) = parse_err("a = \"x\" b = 2\n");
        assert_eq!(
            (pos.column, msg, token.as_str()),
            (9, "expecting a separator", "'b'")
        );
    }

    #[test]
    fn column_counts_characters_not_bytes() {
        let (pos, _, _) = parse_err("a = \"é\" x\n");
        assert_eq!(pos.column, 9);
    }

    #[test]
    fn invalid_utf8_in_string_is_an_error_not_a_panic() {
        let text = b"a = \"\xff\"\n";
        let err = ConfFile::parse("t", text).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("configuration file syntax error: t:1:6: invalid UTF-8 in string, found '\u{FFFD}\"'")
        );
    }

    #[test]
    fn invalid_utf8_in_comment_is_ignored() {
        assert!(ConfFile::parse("t", b"# \xff\xfe\na = 1\n").is_ok());
    }

    #[test]
    fn error_message_names_file_line_column_and_token() {
        let err = ConfFile::parse_str("/etc/libvirt/qemu.conf", "a = 1\nb = =\n")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("configuration file syntax error: /etc/libvirt/qemu.conf:2:5: expecting a value, found '='")
        );
    }

    #[test]
    fn long_token_is_shortened() {
        let (_, _, token) = parse_err(&format!("a = {}\n", "z".repeat(100)));
        assert_eq!(token, format!("'{}...'", "z".repeat(24)));
    }

    #[test]
    fn read_missing_file_names_the_path() {
        let err = ConfFile::read(Path::new("/nonexistent/qvisor-test/qemu.conf"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("Failed to open file '/nonexistent/qvisor-test/qemu.conf': "),
            "{err}"
        );
    }

    #[test]
    fn read_file_uses_path_as_origin() {
        let dir = std::env::temp_dir().join(format!("qvisor-conf-parser-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("x.conf");
        let _ = std::fs::write(&path, "a = \n");
        let err = ConfFile::read(&path).err().map(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            err,
            Some(format!(
                "configuration file syntax error: {}:1:5: expecting a value, found end of line",
                path.display()
            ))
        );
    }

    #[test]
    fn libvirt_sample_qemu_conf_parses() {
        let text = include_str!("../testdata/qemu.conf.sample");
        let conf = parse(text);
        assert!(conf.entries().len() > 80, "{}", conf.entries().len());
    }

    /// A small deterministic generator (xorshift64*), so the property test
    /// needs no extra crate and fails reproducibly.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Bytes that exercise the grammar more than uniform noise does.
    const ALPHABET: &[u8] = b"ab_z09 \t\n\r#=;,[]\"'+-\\\xc3\xa9\xff";

    #[test]
    fn random_input_never_panics_and_errors_point_inside_the_text() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let seed_text = include_bytes!("../testdata/qemu.conf.sample");
        for round in 0..20_000 {
            let text: Vec<u8> = if round % 2 == 0 {
                // Pure noise over a grammar-heavy alphabet.
                let len = rng.below(64);
                (0..len)
                    .map(|_| {
                        ALPHABET
                            .get(rng.below(ALPHABET.len()))
                            .copied()
                            .unwrap_or(b'a')
                    })
                    .collect()
            } else {
                // A slice of a real file with a few bytes mutated.
                let start = rng.below(seed_text.len());
                let len = rng.below(400);
                let mut t: Vec<u8> = seed_text.iter().skip(start).take(len).copied().collect();
                for _ in 0..rng.below(4) {
                    let at = rng.below(t.len());
                    if let Some(b) = t.get_mut(at) {
                        *b = ALPHABET
                            .get(rng.below(ALPHABET.len()))
                            .copied()
                            .unwrap_or(b'a');
                    }
                }
                t
            };
            match ConfFile::parse("fuzz", &text) {
                Ok(conf) => {
                    for e in conf.entries() {
                        assert!(e.pos.line >= 1 && e.pos.column >= 1);
                    }
                }
                Err(Error::Syntax { pos, .. }) => {
                    let lines = text.iter().filter(|&&b| b == b'\n').count() + 1;
                    assert!(
                        pos.line >= 1 && (pos.line as usize) <= lines,
                        "{pos} in {text:?}"
                    );
                    assert!(pos.column >= 1);
                }
                Err(e) => panic!("unexpected error kind {e}"),
            }
        }
    }

    #[test]
    fn valid_generated_files_round_trip_their_values() {
        let mut rng = Rng(42);
        for _ in 0..2_000 {
            let n = rng.below(6);
            let mut text = String::new();
            let mut expect = Vec::new();
            for i in 0..n {
                let (src, v) = match rng.below(4) {
                    0 => {
                        let x = rng.next();
                        (x.to_string(), Value::Unsigned(x))
                    }
                    1 => {
                        let x = -((rng.next() >> 2) as i64);
                        (x.to_string(), Value::Signed(x))
                    }
                    2 => {
                        let s: String = (0..rng.below(10))
                            .map(|_| char::from(b"ab \\'#,[]=;"[rng.below(11)]))
                            .collect();
                        (format!("\"{s}\""), Value::String(s))
                    }
                    _ => ("[ \"x\",\n  \"y\", ]".to_owned(), strs(&["x", "y"])),
                };
                text.push_str(&format!("k{i} = {src}\n# c\n\n"));
                expect.push((format!("k{i}"), v));
            }
            let conf = parse(&text);
            let got: Vec<_> = conf
                .entries()
                .iter()
                .map(|e| (e.key.clone(), strip(e.value.clone())))
                .collect();
            assert_eq!(got, expect, "{text}");
        }
    }
}
