//! Storage pool XML (`docs/formatstorage.rst`): parsing and formatting of the
//! pool types this plugin runs, `dir` and `fs`, in libvirt's layout.

use std::fmt::Write as _;

use qvisor_sdk::POOL_TYPES;

use crate::error::{Result, StorageError};
use crate::xml::{self, escape, Element};

/// `fs` pool source formats (`virStoragePoolFormatFileSystem`).
const FS_FORMATS: &[&str] = &[
    "auto", "ext2", "ext3", "ext4", "ufs", "iso9660", "udf", "gfs", "gfs2", "vfat", "hfs+", "xfs",
    "ocfs2", "vmfs",
];

/// The pool types this plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolType {
    /// A directory of image files.
    Dir,
    /// A file system on a block device, mounted on the target directory.
    Fs,
}

impl PoolType {
    /// The XML name.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolType::Dir => "dir",
            PoolType::Fs => "fs",
        }
    }
}

/// `<permissions>`: mode, owner, group, label; `None` means "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Perms {
    /// Octal mode.
    pub mode: Option<u32>,
    /// Owner uid.
    pub owner: Option<u32>,
    /// Group gid.
    pub group: Option<u32>,
    /// Security label.
    pub label: Option<String>,
}

impl Perms {
    /// Reads `<permissions>` (absent: all unset).
    pub fn parse(e: Option<&Element>) -> Result<Perms> {
        let Some(e) = e else {
            return Ok(Perms::default());
        };
        let mode = match e.text_at("mode") {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| m & !0o777 == 0)
                    .ok_or_else(|| StorageError::Xml("malformed octal mode".into()))?,
            ),
            None => None,
        };
        let id = |what: &str| -> Result<Option<u32>> {
            match e.text_at(what) {
                None => Ok(None),
                Some(v) => match v.parse::<i64>() {
                    Ok(-1) => Ok(None),
                    Ok(n) => u32::try_from(n)
                        .map(Some)
                        .map_err(|_| StorageError::Xml(format!("malformed {what} element"))),
                    Err(_) => Err(StorageError::Xml(format!("malformed {what} element"))),
                },
            }
        };
        Ok(Perms {
            mode,
            owner: id("owner")?,
            group: id("group")?,
            label: e.text_at("label").map(str::to_string),
        })
    }

    /// Writes `<permissions>` at `indent` (nothing when all unset).
    pub fn format(&self, out: &mut String, indent: usize) {
        if self.mode.is_none()
            && self.owner.is_none()
            && self.group.is_none()
            && self.label.is_none()
        {
            return;
        }
        let pad = " ".repeat(indent);
        let _ = writeln!(out, "{pad}<permissions>");
        if let Some(m) = self.mode {
            let _ = writeln!(out, "{pad}  <mode>0{m:o}</mode>");
        }
        if let Some(o) = self.owner {
            let _ = writeln!(out, "{pad}  <owner>{o}</owner>");
        }
        if let Some(g) = self.group {
            let _ = writeln!(out, "{pad}  <group>{g}</group>");
        }
        if let Some(l) = &self.label {
            let _ = writeln!(out, "{pad}  <label>{}</label>", escape(l));
        }
        let _ = writeln!(out, "{pad}</permissions>");
    }
}

/// A pool definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDef {
    /// Type.
    pub kind: PoolType,
    /// Name.
    pub name: String,
    /// UUID, canonical lower-case text.
    pub uuid: String,
    /// `<target><path>`, sanitised (no repeated or trailing `/`).
    pub target: String,
    /// `<target><permissions>`.
    pub perms: Perms,
    /// `fs`: `<source><device path=>`.
    pub device: Option<String>,
    /// `fs`: `<source><format type=>` (default `auto`).
    pub fs_format: String,
    /// `<features><cow state=>`.
    pub cow: Option<bool>,
}

/// Checks a pool or volume name: not empty, no `/`, not `.` or `..` (a name
/// becomes a file name in a directory). `what` is `pool` or `volume`.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(StorageError::Xml(format!("missing {what} name element")));
    }
    if name.contains('/') {
        return Err(if what == "pool" {
            StorageError::Xml(format!("name {name} cannot contain '/'"))
        } else {
            StorageError::InvalidArg(format!("{what} name '{name}' cannot contain '/'"))
        });
    }
    if name == "." || name == ".." || name.contains('\0') {
        return Err(StorageError::InvalidArg(format!(
            "{what} name '{name}' is not allowed"
        )));
    }
    Ok(())
}

/// libvirt's `virFileSanitizePath`: collapses repeated `/`, drops a
/// trailing one (except for `/` itself).
pub fn sanitize_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    out
}

/// Parses a UUID in any of libvirt's accepted spellings (dashes anywhere,
/// 32 hex digits) into its canonical form.
pub fn canonical_uuid(text: &str) -> Option<String> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// A random (version 4) UUID.
pub fn random_uuid() -> Result<String> {
    let mut b = [0u8; 16];
    let mut filled = 0;
    while filled < b.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `b`.
        let n = unsafe { libc::getrandom(b[filled..].as_mut_ptr().cast(), b.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(StorageError::Internal(format!(
                "unable to generate uuid: {e}"
            )));
        }
        filled += n as usize;
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    canonical_uuid(&hex).ok_or_else(|| StorageError::Internal("uuid formatting".into()))
}

impl PoolDef {
    /// Parses pool XML.
    pub fn parse(text: &str) -> Result<PoolDef> {
        let root = xml::parse(text, "(storage_pool_definition)").map_err(StorageError::Xml)?;
        if root.name != "pool" {
            return Err(StorageError::Xml(format!(
                "unexpected root element <{}>, expecting <pool>",
                root.name
            )));
        }
        let kind_name = root.attr("type").ok_or_else(|| {
            StorageError::Xml("Missing required attribute 'type' in element 'pool'".into())
        })?;
        let kind = match kind_name {
            "dir" => PoolType::Dir,
            "fs" => PoolType::Fs,
            // Every type libvirt knows gets a clear "unsupported" rather than
            // "unknown".
            k if POOL_TYPES.contains(&k) => {
                return Err(StorageError::Unsupported(format!(
                    "storage pool type '{k}' is not supported by qvisor's storage plugin (supported: dir, fs)"
                )))
            }
            k => {
                return Err(StorageError::Xml(format!(
                    "Invalid value for attribute 'type' in element 'pool': '{k}'."
                )))
            }
        };
        let name = root
            .text_at("name")
            .ok_or_else(|| StorageError::Xml("missing pool source name element".into()))?;
        check_name("pool", name)?;
        let uuid = match root.text_at("uuid") {
            Some(u) => canonical_uuid(u)
                .ok_or_else(|| StorageError::Xml("malformed uuid element".into()))?,
            None => random_uuid()?,
        };
        let cow = match root.at("features/cow").and_then(|c| c.attr("state")) {
            None => None,
            Some("yes") => Some(true),
            Some("no") => Some(false),
            Some(v) => {
                return Err(StorageError::Xml(format!(
                    "Invalid value for attribute 'state' in element 'cow': '{v}'."
                )))
            }
        };
        let (device, fs_format) = match kind {
            PoolType::Dir => (None, "auto".to_string()),
            PoolType::Fs => {
                let device = root
                    .at("source/device")
                    .and_then(|d| d.attr("path"))
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| {
                        StorageError::Xml("missing storage pool source device name".into())
                    })?;
                let format = root
                    .at("source/format")
                    .and_then(|f| f.attr("type"))
                    .unwrap_or("auto");
                if !FS_FORMATS.contains(&format) {
                    return Err(StorageError::Unsupported(format!(
                        "unknown pool format type {format}"
                    )));
                }
                (Some(device.to_string()), format.to_string())
            }
        };
        let target = root
            .text_at("target/path")
            .ok_or_else(|| StorageError::Xml("missing storage pool target path".into()))?;
        let target = sanitize_path(target);
        if !target.starts_with('/') {
            return Err(StorageError::Unsupported(format!(
                "storage pool target path '{target}' must be absolute"
            )));
        }
        Ok(PoolDef {
            kind,
            name: name.to_string(),
            uuid,
            target,
            perms: Perms::parse(root.at("target/permissions"))?,
            device,
            fs_format,
            cow,
        })
    }

    /// Formats pool XML as libvirt does, with the given sizes.
    pub fn format(&self, capacity: u64, allocation: u64, available: u64) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "<pool type='{}'>", self.kind.as_str());
        let _ = writeln!(out, "  <name>{}</name>", escape(&self.name));
        let _ = writeln!(out, "  <uuid>{}</uuid>", self.uuid);
        let _ = writeln!(out, "  <capacity unit='bytes'>{capacity}</capacity>");
        let _ = writeln!(out, "  <allocation unit='bytes'>{allocation}</allocation>");
        let _ = writeln!(out, "  <available unit='bytes'>{available}</available>");
        if let Some(cow) = self.cow {
            let _ = writeln!(out, "  <features>");
            let _ = writeln!(out, "    <cow state='{}'/>", if cow { "yes" } else { "no" });
            let _ = writeln!(out, "  </features>");
        }
        let _ = writeln!(out, "  <source>");
        if let Some(dev) = &self.device {
            let _ = writeln!(out, "    <device path='{}'/>", escape(dev));
        }
        if self.kind == PoolType::Fs {
            let _ = writeln!(out, "    <format type='{}'/>", self.fs_format);
        }
        let _ = writeln!(out, "  </source>");
        let _ = writeln!(out, "  <target>");
        let _ = writeln!(out, "    <path>{}</path>", escape(&self.target));
        self.perms.format(&mut out, 4);
        let _ = writeln!(out, "  </target>");
        let _ = writeln!(out, "</pool>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_dir_pool_example_formats_as_libvirt_expects() {
        // libvirt's tests/storagepoolxml2xmlin/pool-dir.xml and its output.
        let input = "<pool type='dir'>
  <name>virtimages</name>
  <uuid>70a7eb15-6c34-ee9c-bf57-69e8e5ff3fb2</uuid>
  <capacity>0</capacity>
  <allocation>0</allocation>
  <available>0</available>
  <source>
  </source>
  <target>
    <path>///var/////lib/libvirt/images//</path>
    <permissions>
      <mode>0700</mode>
      <owner>-1</owner>
      <group>-1</group>
      <label>some_label_t</label>
    </permissions>
  </target>
</pool>";
        let expected = "<pool type='dir'>
  <name>virtimages</name>
  <uuid>70a7eb15-6c34-ee9c-bf57-69e8e5ff3fb2</uuid>
  <capacity unit='bytes'>0</capacity>
  <allocation unit='bytes'>0</allocation>
  <available unit='bytes'>0</available>
  <source>
  </source>
  <target>
    <path>/var/lib/libvirt/images</path>
    <permissions>
      <mode>0700</mode>
      <label>some_label_t</label>
    </permissions>
  </target>
</pool>
";
        let def = PoolDef::parse(input).unwrap();
        assert_eq!(def.format(0, 0, 0), expected);
    }

    #[test]
    fn libvirt_fs_pool_example_formats_as_libvirt_expects() {
        let input = "<pool type='fs'><name>images</name>
  <uuid>7641d5a8-af11-f730-a34e-0a7dfcede71f</uuid>
  <source><device path='/dev/sda6'/><format type='ext3'/></source>
  <target><path>/mnt</path><permissions><mode>0700</mode><owner>0</owner><group>0</group></permissions></target></pool>";
        let expected = "<pool type='fs'>
  <name>images</name>
  <uuid>7641d5a8-af11-f730-a34e-0a7dfcede71f</uuid>
  <capacity unit='bytes'>0</capacity>
  <allocation unit='bytes'>0</allocation>
  <available unit='bytes'>0</available>
  <source>
    <device path='/dev/sda6'/>
    <format type='ext3'/>
  </source>
  <target>
    <path>/mnt</path>
    <permissions>
      <mode>0700</mode>
      <owner>0</owner>
      <group>0</group>
    </permissions>
  </target>
</pool>
";
        assert_eq!(PoolDef::parse(input).unwrap().format(0, 0, 0), expected);
    }

    #[test]
    fn pool_name_with_slash_is_rejected() {
        let err = PoolDef::parse(
            "<pool type='dir'><name>a/b</name><target><path>/x</path></target></pool>",
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "XML error: name a/b cannot contain '/'");
    }

    #[test]
    fn unsupported_and_unknown_pool_types_are_told_apart() {
        let unsupported = PoolDef::parse(
            "<pool type='iscsi'><name>a</name><target><path>/x</path></target></pool>",
        )
        .unwrap_err();
        assert!(unsupported
            .to_string()
            .starts_with("unsupported configuration"));
        let unknown = PoolDef::parse(
            "<pool type='bogus'><name>a</name><target><path>/x</path></target></pool>",
        )
        .unwrap_err();
        assert!(unknown.to_string().starts_with("XML error"), "{unknown}");
    }

    #[test]
    fn missing_target_path_and_bad_mode_are_xml_errors() {
        let err = PoolDef::parse("<pool type='dir'><name>a</name></pool>").unwrap_err();
        assert_eq!(
            err.to_string(),
            "XML error: missing storage pool target path"
        );
        let err = PoolDef::parse(
            "<pool type='dir'><name>a</name><target><path>/x</path><permissions><mode>0999</mode></permissions></target></pool>",
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "XML error: malformed octal mode");
    }

    #[test]
    fn uuid_is_generated_when_absent_and_canonicalised_when_given() {
        let a = PoolDef::parse(
            "<pool type='dir'><name>a</name><target><path>/x</path></target></pool>",
        )
        .unwrap();
        assert!(canonical_uuid(&a.uuid).is_some());
        let b = PoolDef::parse("<pool type='dir'><name>a</name><uuid>70A7EB156C34EE9CBF5769E8E5FF3FB2</uuid><target><path>/x</path></target></pool>")
            .unwrap();
        assert_eq!(b.uuid, "70a7eb15-6c34-ee9c-bf57-69e8e5ff3fb2");
    }
}
