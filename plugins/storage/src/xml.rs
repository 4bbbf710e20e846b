//! A small XML tree for pool, volume and domain documents, read with
//! `xml-rs`, and the escaping the formatters need.

use xml::reader::{ParserConfig, XmlEvent};

/// Deepest nesting accepted (libvirt's parser stops at 256 too).
const MAX_DEPTH: usize = 256;

/// One element: name, attributes, child elements and trimmed text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name.
    pub name: String,
    /// Attributes in document order.
    pub attrs: Vec<(String, String)>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Text content, trimmed (empty when there is none).
    pub text: String,
}

impl Element {
    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Follows a `/`-separated path of child names.
    pub fn at(&self, path: &str) -> Option<&Element> {
        path.split('/').try_fold(self, |e, step| e.child(step))
    }

    /// The text of the element at `path`, when present and not empty.
    pub fn text_at(&self, path: &str) -> Option<&str> {
        self.at(path)
            .map(|e| e.text.as_str())
            .filter(|t| !t.is_empty())
    }
}

/// Parses a document into its root element. `what` names the document in
/// errors, as libvirt does (`(storage_pool_definition)`).
pub fn parse(text: &str, what: &str) -> Result<Element, String> {
    let mut config = ParserConfig::new()
        .ignore_comments(true)
        .cdata_to_characters(true)
        .coalesce_characters(true)
        .trim_whitespace(true);
    config.max_entity_expansion_length = 100_000;
    config.max_entity_expansion_depth = 4;
    config.max_data_length = 16 * 1024 * 1024;
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    for event in config.create_reader(text.as_bytes()) {
        let event = event.map_err(|e| format!("{what}:{e}"))?;
        match event {
            XmlEvent::StartElement {
                name, attributes, ..
            } => {
                if root.is_some() {
                    return Err(format!("{what}: extra content at the end of the document"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("{what}: document nesting too deep"));
                }
                stack.push(Element {
                    name: name.local_name,
                    attrs: attributes
                        .into_iter()
                        .map(|a| (a.name.local_name, a.value))
                        .collect(),
                    ..Element::default()
                });
            }
            XmlEvent::EndElement { .. } => {
                let Some(done) = stack.pop() else {
                    return Err(format!("{what}: unbalanced end tag"));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            XmlEvent::Characters(t) => {
                if let Some(e) = stack.last_mut() {
                    e.text.push_str(t.trim());
                }
            }
            _ => {}
        }
    }
    root.ok_or_else(|| format!("{what}: no root element"))
}

/// Escapes text for an attribute value or element content.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_attributes_children_and_trimmed_text() {
        let e = parse(
            "<pool type='dir'><name> p </name><target><path>/x</path></target></pool>",
            "t",
        )
        .unwrap();
        assert_eq!(e.attr("type"), Some("dir"));
        assert_eq!(e.text_at("name"), Some("p"));
        assert_eq!(e.text_at("target/path"), Some("/x"));
        assert!(e.text_at("target/none").is_none());
    }

    #[test]
    fn malformed_document_is_an_error_naming_it() {
        let err = parse("<pool><name>x</pool>", "(storage_pool_definition)").unwrap_err();
        assert!(err.starts_with("(storage_pool_definition)"), "{err}");
    }

    #[test]
    fn escape_covers_markup_characters() {
        assert_eq!(escape("a<b>&'\""), "a&lt;b&gt;&amp;&apos;&quot;");
    }
}
