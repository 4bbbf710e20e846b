//! Storage volume XML: what `vol-create` reads and what `vol-dumpxml`
//! writes, in libvirt's layout.

use std::fmt::Write as _;

use crate::error::{Result, StorageError};
use crate::pooldef::{check_name, Perms};
use crate::units;
use crate::xml::{self, escape, Element};

/// Volume formats a `dir`/`fs` pool knows (libvirt's file formats).
pub const KNOWN_FORMATS: &[&str] = &[
    "none", "raw", "dir", "bochs", "cloop", "dmg", "iso", "vpc", "vdi", "fat", "vhd", "ploop",
    "cow", "qcow", "qcow2", "qed", "vmdk",
];

/// Formats this plugin creates (raw itself, the others with `qemu-img`).
pub const CREATABLE_FORMATS: &[&str] = &["raw", "qcow2", "qcow", "qed", "vmdk", "vdi", "vpc"];

/// A volume to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolDef {
    /// Name (the file name in the pool directory).
    pub name: String,
    /// Size in bytes; `None` when the XML has none (allowed with a backing store).
    pub capacity: Option<u64>,
    /// Initial allocation in bytes.
    pub allocation: Option<u64>,
    /// `<target><format type=>`.
    pub format: Option<String>,
    /// `<target><permissions>`.
    pub perms: Perms,
    /// `<backingStore>`: path and format.
    pub backing: Option<(String, Option<String>)>,
    /// `<target><compat>`.
    pub compat: Option<String>,
    /// `<target><features><lazy_refcounts/>`.
    pub lazy_refcounts: bool,
    /// `<target><clusterSize>` in bytes.
    pub cluster_size: Option<u64>,
}

fn scaled(e: &Element, what: &str) -> Result<Option<u64>> {
    let Some(v) = e.child(what) else {
        return Ok(None);
    };
    let value: u64 = v
        .text
        .trim()
        .parse()
        .map_err(|_| StorageError::Xml(format!("malformed {what} element")))?;
    units::scale(value, v.attr("unit").unwrap_or(""))
        .map(Some)
        .map_err(|e| StorageError::Xml(format!("malformed {what} element: {e}")))
}

fn check_format(format: &str) -> Result<()> {
    if KNOWN_FORMATS.contains(&format) {
        Ok(())
    } else {
        Err(StorageError::Unsupported(format!(
            "unknown volume format type {format}"
        )))
    }
}

impl VolDef {
    /// Parses volume XML.
    pub fn parse(text: &str) -> Result<VolDef> {
        let root = xml::parse(text, "(storage_volume_definition)").map_err(StorageError::Xml)?;
        if root.name != "volume" {
            return Err(StorageError::Xml(format!(
                "unexpected root element <{}>, expecting <volume>",
                root.name
            )));
        }
        let name = root
            .text_at("name")
            .ok_or_else(|| StorageError::Xml("missing volume name element".into()))?;
        check_name("volume", name)?;
        let format = root
            .at("target/format")
            .and_then(|f| f.attr("type"))
            .map(str::to_string);
        if let Some(f) = &format {
            check_format(f)?;
        }
        let backing = match root.text_at("backingStore/path") {
            Some(p) => {
                let f = root
                    .at("backingStore/format")
                    .and_then(|f| f.attr("type"))
                    .map(str::to_string);
                if let Some(f) = &f {
                    check_format(f)?;
                }
                Some((p.to_string(), f))
            }
            None => None,
        };
        let compat = root.text_at("target/compat").map(str::to_string);
        if let Some(c) = &compat {
            let ok = c
                .split_once('.')
                .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
            if !ok {
                return Err(StorageError::Xml(
                    "forbidden characters in 'compat' attribute".into(),
                ));
            }
        }
        let mut lazy_refcounts = false;
        if let Some(features) = root.at("target/features") {
            for f in &features.children {
                match f.name.as_str() {
                    "lazy_refcounts" => lazy_refcounts = true,
                    other => {
                        return Err(StorageError::Unsupported(format!(
                            "unsupported feature {other}"
                        )))
                    }
                }
            }
        }
        let cluster_size = match root.at("target") {
            Some(t) => scaled(t, "clusterSize")?,
            None => None,
        };
        Ok(VolDef {
            name: name.to_string(),
            capacity: scaled(&root, "capacity")?,
            allocation: scaled(&root, "allocation")?,
            format,
            perms: Perms::parse(root.at("target/permissions"))?,
            backing,
            compat: compat.or_else(|| lazy_refcounts.then(|| "1.1".to_string())),
            lazy_refcounts,
            cluster_size,
        })
    }
}

/// What `vol-dumpxml` shows about one file (the volume or its backing store).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileFacts {
    /// Path.
    pub path: String,
    /// Format detected from the header.
    pub format: String,
    /// Mode, uid, gid.
    pub perms: Perms,
    /// atime, mtime, ctime as (seconds, nanoseconds).
    pub times: Option<[(i64, i64); 3]>,
    /// qcow2 compat level.
    pub compat: Option<String>,
    /// qcow2 cluster size.
    pub cluster_size: Option<u64>,
    /// qcow2 v3 lazy refcounts (`Some` when the format has a feature list).
    pub features: Option<Vec<&'static str>>,
}

fn format_facts(out: &mut String, element: &str, f: &FileFacts) {
    let _ = writeln!(out, "  <{element}>");
    let _ = writeln!(out, "    <path>{}</path>", escape(&f.path));
    let _ = writeln!(out, "    <format type='{}'/>", escape(&f.format));
    f.perms.format(out, 4);
    if let Some(times) = &f.times {
        let _ = writeln!(out, "    <timestamps>");
        for (name, (sec, nsec)) in ["atime", "mtime", "ctime"].iter().zip(times) {
            if *nsec != 0 {
                let _ = writeln!(out, "      <{name}>{sec}.{nsec:09}</{name}>");
            } else {
                let _ = writeln!(out, "      <{name}>{sec}</{name}>");
            }
        }
        let _ = writeln!(out, "    </timestamps>");
    }
    if let Some(c) = &f.compat {
        let _ = writeln!(out, "    <compat>{}</compat>", escape(c));
    }
    if let Some(c) = f.cluster_size {
        let _ = writeln!(out, "    <clusterSize unit='B'>{c}</clusterSize>");
    }
    match &f.features {
        Some(list) if list.is_empty() => {
            let _ = writeln!(out, "    <features/>");
        }
        Some(list) => {
            let _ = writeln!(out, "    <features>");
            for name in list {
                let _ = writeln!(out, "      <{name}/>");
            }
            let _ = writeln!(out, "    </features>");
        }
        None => {}
    }
    let _ = writeln!(out, "  </{element}>");
}

/// Everything `vol-dumpxml` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeView {
    /// `file`, `block`, `dir`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Key.
    pub key: String,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Allocation in bytes.
    pub allocation: u64,
    /// Physical size in bytes.
    pub physical: u64,
    /// The volume's file.
    pub target: FileFacts,
    /// Its backing store, if any.
    pub backing: Option<FileFacts>,
}

impl VolumeView {
    /// The volume XML.
    pub fn format(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "<volume type='{}'>", self.kind);
        let _ = writeln!(out, "  <name>{}</name>", escape(&self.name));
        let _ = writeln!(out, "  <key>{}</key>", escape(&self.key));
        let _ = writeln!(out, "  <capacity unit='bytes'>{}</capacity>", self.capacity);
        let _ = writeln!(
            out,
            "  <allocation unit='bytes'>{}</allocation>",
            self.allocation
        );
        if self.physical > 0 {
            let _ = writeln!(out, "  <physical unit='bytes'>{}</physical>", self.physical);
        }
        format_facts(&mut out, "target", &self.target);
        if let Some(b) = &self.backing {
            format_facts(&mut out, "backingStore", b);
        }
        let _ = writeln!(out, "</volume>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_qcow2_volume_example_parses() {
        // libvirt's tests/storagevolxml2xmlin/vol-qcow2.xml
        let def = VolDef::parse(
            "<volume>
  <name>OtherDemo.img</name>
  <key>/var/lib/libvirt/images/OtherDemo.img</key>
  <source>
  </source>
  <capacity unit=\"G\">5</capacity>
  <allocation>294912</allocation>
  <target>
    <path>/var/lib/libvirt/images/OtherDemo.img</path>
    <format type='qcow2'/>
    <permissions>
      <mode>0644</mode>
      <owner>0</owner>
      <group>0</group>
      <label>unconfined_u:object_r:virt_image_t:s0</label>
    </permissions>
  </target>
  <backingStore>
    <path>/dev/null</path>
    <format type='raw'/>
  </backingStore>
</volume>",
        )
        .unwrap();
        assert_eq!(def.name, "OtherDemo.img");
        assert_eq!(def.capacity, Some(5 << 30));
        assert_eq!(def.allocation, Some(294912));
        assert_eq!(def.format.as_deref(), Some("qcow2"));
        assert_eq!(def.perms.mode, Some(0o644));
        assert_eq!(
            def.backing,
            Some(("/dev/null".to_string(), Some("raw".to_string())))
        );
    }

    #[test]
    fn volume_name_with_slash_or_dotdot_is_rejected() {
        for name in ["../evil", "a/b", ".."] {
            let err = VolDef::parse(&format!(
                "<volume><name>{name}</name><capacity>1</capacity></volume>"
            ))
            .unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn capacity_that_does_not_parse_is_an_xml_error() {
        let err =
            VolDef::parse("<volume><name>a</name><capacity>1.5</capacity></volume>").unwrap_err();
        assert_eq!(err.to_string(), "XML error: malformed capacity element");
        let err = VolDef::parse("<volume><name>a</name><capacity unit='X'>1</capacity></volume>")
            .unwrap_err();
        assert!(err.to_string().contains("unknown suffix"), "{err}");
    }

    #[test]
    fn unknown_format_is_unsupported() {
        let err = VolDef::parse(
            "<volume><name>a</name><capacity>1</capacity><target><format type='zip'/></target></volume>",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported configuration: unknown volume format type zip"
        );
    }

    #[test]
    fn dumpxml_layout_matches_libvirt() {
        let view = VolumeView {
            kind: "file".into(),
            name: "a".into(),
            key: "/p/a".into(),
            capacity: 10,
            allocation: 4096,
            physical: 10,
            target: FileFacts {
                path: "/p/a".into(),
                format: "qcow2".into(),
                perms: Perms {
                    mode: Some(0o600),
                    owner: Some(0),
                    group: Some(0),
                    label: None,
                },
                times: Some([(1, 5), (2, 0), (3, 0)]),
                compat: Some("1.1".into()),
                cluster_size: Some(65536),
                features: Some(vec![]),
            },
            backing: None,
        };
        let xml = view.format();
        assert!(xml.contains("  <physical unit='bytes'>10</physical>\n  <target>\n    <path>/p/a</path>\n    <format type='qcow2'/>\n    <permissions>\n      <mode>0600</mode>"), "{xml}");
        assert!(xml.contains("<atime>1.000000005</atime>"), "{xml}");
        assert!(xml.contains("    <compat>1.1</compat>\n    <clusterSize unit='B'>65536</clusterSize>\n    <features/>\n  </target>\n</volume>\n"), "{xml}");
    }
}
