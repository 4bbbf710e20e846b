//! A small owned XML tree: the common currency between the typed model and text.
//!
//! The typed parsers *consume* an [`Element`] (taking the attributes and
//! children they understand), so whatever is left over is, by construction,
//! the part of the document the model does not type yet. That residue is kept
//! and written back, so nothing a user wrote is lost on a round trip.
//!
//! The writer follows libvirt's layout: two-space indentation, single-quoted
//! attributes, `<a/>` for empty elements and text inline (`<name>x</name>`).

use std::fmt::Write as _;

use xml::reader::{ParserConfig, XmlEvent};

use crate::error::{Error, Result};

/// The namespace URI of the `qemu:` domain XML extension.
pub const QEMU_NS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";

/// Deepest element nesting accepted (libvirt's own parser limit is 256).
const MAX_DEPTH: usize = 256;

/// One XML element with its attributes, child elements and text.
///
/// Equality follows XML's data model: attribute order is not significant
/// (it only matters for output layout), child order is.
#[derive(Debug, Clone, Default)]
pub struct Element {
    /// Local name (without prefix).
    pub name: String,
    /// Namespace URI, `None` for the default (libvirt) namespace.
    pub ns: Option<String>,
    /// Prefix used in the source document, kept for output.
    pub prefix: Option<String>,
    /// Namespace declarations made on this element: (prefix, uri); prefix
    /// `None` is the default namespace.
    pub ns_decls: Vec<(Option<String>, String)>,
    /// Attributes in document order, names as written (`prefix:local` for
    /// prefixed attributes).
    pub attrs: Vec<(String, String)>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Text content (concatenated, not trimmed); `None` when there is none.
    pub text: Option<String>,
}

impl PartialEq for Element {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.ns == other.ns
            && self.prefix == other.prefix
            && self.ns_decls == other.ns_decls
            && self.attrs.len() == other.attrs.len()
            && self
                .attrs
                .iter()
                .all(|(n, v)| other.get_attr(n) == Some(v.as_str()))
            && self.text == other.text
            && self.children == other.children
    }
}

impl Eq for Element {}

impl Element {
    /// A new element in the default namespace.
    pub fn new(name: &str) -> Self {
        Element {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// A new element in namespace `ns` written with `prefix`.
    pub fn new_ns(name: &str, ns: &str, prefix: &str) -> Self {
        Element {
            name: name.to_string(),
            ns: Some(ns.to_string()),
            prefix: Some(prefix.to_string()),
            ..Default::default()
        }
    }

    /// Builder: add an attribute.
    pub fn attr(mut self, name: &str, value: impl ToString) -> Self {
        self.attrs.push((name.to_string(), value.to_string()));
        self
    }

    /// Builder: add an attribute when `value` is `Some`.
    pub fn attr_opt<T: ToString>(mut self, name: &str, value: Option<T>) -> Self {
        if let Some(v) = value {
            self.attrs.push((name.to_string(), v.to_string()));
        }
        self
    }

    /// Builder: add a child.
    pub fn child(mut self, child: Element) -> Self {
        self.children.push(child);
        self
    }

    /// Builder: add a child when present.
    pub fn child_opt(mut self, child: Option<Element>) -> Self {
        if let Some(c) = child {
            self.children.push(c);
        }
        self
    }

    /// Builder: set the text.
    pub fn text(mut self, text: impl ToString) -> Self {
        self.text = Some(text.to_string());
        self
    }

    /// Adds an attribute in place.
    pub fn push_attr(&mut self, name: &str, value: impl ToString) {
        self.attrs.push((name.to_string(), value.to_string()));
    }

    /// Adds an attribute in place when present.
    pub fn push_attr_opt<T: ToString>(&mut self, name: &str, value: Option<T>) {
        if let Some(v) = value {
            self.push_attr(name, v);
        }
    }

    /// Looks an attribute up by name.
    pub fn get_attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Removes and returns an attribute.
    pub fn take_attr(&mut self, name: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(n, _)| n == name)?;
        Some(self.attrs.remove(pos).1)
    }

    /// True when this element is in the default namespace and named `name`.
    pub fn is(&self, name: &str) -> bool {
        self.ns.is_none() && self.name == name
    }

    /// First child in the default namespace named `name`.
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(name))
    }

    /// Removes and returns the first child named `name` (default namespace),
    /// dropping any later ones: a singleton element read like libvirt's
    /// `virXPathNode("./name")`, which ignores repetitions.
    pub fn take_child(&mut self, name: &str) -> Option<Element> {
        self.take_children(name).into_iter().next()
    }

    /// Removes and returns all children named `name` (default namespace).
    pub fn take_children(&mut self, name: &str) -> Vec<Element> {
        let (taken, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.children)
            .into_iter()
            .partition(|c| c.is(name));
        self.children = kept;
        taken
    }

    /// Removes and returns all children in namespace `ns`.
    pub fn take_children_ns(&mut self, ns: &str) -> Vec<Element> {
        let (taken, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.children)
            .into_iter()
            .partition(|c| c.ns.as_deref() == Some(ns));
        self.children = kept;
        taken
    }

    /// The text with surrounding whitespace removed; `None` when empty.
    pub fn trimmed_text(&self) -> Option<&str> {
        self.text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// Takes the trimmed text out of the element.
    pub fn take_text(&mut self) -> Option<String> {
        let t = self.trimmed_text().map(str::to_string);
        self.text = None;
        t
    }

    /// True when nothing is left: no attributes, children or text.
    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty() && self.children.is_empty() && self.trimmed_text().is_none()
    }

    /// Stable-sorts the children by their position in `order` (names not in
    /// the table go last, in their current order).
    pub fn sort_children(&mut self, order: &[&str]) {
        self.children.sort_by_key(|c| {
            if c.ns.is_some() {
                return usize::MAX;
            }
            order
                .iter()
                .position(|n| *n == c.name)
                .unwrap_or(usize::MAX - 1)
        });
    }

    /// The element with its children in canonical (libvirt's output) order,
    /// as [`Element::merge_residue`] will write them: a residue stored this
    /// way compares equal however the source document ordered it.
    pub fn canonical(mut self, order: &[&str]) -> Self {
        self.sort_children(order);
        self
    }

    /// Appends what is left of a consumed element (its residue) to `self`:
    /// unknown attributes, then unknown children sorted into `order`.
    pub fn merge_residue(&mut self, residue: &Element, order: &[&str]) {
        for (n, v) in &residue.attrs {
            if self.get_attr(n).is_none() {
                self.attrs.push((n.clone(), v.clone()));
            }
        }
        if !residue.children.is_empty() {
            self.children.extend(residue.children.iter().cloned());
            self.sort_children(order);
        }
        if self.text.is_none() {
            if let Some(t) = residue.trimmed_text() {
                self.text = Some(t.to_string());
            }
        }
    }

    /// Qualified name for output.
    fn qname(&self) -> String {
        match &self.prefix {
            Some(p) if !p.is_empty() => format!("{p}:{}", self.name),
            _ => self.name.clone(),
        }
    }

    /// Writes the element in libvirt's layout at `indent` levels.
    pub fn write(&self, out: &mut String, indent: usize) {
        let pad = "  ".repeat(indent);
        let _ = write!(out, "{pad}<{}", self.qname());
        for (p, uri) in &self.ns_decls {
            match p {
                Some(p) => {
                    let _ = write!(out, " xmlns:{p}='{}'", escape(uri));
                }
                None => {
                    let _ = write!(out, " xmlns='{}'", escape(uri));
                }
            }
        }
        for (n, v) in &self.attrs {
            let _ = write!(out, " {n}='{}'", escape(v));
        }
        let text = self.text.as_deref().filter(|t| !t.trim().is_empty());
        if self.children.is_empty() {
            match text {
                Some(t) => {
                    let _ = writeln!(out, ">{}</{}>", escape_text(t), self.qname());
                }
                None => out.push_str("/>\n"),
            }
            return;
        }
        out.push_str(">\n");
        if let Some(t) = text {
            let _ = writeln!(out, "{pad}  {}", escape_text(t.trim()));
        }
        for c in &self.children {
            c.write(out, indent + 1);
        }
        let _ = writeln!(out, "{pad}</{}>", self.qname());
    }

    /// The element as a document fragment in libvirt's layout.
    pub fn to_xml_string(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, 0);
        s
    }
}

/// Escapes an attribute value for a single-quoted attribute.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '\'' => o.push_str("&apos;"),
            '"' => o.push_str("&quot;"),
            '\n' => o.push_str("&#10;"),
            c => o.push(c),
        }
    }
    o
}

fn escape_text(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '\'' => o.push_str("&apos;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

/// Parses a whole document into its root element.
pub fn parse_document(text: &str) -> Result<Element> {
    let config = ParserConfig::new()
        .ignore_comments(true)
        .cdata_to_characters(true)
        .coalesce_characters(true)
        .whitespace_to_characters(false)
        .trim_whitespace(false);
    let mut config = config;
    config.max_entity_expansion_length = 100_000;
    config.max_entity_expansion_depth = 4;
    config.max_data_length = 16 * 1024 * 1024;
    let reader = config.create_reader(text.as_bytes());
    let mut stack: Vec<(Element, Vec<(String, String)>)> = Vec::new();
    let mut root: Option<Element> = None;
    for ev in reader {
        let ev = ev.map_err(|e| Error::XmlSyntax(e.to_string()))?;
        match ev {
            XmlEvent::StartElement {
                name,
                attributes,
                namespace,
            } => {
                if root.is_some() {
                    return Err(Error::XmlSyntax(
                        "extra content at the end of the document".into(),
                    ));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(Error::XmlSyntax("document nesting too deep".into()));
                }
                let mappings: Vec<(String, String)> = namespace
                    .iter()
                    .filter(|(p, _)| *p != "xml" && *p != "xmlns")
                    .map(|(p, u)| (p.to_string(), u.to_string()))
                    .collect();
                let parent_maps = stack.last().map(|(_, m)| m.as_slice()).unwrap_or(&[]);
                let mut ns_decls = Vec::new();
                for (p, u) in &mappings {
                    if u.is_empty() {
                        continue;
                    }
                    if !parent_maps.iter().any(|(pp, pu)| pp == p && pu == u) {
                        let prefix = if p.is_empty() { None } else { Some(p.clone()) };
                        ns_decls.push((prefix, u.clone()));
                    }
                }
                let attrs = attributes
                    .into_iter()
                    .map(|a| {
                        let n = match a.name.prefix {
                            Some(p) => format!("{p}:{}", a.name.local_name),
                            None => a.name.local_name,
                        };
                        (n, a.value)
                    })
                    .collect();
                let el = Element {
                    name: name.local_name,
                    ns: name.namespace.filter(|n| !n.is_empty()),
                    prefix: name.prefix,
                    ns_decls,
                    attrs,
                    children: Vec::new(),
                    text: None,
                };
                stack.push((el, mappings));
            }
            XmlEvent::EndElement { .. } => {
                let Some((el, _)) = stack.pop() else {
                    return Err(Error::XmlSyntax("unbalanced end tag".into()));
                };
                match stack.last_mut() {
                    Some((parent, _)) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            XmlEvent::Characters(t) | XmlEvent::CData(t) | XmlEvent::Whitespace(t) => {
                if let Some((el, _)) = stack.last_mut() {
                    match &mut el.text {
                        Some(s) => s.push_str(&t),
                        None => el.text = Some(t),
                    }
                }
            }
            _ => {}
        }
    }
    let mut root = root.ok_or_else(|| Error::XmlSyntax("no root element".into()))?;
    normalise_text(&mut root);
    Ok(root)
}

/// Drops whitespace-only text (indentation) everywhere.
fn normalise_text(e: &mut Element) {
    if e.text.as_deref().is_some_and(|t| t.trim().is_empty()) {
        e.text = None;
    }
    for c in &mut e.children {
        normalise_text(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_namespaces_and_text() {
        let doc = "<domain xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\
                   <name> a&amp;b </name><qemu:commandline><qemu:arg value='-x'/></qemu:commandline></domain>";
        let root = parse_document(doc).unwrap();
        assert_eq!(root.name, "domain");
        assert_eq!(root.ns_decls, vec![(Some("qemu".into()), QEMU_NS.into())]);
        assert_eq!(root.find("name").unwrap().trimmed_text(), Some("a&b"));
        let cl = &root.children[1];
        assert_eq!(cl.ns.as_deref(), Some(QEMU_NS));
        assert_eq!(cl.children[0].get_attr("value"), Some("-x"));
    }

    #[test]
    fn write_uses_libvirt_layout() {
        let e = Element::new("a")
            .attr("x", "it's")
            .child(Element::new("b").text("t<"))
            .child(Element::new("c"));
        assert_eq!(
            e.to_xml_string(),
            "<a x='it&apos;s'>\n  <b>t&lt;</b>\n  <c/>\n</a>\n"
        );
    }

    #[test]
    fn equality_ignores_attribute_order_but_not_child_order() {
        let a = parse_document("<a x='1' y='2'><b/><c/></a>").unwrap();
        let b = parse_document("<a y='2' x='1'><b/><c/></a>").unwrap();
        let c = parse_document("<a x='1' y='2'><c/><b/></a>").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn malformed_document_is_an_error() {
        assert!(parse_document("<a><b></a>").is_err());
        assert!(parse_document("").is_err());
        assert!(parse_document("<a/><b/>").is_err());
    }
}
