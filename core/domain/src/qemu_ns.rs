//! The `qemu:` namespace (`http://libvirt.org/schemas/domain/qemu/1.0`):
//! pass-through arguments and environment, capability overrides,
//! deprecation behaviour and device property overrides.

use crate::common::StrEnum;
use crate::error::{Error, Result};
use crate::str_enum;
use crate::xml::{Element, QEMU_NS};

str_enum! {
    /// `<qemu:deprecation behavior=>`: what QEMU does with deprecated features.
    pub enum DeprecationBehavior { None = "none", Omit = "omit", Reject = "reject", Crash = "crash" }
}

/// `<qemu:env name= value=>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuEnv {
    /// Variable name (letters, digits, `_`; not starting with a digit).
    pub name: String,
    /// Value (`None` = set to the empty string).
    pub value: Option<String>,
}

/// A typed override value of `<qemu:property>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyValue {
    /// `type='string'`.
    String(String),
    /// `type='signed'`.
    Signed(i64),
    /// `type='unsigned'`.
    Unsigned(u64),
    /// `type='bool'` (`true`/`false`).
    Bool(bool),
    /// `type='remove'`: drop the property from the device.
    Remove,
}

impl PropertyValue {
    fn type_name(&self) -> &'static str {
        match self {
            PropertyValue::String(_) => "string",
            PropertyValue::Signed(_) => "signed",
            PropertyValue::Unsigned(_) => "unsigned",
            PropertyValue::Bool(_) => "bool",
            PropertyValue::Remove => "remove",
        }
    }

    fn value_string(&self) -> Option<String> {
        match self {
            PropertyValue::String(s) => Some(s.clone()),
            PropertyValue::Signed(v) => Some(v.to_string()),
            PropertyValue::Unsigned(v) => Some(v.to_string()),
            PropertyValue::Bool(b) => Some(b.to_string()),
            PropertyValue::Remove => None,
        }
    }
}

/// `<qemu:property>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyOverride {
    /// Property name (never `id`).
    pub name: String,
    /// New value.
    pub value: PropertyValue,
}

/// `<qemu:device alias=>` with its `<qemu:frontend>` properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceOverride {
    /// Alias of the device (`ua-...` or a libvirt-assigned alias).
    pub alias: String,
    /// Frontend (`-device`) property overrides, applied in order.
    pub frontend: Vec<PropertyOverride>,
}

/// Everything in the `qemu:` namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QemuNamespace {
    /// `<qemu:arg value=>`s, appended to the command line.
    pub args: Vec<String>,
    /// `<qemu:env>`s, added to QEMU's environment.
    pub env: Vec<QemuEnv>,
    /// `<qemu:add capability=>`.
    pub caps_add: Vec<String>,
    /// `<qemu:del capability=>`.
    pub caps_del: Vec<String>,
    /// `<qemu:deprecation behavior=>`.
    pub deprecation: Option<DeprecationBehavior>,
    /// `<qemu:override>`.
    pub overrides: Vec<DeviceOverride>,
}

fn parse_property(mut p: Element) -> Result<PropertyOverride> {
    let name = p
        .take_attr("name")
        .ok_or_else(|| Error::xml("missing 'name' attribute for qemu:property"))?;
    if name == "id" {
        return Err(Error::xml("property with name 'id' can't be overridden"));
    }
    let ty = p
        .take_attr("type")
        .ok_or_else(|| Error::missing("property", "type"))?;
    let value = p.take_attr("value");
    let bad = |v: &str| {
        Error::xml(format!(
            "invalid value '{v}' of 'value' attribute of 'qemu:property'"
        ))
    };
    let need = |v: Option<String>| {
        v.ok_or_else(|| Error::xml("missing 'value' attribute for 'qemu:property'"))
    };
    let value = match ty.as_str() {
        "string" => PropertyValue::String(need(value)?),
        "signed" => {
            let v = need(value)?;
            PropertyValue::Signed(v.parse::<i64>().map_err(|_| bad(&v))?)
        }
        "unsigned" => {
            let v = need(value)?;
            if v.trim_start().starts_with('-') {
                return Err(bad(&v));
            }
            PropertyValue::Unsigned(v.parse::<u64>().map_err(|_| bad(&v))?)
        }
        "bool" => {
            let v = need(value)?;
            match v.as_str() {
                "true" => PropertyValue::Bool(true),
                "false" => PropertyValue::Bool(false),
                _ => return Err(bad(&v)),
            }
        }
        "remove" => {
            if value.is_some() {
                return Err(Error::xml(
                    "setting 'value' attribute of 'qemu:property' doesn't make sense with 'remove' type",
                ));
            }
            PropertyValue::Remove
        }
        other => return Err(Error::invalid("property", "type", other)),
    };
    Ok(PropertyOverride { name, value })
}

fn validate_env_name(name: &str) -> Result<()> {
    let first = name.chars().next();
    if !first.is_some_and(|c| c.is_ascii_alphabetic() || c == '_') {
        return Err(Error::Internal(
            "Invalid environment name, it must begin with a letter or underscore".into(),
        ));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::Internal(
            "Invalid environment name, it must contain only alphanumerics and underscore".into(),
        ));
    }
    Ok(())
}

impl QemuNamespace {
    /// Takes the `qemu:` children out of `<domain>`.
    pub fn take(domain: &mut Element) -> Result<Self> {
        let mut ns = QemuNamespace::default();
        for el in domain.take_children_ns(QEMU_NS) {
            match el.name.as_str() {
                "commandline" => {
                    for c in el.children {
                        let mut c = c;
                        match c.name.as_str() {
                            "arg" => ns.args.push(c.take_attr("value").ok_or_else(|| {
                                Error::Internal("No qemu command-line argument specified".into())
                            })?),
                            "env" => {
                                let name = c.take_attr("name").ok_or_else(|| {
                                    Error::Internal("No qemu environment name specified".into())
                                })?;
                                validate_env_name(&name)?;
                                ns.env.push(QemuEnv {
                                    name,
                                    value: c.take_attr("value"),
                                });
                            }
                            _ => {}
                        }
                    }
                }
                "capabilities" => {
                    for c in el.children {
                        let mut c = c;
                        let cap = || Error::Internal("missing capability name".into());
                        match c.name.as_str() {
                            "add" => ns.caps_add.push(c.take_attr("capability").ok_or_else(cap)?),
                            "del" => ns.caps_del.push(c.take_attr("capability").ok_or_else(cap)?),
                            _ => {}
                        }
                    }
                }
                "deprecation" => {
                    let mut el = el;
                    if let Some(b) = el.take_attr("behavior") {
                        ns.deprecation =
                            Some(DeprecationBehavior::from_name(&b).ok_or_else(|| {
                                Error::invalid("qemu:deprecation", "behavior", &b)
                            })?);
                    }
                }
                "override" => {
                    for mut dev in el.children.into_iter().filter(|c| c.name == "device") {
                        let alias = dev.take_attr("alias").ok_or_else(|| {
                            Error::xml("missing 'alias' attribute for qemu:device")
                        })?;
                        let mut frontend = Vec::new();
                        for fe in dev.children.into_iter().filter(|c| c.name == "frontend") {
                            for p in fe.children.into_iter().filter(|c| c.name == "property") {
                                frontend.push(parse_property(p)?);
                            }
                        }
                        ns.overrides.push(DeviceOverride { alias, frontend });
                    }
                }
                _ => {}
            }
        }
        Ok(ns)
    }

    /// True when any `qemu:` element will be written.
    pub fn needs_namespace(&self) -> bool {
        !self.args.is_empty()
            || !self.env.is_empty()
            || !self.caps_add.is_empty()
            || !self.caps_del.is_empty()
            || self.deprecation.is_some()
            || !self.overrides.is_empty()
    }

    /// Formats the namespace elements (commandline, capabilities, override,
    /// deprecation), as libvirt does.
    pub fn format(&self) -> Vec<Element> {
        let q = |n: &str| Element::new_ns(n, QEMU_NS, "qemu");
        let mut out = Vec::new();
        if !self.args.is_empty() || !self.env.is_empty() {
            let mut c = q("commandline");
            for a in &self.args {
                c.children.push(q("arg").attr("value", a));
            }
            for e in &self.env {
                c.children.push(
                    q("env")
                        .attr("name", &e.name)
                        .attr_opt("value", e.value.as_ref()),
                );
            }
            out.push(c);
        }
        if !self.caps_add.is_empty() || !self.caps_del.is_empty() {
            let mut c = q("capabilities");
            for a in &self.caps_add {
                c.children.push(q("add").attr("capability", a));
            }
            for a in &self.caps_del {
                c.children.push(q("del").attr("capability", a));
            }
            out.push(c);
        }
        if !self.overrides.is_empty() {
            let mut o = q("override");
            for d in &self.overrides {
                let mut fe = q("frontend");
                for p in &d.frontend {
                    fe.children.push(
                        q("property")
                            .attr("name", &p.name)
                            .attr("type", p.value.type_name())
                            .attr_opt("value", p.value.value_string()),
                    );
                }
                let mut de = q("device").attr("alias", &d.alias);
                if !fe.children.is_empty() {
                    de.children.push(fe);
                }
                o.children.push(de);
            }
            out.push(o);
        }
        if let Some(b) = self.deprecation {
            out.push(q("deprecation").attr("behavior", b.as_str()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_document;

    fn ns(body: &str) -> Result<QemuNamespace> {
        let mut d =
            parse_document(&format!("<domain xmlns:qemu='{QEMU_NS}'>{body}</domain>")).unwrap();
        QemuNamespace::take(&mut d)
    }

    #[test]
    fn override_properties_are_typed() {
        let n = ns(
            "<qemu:override><qemu:device alias='ua-disk'><qemu:frontend>\
             <qemu:property name='a' type='signed' value='-3'/>\
             <qemu:property name='b' type='bool' value='true'/>\
             <qemu:property name='c' type='remove'/>\
             </qemu:frontend></qemu:device></qemu:override>",
        )
        .unwrap();
        let p = &n.overrides[0].frontend;
        assert_eq!(p[0].value, PropertyValue::Signed(-3));
        assert_eq!(p[1].value, PropertyValue::Bool(true));
        assert_eq!(p[2].value, PropertyValue::Remove);
    }

    #[test]
    fn override_value_not_fitting_its_type_is_rejected() {
        for (t, v) in [("unsigned", "-1"), ("signed", "x"), ("bool", "yes")] {
            let r = ns(&format!(
                "<qemu:override><qemu:device alias='a'><qemu:frontend>\
                 <qemu:property name='p' type='{t}' value='{v}'/></qemu:frontend></qemu:device></qemu:override>"
            ));
            assert!(r.is_err(), "{t} {v}");
        }
    }

    #[test]
    fn id_property_cannot_be_overridden() {
        let r = ns("<qemu:override><qemu:device alias='a'><qemu:frontend>\
             <qemu:property name='id' type='string' value='x'/></qemu:frontend></qemu:device></qemu:override>");
        assert!(r.unwrap_err().to_string().contains("can't be overridden"));
    }

    #[test]
    fn env_names_are_validated() {
        assert!(ns("<qemu:commandline><qemu:env name='1X'/></qemu:commandline>").is_err());
        assert!(ns("<qemu:commandline><qemu:env name='A-B'/></qemu:commandline>").is_err());
        let n = ns("<qemu:commandline><qemu:arg value='-x'/><qemu:env name='_A' value='1'/></qemu:commandline>").unwrap();
        assert_eq!(n.args, vec!["-x"]);
    }

    #[test]
    fn deprecation_behavior_is_typed() {
        let n = ns("<qemu:deprecation behavior='omit'/>").unwrap();
        assert_eq!(n.deprecation, Some(DeprecationBehavior::Omit));
        assert!(ns("<qemu:deprecation behavior='bogus'/>").is_err());
    }
}
