//! A minimal element tree over the `xml` crate's pull parser, enough for
//! libvirt's cache and capability documents (no mixed content).

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

use xml::reader::{ParserConfig, XmlEvent};

/// One XML element: name, attributes in document order, child elements and
/// the concatenated, trimmed text directly inside it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Element name (with its prefix, if any, as `prefix:name`).
    pub name: String,
    /// Attributes in document order.
    pub attrs: Vec<(String, String)>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Text content (trimmed).
    pub text: String,
}

impl Element {
    /// A new element without attributes or content.
    pub fn new(name: impl Into<String>) -> Self {
        Element {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// First child element called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All child elements called `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Text of the first child called `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// Writes the element, indented by `indent` spaces, in libvirt's style
    /// (single-quoted attributes, two-space indentation, empty elements closed
    /// with `/>`).
    pub fn write_to(&self, out: &mut String, indent: usize) {
        let pad = " ".repeat(indent);
        let _ = write!(out, "{pad}<{}", self.name);
        for (k, v) in &self.attrs {
            let _ = write!(out, " {k}='{}'", escape(v));
        }
        if self.children.is_empty() && self.text.is_empty() {
            out.push_str("/>\n");
        } else if self.children.is_empty() {
            let _ = writeln!(out, ">{}</{}>", escape(&self.text), self.name);
        } else {
            out.push_str(">\n");
            if !self.text.is_empty() {
                let _ = writeln!(out, "{pad}  {}", escape(&self.text));
            }
            for c in &self.children {
                c.write_to(out, indent + 2);
            }
            let _ = writeln!(out, "{pad}</{}>", self.name);
        }
    }
}

/// A byte count in the largest binary unit that holds it exactly, as
/// libvirt prints sizes (`virFormatIntPretty`): (value, unit).
pub fn format_int_pretty(bytes: u64) -> (u64, &'static str) {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes;
    let mut i = 0;
    while i + 1 < UNITS.len() && v != 0 && v % 1024 == 0 {
        v /= 1024;
        i += 1;
    }
    (v, UNITS[i])
}

/// Escapes text for use in content or a single- or double-quoted attribute,
/// as libvirt's `virBufferEscapeString` does.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['<', '>', '&', '\'', '"']) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Parses a document into its root element. Errors are returned as text; a
/// panic inside the parser (the `xml` crate documents that it may panic) is
/// caught and reported as an error too.
pub fn parse(input: &str) -> Result<Element, String> {
    match catch_unwind(AssertUnwindSafe(|| parse_inner(input))) {
        Ok(r) => r,
        Err(_) => Err("XML parser failed on malformed input".to_string()),
    }
}

fn parse_inner(input: &str) -> Result<Element, String> {
    let mut cfg = ParserConfig::new();
    cfg.trim_whitespace = true;
    cfg.cdata_to_characters = true;
    cfg.ignore_comments = true;
    cfg.coalesce_characters = true;
    let reader = cfg.create_reader(input.as_bytes());
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    for ev in reader {
        match ev.map_err(|e| e.to_string())? {
            XmlEvent::StartElement {
                name, attributes, ..
            } => {
                if root.is_some() {
                    return Err("content after the root element".to_string());
                }
                let mut el = Element::new(qualified(&name.prefix, &name.local_name));
                el.attrs = attributes
                    .into_iter()
                    .map(|a| (qualified(&a.name.prefix, &a.name.local_name), a.value))
                    .collect();
                stack.push(el);
            }
            XmlEvent::EndElement { .. } => {
                let el = stack.pop().ok_or("unbalanced end tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            XmlEvent::Characters(t) => {
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(t.trim());
                }
            }
            XmlEvent::EndDocument => break,
            _ => {}
        }
    }
    root.ok_or_else(|| "document has no root element".to_string())
}

fn qualified(prefix: &Option<String>, local: &str) -> String {
    match prefix {
        Some(p) if !p.is_empty() => format!("{p}:{local}"),
        _ => local.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_attributes_children_and_text() {
        let el =
            parse("<?xml version='1.0'?><a x='1'><!-- c --><b y=\"&lt;\">t &amp; u</b><c/></a>")
                .unwrap();
        assert_eq!(el.name, "a");
        assert_eq!(el.attr("x"), Some("1"));
        assert_eq!(el.child("b").unwrap().attr("y"), Some("<"));
        assert_eq!(el.child_text("b"), Some("t & u"));
        assert_eq!(el.children.len(), 2);
    }

    #[test]
    fn parse_rejects_garbage_without_panicking() {
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "</a>",
            "<a><b></a>",
            "\u{0}<",
            "<a x='1' x='2'/>",
            "<a/><b/>",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn write_escapes_and_indents() {
        let mut el = Element::new("a");
        el.attrs.push(("v".into(), "it's".into()));
        let mut b = Element::new("b");
        b.text = "x<y".into();
        el.children.push(b);
        let mut out = String::new();
        el.write_to(&mut out, 2);
        assert_eq!(out, "  <a v='it&apos;s'>\n    <b>x&lt;y</b>\n  </a>\n");
    }
}
