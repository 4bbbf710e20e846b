//! Typed argument values: [`Props`] (a QAPI object, the argument of
//! `-device`, `-object`, `-blockdev`, `-netdev`, `-audiodev`) and
//! [`Keyval`] (QEMU's legacy `key=value,...` syntax of `-machine`, `-smp`,
//! `-chardev`, ...).
//!
//! A value is built once, typed; whether it reaches QEMU as JSON or as
//! keyval is decided when rendering (see [`crate::model`]).

use serde_json::{Map, Value};

/// An ordered JSON object of QEMU properties.
///
/// The builder methods mirror libvirt's `virJSONValueObjectAdd` conventions:
/// `opt_*` skip absent values, `nz_*` skip zero, so the call sites read like
/// the property list of the device.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Props(Map<String, Value>);

impl Props {
    /// An empty object.
    pub fn new() -> Self {
        Props(Map::new())
    }

    /// Sets `key` to any JSON value.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.to_string(), value.into());
        self
    }

    /// Sets `key` when `value` is present.
    pub fn opt<V: Into<Value>>(mut self, key: &str, value: Option<V>) -> Self {
        if let Some(v) = value {
            self.0.insert(key.to_string(), v.into());
        }
        self
    }

    /// Sets an unsigned number unless it is zero (libvirt's `p:`/`P:`).
    pub fn nz(self, key: &str, value: u64) -> Self {
        if value == 0 {
            self
        } else {
            self.with(key, value)
        }
    }

    /// Sets `key` to `true` only when `value` is true (libvirt's `B:`).
    pub fn flag(self, key: &str, value: bool) -> Self {
        if value {
            self.with(key, true)
        } else {
            self
        }
    }

    /// Sets `key` in place.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.0.insert(key.to_string(), value.into());
    }

    /// Sets `key` in place when present.
    pub fn set_opt<V: Into<Value>>(&mut self, key: &str, value: Option<V>) {
        if let Some(v) = value {
            self.set(key, v);
        }
    }

    /// Appends all properties of `other` (later keys win).
    pub fn extend(&mut self, other: Props) {
        for (k, v) in other.0 {
            self.0.insert(k, v);
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The string value of `key`.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.0.shift_remove(key)
    }

    /// True when there is no property.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The object as a JSON value.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }

    /// The underlying map.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Compact JSON text, as QEMU's JSON option syntax takes it.
    pub fn to_json(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }

    /// QEMU's keyval text with `lead` (e.g. `driver`) written first as a bare
    /// word, the way libvirt's `virQEMUBuildCommandLineJSON` converts an
    /// object for a QEMU without JSON option syntax.
    pub fn to_keyval(&self, lead: &str, arrays: ArrayStyle) -> String {
        let mut out = String::new();
        if let Some(v) = self.0.get(lead) {
            out.push_str(&scalar_text(v));
            out.push(',');
        }
        for (k, v) in &self.0 {
            if k == lead {
                continue;
            }
            keyval_recurse(k, v, arrays, &mut out);
        }
        if out.ends_with(',') {
            out.pop();
        }
        out
    }
}

impl From<Props> for Value {
    fn from(p: Props) -> Value {
        p.into_value()
    }
}

/// How arrays are spelled in keyval syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayStyle {
    /// Numbers as ranges: `host-nodes=0-3,host-nodes=5` (objects).
    Bitmap,
    /// `key.0.x=..,key.1.x=..` (nested structures).
    Numbered,
    /// Repeated key: `key=a,key=b`.
    Repeated,
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "on".into(),
        Value::Bool(false) => "off".into(),
        other => other.to_string(),
    }
}

fn keyval_recurse(key: &str, v: &Value, arrays: ArrayStyle, out: &mut String) {
    match v {
        Value::Object(m) => {
            for (k, sub) in m {
                keyval_recurse(&format!("{key}.{k}"), sub, arrays, out);
            }
        }
        Value::Array(items) => match arrays {
            ArrayStyle::Bitmap if items.iter().all(Value::is_u64) => {
                let nums: Vec<u64> = items.iter().filter_map(Value::as_u64).collect();
                for (a, b) in ranges(&nums) {
                    if a == b {
                        out.push_str(&format!("{key}={a},"));
                    } else {
                        out.push_str(&format!("{key}={a}-{b},"));
                    }
                }
            }
            ArrayStyle::Numbered => {
                for (i, item) in items.iter().enumerate() {
                    keyval_recurse(&format!("{key}.{i}"), item, arrays, out);
                }
            }
            _ => {
                for item in items {
                    keyval_recurse(key, item, arrays, out);
                }
            }
        },
        Value::Null => {}
        Value::String(s) => {
            out.push_str(key);
            out.push('=');
            out.push_str(&escape_comma(s));
            out.push(',');
        }
        other => {
            out.push_str(key);
            out.push('=');
            out.push_str(&scalar_text(other));
            out.push(',');
        }
    }
}

fn ranges(nums: &[u64]) -> Vec<(u64, u64)> {
    let mut sorted = nums.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for n in sorted {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == n => *end = n,
            _ => out.push((n, n)),
        }
    }
    out
}

/// Doubles commas, QEMU's escape inside keyval values.
pub fn escape_comma(s: &str) -> String {
    s.replace(',', ",,")
}

/// One item of a keyval argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvItem {
    /// A bare word written as is (`pc`, `+vmx`, `base=utc` heads).
    Bare(String),
    /// `key=value`, the value comma-escaped when rendered.
    Pair(String, String),
}

/// QEMU's `a,key=value,...` option syntax, built item by item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Keyval(pub Vec<KvItem>);

impl Keyval {
    /// Starts with a bare word (`-machine pc`, `-smp 2`).
    pub fn head(word: impl Into<String>) -> Self {
        Keyval(vec![KvItem::Bare(word.into())])
    }

    /// An empty list (the first item is a pair).
    pub fn new() -> Self {
        Keyval(Vec::new())
    }

    /// Appends `key=value`.
    pub fn kv(mut self, key: &str, value: impl ToString) -> Self {
        self.0
            .push(KvItem::Pair(key.to_string(), value.to_string()));
        self
    }

    /// Appends `key=value` when present.
    pub fn kv_opt<T: ToString>(self, key: &str, value: Option<T>) -> Self {
        match value {
            Some(v) => self.kv(key, v),
            None => self,
        }
    }

    /// Appends `key=on|off`.
    pub fn onoff(self, key: &str, value: bool) -> Self {
        self.kv(key, if value { "on" } else { "off" })
    }

    /// Appends a bare word.
    pub fn bare(mut self, word: impl Into<String>) -> Self {
        self.0.push(KvItem::Bare(word.into()));
        self
    }

    /// In-place `key=value`.
    pub fn push(&mut self, key: &str, value: impl ToString) {
        self.0
            .push(KvItem::Pair(key.to_string(), value.to_string()));
    }

    /// In-place bare word.
    pub fn push_bare(&mut self, word: impl Into<String>) {
        self.0.push(KvItem::Bare(word.into()));
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text QEMU parses.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match item {
                KvItem::Bare(w) => out.push_str(w),
                KvItem::Pair(k, v) => {
                    out.push_str(k);
                    out.push('=');
                    out.push_str(&escape_comma(v));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyval_escapes_commas_in_values_only() {
        let kv = Keyval::head("pc").kv("path", "/a,b").onoff("usb", false);
        assert_eq!(kv.render(), "pc,path=/a,,b,usb=off");
    }

    #[test]
    fn props_convert_to_keyval_with_lead_and_bitmap_ranges() {
        let p = Props::new()
            .with("qom-type", "memory-backend-ram")
            .with("id", "ram-node0")
            .with("host-nodes", serde_json::json!([0, 1, 2, 5]))
            .with("prealloc", true);
        assert_eq!(
            p.to_keyval("qom-type", ArrayStyle::Bitmap),
            "memory-backend-ram,id=ram-node0,host-nodes=0-2,host-nodes=5,prealloc=on"
        );
    }

    #[test]
    fn props_skip_zero_and_absent_values() {
        let p = Props::new()
            .nz("a", 0)
            .opt::<u64>("b", None)
            .flag("c", false);
        assert!(p.is_empty());
    }
}
