//! Queries into QEMU's QAPI schema (`query-qmp-schema`), with libvirt's
//! query syntax (`virQEMUQAPISchemaPathGet`):
//!
//! `command_or_event/attribute/subattribute/...` where `attribute` is
//! `arg-type` or `ret-type` and each further component is
//! - `name`: an object member (`*name`: one with a default, i.e. optional),
//! - `+variant`: a variant of a union,
//! - `^value`: an enum value (may be followed by `$feature`),
//! - `!type`: a builtin of that JSON type,
//! - `$feature`: a feature flag of the selected type (last component).
//!
//! Arrays are flattened; alternates are tried member by member.

use std::collections::HashMap;

use serde_json::Value;

/// The schema indexed by entry name.
pub struct Schema<'a> {
    entries: HashMap<&'a str, &'a Value>,
}

#[derive(Debug, PartialEq, Eq)]
enum Found {
    Yes,
    No,
    /// Malformed schema or query: treated as "not found", as libvirt does.
    Bad,
}

struct Ctx<'q> {
    queries: &'q [&'q str],
    pos: usize,
    depth: usize,
}

impl<'q> Ctx<'q> {
    fn next(&mut self) -> &'q str {
        let q = self.queries.get(self.pos).copied().unwrap_or("");
        self.pos += 1;
        q
    }

    fn has_next(&self) -> bool {
        self.pos < self.queries.len()
    }
}

impl<'a> Schema<'a> {
    /// Indexes a `query-qmp-schema` reply (an array of entries with `name`).
    pub fn new(reply: &'a Value) -> Schema<'a> {
        let entries = reply
            .as_array()
            .map(|arr| {
                arr.iter()
                    .filter_map(|e| Some((e.get("name")?.as_str()?, e)))
                    .collect()
            })
            .unwrap_or_default();
        Schema { entries }
    }

    /// Whether the query path exists in the schema.
    pub fn path_exists(&self, query: &str) -> bool {
        let parts: Vec<&str> = query.split('/').collect();
        let Some((&cmd, _)) = parts.split_first() else {
            return false;
        };
        if !self.entries.contains_key(cmd) {
            return false;
        }
        let mut ctx = Ctx {
            queries: &parts,
            pos: 1,
            depth: 0,
        };
        self.traverse(cmd, &mut ctx) == Found::Yes
    }

    fn traverse(&self, name: &str, ctx: &mut Ctx<'_>) -> Found {
        ctx.depth += 1;
        if ctx.depth > 1000 {
            return Found::Bad;
        }
        let Some(cur) = self.entries.get(name).copied() else {
            return Found::Bad;
        };
        if !ctx.has_next() {
            return Found::Yes;
        }
        match cur.get("meta-type").and_then(Value::as_str) {
            Some("object") => self.object(cur, ctx),
            Some("array") => match cur.get("element-type").and_then(Value::as_str) {
                Some(t) => self.traverse(t, ctx),
                None => Found::Bad,
            },
            Some("command") | Some("event") => self.command(cur, ctx),
            Some("enum") => enumeration(cur, ctx),
            Some("builtin") => builtin(cur, ctx),
            Some("alternate") => self.alternate(cur, ctx),
            Some(_) => Found::No,
            None => Found::Bad,
        }
    }

    fn object(&self, cur: &Value, ctx: &mut Ctx<'_>) -> Found {
        let query = ctx.next();
        let (modifier, name) = split_modifier(query);
        match modifier {
            Some('^') | Some('!') => return Found::No,
            Some('$') => {
                if ctx.has_next() {
                    return Found::Bad;
                }
                return has_feature(name, cur);
            }
            _ => {}
        }
        let member = if modifier == Some('+') {
            find_in(cur, "variants", "case", name)
        } else {
            let m = find_in(cur, "members", "name", name);
            if modifier == Some('*') && m.is_none_or(|m| m.get("default").is_none()) {
                return Found::No;
            }
            m
        };
        match member.and_then(|m| m.get("type")).and_then(Value::as_str) {
            Some(t) => self.traverse(t, ctx),
            None if member.is_some() => Found::Bad,
            None => Found::No,
        }
    }

    fn command(&self, cur: &Value, ctx: &mut Ctx<'_>) -> Found {
        let query = ctx.next();
        let (modifier, name) = split_modifier(query);
        match modifier {
            Some('^') | Some('!') | Some('+') | Some('*') => Found::No,
            Some('$') => {
                if ctx.has_next() {
                    Found::Bad
                } else {
                    has_feature(name, cur)
                }
            }
            _ => match cur.get(name).and_then(Value::as_str) {
                Some(t) => self.traverse(t, ctx),
                None => Found::No,
            },
        }
    }

    fn alternate(&self, cur: &Value, ctx: &mut Ctx<'_>) -> Found {
        let Some(members) = cur.get("members").and_then(Value::as_array) else {
            return Found::Bad;
        };
        let (pos, depth) = (ctx.pos, ctx.depth);
        for m in members {
            let Some(t) = m.get("type").and_then(Value::as_str) else {
                continue;
            };
            ctx.pos = pos;
            ctx.depth = depth;
            match self.traverse(t, ctx) {
                Found::No => {}
                other => return other,
            }
        }
        Found::No
    }
}

/// Splits a leading non-alphabetic modifier from a query component.
fn split_modifier(query: &str) -> (Option<char>, &str) {
    match query.chars().next() {
        Some(c) if !c.is_ascii_alphabetic() => (Some(c), &query[c.len_utf8()..]),
        _ => (None, query),
    }
}

fn find_in<'v>(cur: &'v Value, field: &str, key: &str, name: &str) -> Option<&'v Value> {
    cur.get(field)?
        .as_array()?
        .iter()
        .find(|e| e.get(key).and_then(Value::as_str) == Some(name))
}

fn has_feature(feature: &str, cur: &Value) -> Found {
    let Some(features) = cur.get("features").and_then(Value::as_array) else {
        return Found::No;
    };
    for f in features {
        match f.as_str() {
            Some(s) if s == feature => return Found::Yes,
            Some(_) => {}
            None => return Found::Bad,
        }
    }
    Found::No
}

fn enumeration(cur: &Value, ctx: &mut Ctx<'_>) -> Found {
    let query = ctx.next();
    let Some(value) = query.strip_prefix('^') else {
        return Found::No;
    };
    let mut feature = None;
    if ctx.has_next() {
        let fq = ctx.next();
        match fq.strip_prefix('$') {
            Some(f) if !ctx.has_next() => feature = Some(f),
            _ => return Found::Bad,
        }
    }
    if let Some(members) = cur.get("members").and_then(Value::as_array) {
        for m in members {
            let Some(name) = m.get("name").and_then(Value::as_str) else {
                return Found::Bad;
            };
            if name == value {
                return match feature {
                    Some(f) => has_feature(f, m),
                    None => Found::Yes,
                };
            }
        }
        return Found::No;
    }
    if feature.is_some() {
        return Found::No;
    }
    let Some(values) = cur.get("values").and_then(Value::as_array) else {
        return Found::Bad;
    };
    if values.iter().any(|v| v.as_str() == Some(value)) {
        Found::Yes
    } else {
        Found::No
    }
}

fn builtin(cur: &Value, ctx: &mut Ctx<'_>) -> Found {
    let query = ctx.next();
    let Some(ty) = query.strip_prefix('!') else {
        return Found::No;
    };
    if ctx.has_next() {
        return Found::Bad;
    }
    match cur.get("json-type").and_then(Value::as_str) {
        Some(t) if t == ty => Found::Yes,
        Some(_) => Found::No,
        None => Found::Bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!([
            {"name": "blockdev-add", "meta-type": "command", "arg-type": "0", "ret-type": "1",
             "features": ["json-cli"]},
            {"name": "0", "meta-type": "object", "members": [
                {"name": "driver", "type": "2"}, {"name": "node-name", "type": "str", "default": null}],
             "tag": "driver", "variants": [{"case": "file", "type": "3"}]},
            {"name": "1", "meta-type": "object", "members": []},
            {"name": "2", "meta-type": "enum", "values": ["file", "nvme"]},
            {"name": "3", "meta-type": "object", "members": [{"name": "aio", "type": "4"},
                {"name": "opts", "type": "5"}]},
            {"name": "4", "meta-type": "enum", "members": [{"name": "threads"},
                {"name": "io_uring", "features": ["unstable"]}]},
            {"name": "5", "meta-type": "alternate", "members": [{"type": "str"}, {"type": "6"}]},
            {"name": "6", "meta-type": "array", "element-type": "7"},
            {"name": "7", "meta-type": "object", "members": [{"name": "deep", "type": "int"}]},
            {"name": "str", "meta-type": "builtin", "json-type": "string"},
            {"name": "int", "meta-type": "builtin", "json-type": "int"}
        ])
    }

    #[test]
    fn queries_follow_libvirt_syntax() {
        let v = schema();
        let s = Schema::new(&v);
        for (q, want) in [
            ("blockdev-add", true),
            ("nope", false),
            ("blockdev-add/arg-type/+file/aio/^io_uring", true),
            ("blockdev-add/arg-type/+file/aio/^io_uring/$unstable", true),
            ("blockdev-add/arg-type/+file/aio/^native", false),
            ("blockdev-add/arg-type/+nvme", false),
            ("blockdev-add/arg-type/driver/^nvme", true),
            ("blockdev-add/arg-type/*node-name", true),
            ("blockdev-add/arg-type/*driver", false),
            ("blockdev-add/$json-cli", true),
            ("blockdev-add/$other", false),
            ("blockdev-add/arg-type/+file/opts/deep", true),
            ("blockdev-add/arg-type/+file/opts/!string", true),
            ("blockdev-add/arg-type/node-name/!string", true),
            ("blockdev-add/arg-type/node-name/!int", false),
            ("blockdev-add/ret-type/missing", false),
        ] {
            assert_eq!(s.path_exists(q), want, "{q}");
        }
    }

    #[test]
    fn self_referencing_schema_does_not_loop() {
        let v = json!([
            {"name": "c", "meta-type": "command", "arg-type": "o"},
            {"name": "o", "meta-type": "alternate", "members": [{"type": "o"}]}
        ]);
        assert!(!Schema::new(&v).path_exists("c/arg-type/x"));
    }
}
