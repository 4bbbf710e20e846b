//! Shared building blocks: string-named enums, tri-state values, number and
//! size parsing with libvirt's rules.

use crate::error::{Error, Result};
use crate::xml::Element;

/// Formats a byte count with the largest binary unit that divides it
/// (libvirt's `virFormatIntPretty`): returns (value, unit).
pub use qvisor_caps::xmltree::format_int_pretty as format_pretty_bytes;

/// An enum whose variants have libvirt's string names.
pub trait StrEnum: Sized + Copy {
    /// libvirt's name of the value.
    fn as_str(self) -> &'static str;
    /// Looks a value up by libvirt's name.
    fn from_name(s: &str) -> Option<Self>;
}

/// Declares a `Copy` enum with libvirt's string names, `Display` and [`StrEnum`].
#[macro_export]
macro_rules! str_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* #[doc = $s] $var),+ }
        impl $name {
            /// Every value, in libvirt's enum order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];
        }
        impl $crate::common::StrEnum for $name {
            fn as_str(self) -> &'static str { match self { $($name::$var => $s),+ } }
            fn from_name(s: &str) -> Option<Self> { match s { $($s => Some($name::$var),)+ _ => None } }
        }
        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::common::StrEnum::as_str(*self))
            }
        }
    };
}

str_enum! {
    /// libvirt's `virTristateBool` (`yes`/`no`).
    pub enum YesNo { Yes = "yes", No = "no" }
}

str_enum! {
    /// libvirt's `virTristateSwitch` (`on`/`off`).
    pub enum OnOff { On = "on", Off = "off" }
}

impl YesNo {
    /// `true` for yes.
    pub fn is_yes(self) -> bool {
        self == YesNo::Yes
    }
    /// From a bool.
    pub fn from_bool(b: bool) -> Self {
        if b {
            YesNo::Yes
        } else {
            YesNo::No
        }
    }
}

impl OnOff {
    /// `true` for on.
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
    /// From a bool.
    pub fn from_bool(b: bool) -> Self {
        if b {
            OnOff::On
        } else {
            OnOff::Off
        }
    }
}

/// Takes attribute `attr` of `e` and parses it as enum `T`.
pub fn take_enum<T: StrEnum>(e: &mut Element, attr: &str) -> Result<Option<T>> {
    match e.take_attr(attr) {
        None => Ok(None),
        Some(v) => T::from_name(&v)
            .map(Some)
            .ok_or_else(|| Error::invalid(&e.name, attr, &v)),
    }
}

/// Like [`take_enum`] but the attribute is required.
pub fn take_enum_req<T: StrEnum>(e: &mut Element, attr: &str) -> Result<T> {
    take_enum(e, attr)?.ok_or_else(|| Error::missing(&e.name, attr))
}

/// Takes a string attribute.
pub fn take_str(e: &mut Element, attr: &str) -> Option<String> {
    e.take_attr(attr)
}

/// Takes a required string attribute.
pub fn take_str_req(e: &mut Element, attr: &str) -> Result<String> {
    e.take_attr(attr)
        .ok_or_else(|| Error::missing(&e.name, attr))
}

/// Parses an unsigned integer in libvirt's `strtoul` style: decimal, or hex
/// with `0x`, or octal with a leading 0 when `base0` is set.
pub fn parse_uint(s: &str, base0: bool) -> Option<u64> {
    let t = s.trim();
    if t.starts_with('-') || t.starts_with('+') {
        return None;
    }
    if base0 {
        if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            return u64::from_str_radix(h, 16).ok();
        }
        if t.len() > 1 && t.starts_with('0') {
            return u64::from_str_radix(&t[1..], 8).ok();
        }
    }
    t.parse::<u64>().ok()
}

/// Takes an unsigned attribute (decimal).
pub fn take_u64(e: &mut Element, attr: &str) -> Result<Option<u64>> {
    take_num(e, attr, false)
}

/// Takes an unsigned attribute accepting hex (`0x..`) and octal like C's base 0.
pub fn take_u64_any(e: &mut Element, attr: &str) -> Result<Option<u64>> {
    take_num(e, attr, true)
}

fn take_num(e: &mut Element, attr: &str, base0: bool) -> Result<Option<u64>> {
    match e.take_attr(attr) {
        None => Ok(None),
        Some(v) => parse_uint(&v, base0)
            .map(Some)
            .ok_or_else(|| Error::invalid(&e.name, attr, &v)),
    }
}

/// Takes a `u32` attribute (decimal).
pub fn take_u32(e: &mut Element, attr: &str) -> Result<Option<u32>> {
    let name = e.name.clone();
    match e.take_attr(attr) {
        None => Ok(None),
        Some(v) => parse_uint(&v, false)
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| Error::invalid(&name, attr, &v)),
    }
}

/// Takes a signed `i64` attribute.
pub fn take_i64(e: &mut Element, attr: &str) -> Result<Option<i64>> {
    match e.take_attr(attr) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Error::invalid(&e.name, attr, &v)),
    }
}

/// Bytes per unit for libvirt's scaled integers (`virScaleInteger`).
pub fn unit_scale(unit: &str) -> Option<u64> {
    let u = unit.trim();
    let (pow, si) = match u {
        "" => return Some(1),
        "b" | "byte" | "bytes" | "B" => return Some(1),
        "k" | "K" | "KiB" | "kiB" => (1, false),
        "KB" | "kB" => (1, true),
        "M" | "m" | "MiB" => (2, false),
        "MB" => (2, true),
        "G" | "g" | "GiB" => (3, false),
        "GB" => (3, true),
        "T" | "t" | "TiB" => (4, false),
        "TB" => (4, true),
        "P" | "p" | "PiB" => (5, false),
        "PB" => (5, true),
        "E" | "e" | "EiB" => (6, false),
        "EB" => (6, true),
        _ => return None,
    };
    let base: u64 = if si { 1000 } else { 1024 };
    Some(base.pow(pow))
}

/// Parses a size given as text with an optional `unit` (default `default_unit`)
/// and returns it in KiB, rounding up like libvirt's `virDomainParseMemory`.
pub fn size_to_kib(value: &str, unit: Option<&str>, default_unit: &str) -> Option<u64> {
    let n = parse_uint(value, false)?;
    let scale = unit_scale(unit.unwrap_or(default_unit))?;
    let bytes = n.checked_mul(scale)?;
    Some(bytes.div_ceil(1024))
}

/// Parses a UUID in any of libvirt's accepted spellings (hyphens anywhere,
/// optional), returning the 16 bytes.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let hex: Vec<u8> = s
        .trim()
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_digit(16).map(|d| d as u8))
        .collect::<Option<Vec<u8>>>()?;
    if hex.len() != 32 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = (hex.get(2 * i)? << 4) | hex.get(2 * i + 1)?;
    }
    Some(out)
}

/// Formats 16 bytes as a canonical UUID string.
pub fn format_uuid(u: &[u8; 16]) -> String {
    let h: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// A 16-byte UUID printed in canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// Parses any accepted spelling.
    pub fn parse(s: &str) -> Option<Self> {
        parse_uuid(s).map(Uuid)
    }
}

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_uuid(&self.0))
    }
}

/// A set of CPU or NUMA node numbers (libvirt's `virBitmap`), parsed from
/// `0-3,^2,8` syntax and printed in canonical ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct CpuSet(pub std::collections::BTreeSet<u32>);

/// Highest bit a [`CpuSet`] accepts (libvirt's VIR_DOMAIN_CPUMASK_LEN is 16384).
const CPUSET_MAX: u32 = 16383;

impl CpuSet {
    /// Parses libvirt's bitmap syntax.
    pub fn parse(s: &str) -> Option<Self> {
        let mut set = std::collections::BTreeSet::new();
        let mut neg = Vec::new();
        let mut any = false;
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return None;
            }
            if let Some(n) = part.strip_prefix('^') {
                neg.push(n.trim().parse::<u32>().ok()?);
                continue;
            }
            any = true;
            match part.split_once('-') {
                Some((a, b)) => {
                    let a: u32 = a.trim().parse().ok()?;
                    let b: u32 = b.trim().parse().ok()?;
                    if a > b || b > CPUSET_MAX {
                        return None;
                    }
                    set.extend(a..=b);
                }
                None => {
                    let n: u32 = part.parse().ok()?;
                    if n > CPUSET_MAX {
                        return None;
                    }
                    set.insert(n);
                }
            }
        }
        if !any {
            return None;
        }
        for n in neg {
            set.remove(&n);
        }
        Some(CpuSet(set))
    }

    /// True when `n` is in the set.
    pub fn contains(&self, n: u32) -> bool {
        self.0.contains(&n)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Highest member.
    pub fn last(&self) -> Option<u32> {
        self.0.iter().next_back().copied()
    }
}

impl std::fmt::Display for CpuSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        let mut it = self.0.iter().copied().peekable();
        while let Some(start) = it.next() {
            let mut end = start;
            while it.peek() == Some(&(end + 1)) {
                end += 1;
                it.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_round_trips_and_accepts_compact_form() {
        let u = Uuid::parse("c7a5fdbd edaf9455926ad65c16db1809").is_none();
        assert!(u);
        let u = Uuid::parse("c7a5fdbdedaf9455926ad65c16db1809").unwrap();
        assert_eq!(u.to_string(), "c7a5fdbd-edaf-9455-926a-d65c16db1809");
    }

    #[test]
    fn sizes_scale_to_kib_rounding_up() {
        assert_eq!(size_to_kib("1", Some("GiB"), "KiB"), Some(1048576));
        assert_eq!(size_to_kib("1000", Some("b"), "KiB"), Some(1));
        assert_eq!(size_to_kib("219136", None, "KiB"), Some(219136));
        assert_eq!(size_to_kib("1", Some("MB"), "KiB"), Some(977));
        assert_eq!(size_to_kib("x", None, "KiB"), None);
    }

    #[test]
    fn cpuset_parses_exclusions_and_prints_ranges() {
        let s = CpuSet::parse("0-4,^2,8").unwrap();
        assert_eq!(s.to_string(), "0-1,3-4,8");
        assert!(CpuSet::parse("3-1").is_none());
        assert!(CpuSet::parse("^1").is_none());
    }

    #[test]
    fn numbers_accept_hex_only_when_asked() {
        assert_eq!(parse_uint("0x1f", true), Some(31));
        assert_eq!(parse_uint("0x1f", false), None);
        assert_eq!(parse_uint("-1", false), None);
    }
}
