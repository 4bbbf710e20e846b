//! Image headers: the format of a file judged from its first bytes (never
//! from its name), its virtual size, and the backing file it names.
//!
//! Formats are recognised by the magic numbers libvirt's prober uses; qcow2,
//! qcow and QED headers are read far enough to find the backing file and its
//! format, the qcow2 compat level, cluster size and lazy-refcounts feature.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes read from the start of a file for probing.
const HEADER_LEN: usize = 4096;

/// The longest backing file name QEMU writes (`qcow2`'s limit is 1023).
const MAX_BACKING_NAME: u64 = 1023;

/// qcow2 header extension: backing file format name.
const QCOW2_EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;

/// What the header of an image says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageInfo {
    /// libvirt's name of the format (`raw`, `qcow2`, `qcow`, `qed`, `vmdk`,
    /// `vdi`, `vpc`, `luks`, `iso`, `bochs`, `cloop`, `ploop`).
    pub format: &'static str,
    /// The guest-visible size, when the header records one.
    pub capacity: Option<u64>,
    /// The backing file name exactly as recorded (may be relative to the
    /// image's directory).
    pub backing: Option<String>,
    /// The backing file's format, when the header records it.
    pub backing_format: Option<String>,
    /// qcow2 compatibility level (`0.10` or `1.1`).
    pub compat: Option<&'static str>,
    /// qcow2 cluster size in bytes.
    pub cluster_size: Option<u64>,
    /// qcow2 v3 `lazy_refcounts` feature.
    pub lazy_refcounts: bool,
}

/// Whether images of `format` can name a backing file.
pub fn supports_backing(format: &str) -> bool {
    matches!(format, "qcow2" | "qcow" | "qed" | "vmdk" | "cow")
}

/// Whether we read the backing file of `format` images from their headers
/// (a VMDK parent lives in a text descriptor we do not parse: its chain is
/// left to QEMU rather than cut short).
pub fn reads_backing(format: &str) -> bool {
    matches!(format, "qcow2" | "qcow" | "qed")
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}

/// Reads `len` bytes at `offset` (fewer at the end of the file).
fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    Ok(buf)
}

fn backing_name(file: &File, offset: u64, size: u64) -> io::Result<Option<String>> {
    if offset == 0 || size == 0 {
        return Ok(None);
    }
    if size > MAX_BACKING_NAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("backing file name of {size} bytes is longer than {MAX_BACKING_NAME}"),
        ));
    }
    let raw = read_at(file, offset, size as usize)?;
    if raw.len() as u64 != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "backing file name extends past the end of the image",
        ));
    }
    String::from_utf8(raw).map(Some).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "backing file name is not valid UTF-8",
        )
    })
}

fn qcow2(file: &File, h: &[u8], info: &mut ImageInfo) -> io::Result<()> {
    let version = be32(h, 4).unwrap_or(0);
    let backing_offset = be64(h, 8).unwrap_or(0);
    let backing_size = u64::from(be32(h, 16).unwrap_or(0));
    let cluster_bits = be32(h, 20).unwrap_or(0);
    info.capacity = be64(h, 24);
    info.cluster_size = (9..=21)
        .contains(&cluster_bits)
        .then(|| 1u64 << cluster_bits);
    let ext_start = if version >= 3 {
        info.compat = Some("1.1");
        info.lazy_refcounts = be64(h, 80).unwrap_or(0) & 1 == 1;
        be32(h, 100).unwrap_or(104) as usize
    } else {
        info.compat = Some("0.10");
        72
    };
    // Header extensions: (type, length, data padded to 8), up to type 0,
    // before the backing file name and inside what we read.
    let end = if backing_offset > 0 {
        (backing_offset as usize).min(h.len())
    } else {
        h.len()
    };
    let mut at = ext_start;
    while at + 8 <= end {
        let (Some(kind), Some(len)) = (be32(h, at), be32(h, at + 4)) else {
            break;
        };
        if kind == 0 {
            break;
        }
        let data = at + 8;
        let len = len as usize;
        if data + len > end {
            break;
        }
        if kind == QCOW2_EXT_BACKING_FORMAT {
            let name = String::from_utf8_lossy(&h[data..data + len])
                .trim_end_matches('\0')
                .to_string();
            info.backing_format = Some(name);
        }
        at = data + len.div_ceil(8) * 8;
    }
    info.backing = backing_name(file, backing_offset, backing_size)?;
    Ok(())
}

fn qcow1(file: &File, h: &[u8], info: &mut ImageInfo) -> io::Result<()> {
    info.capacity = be64(h, 24);
    info.backing = backing_name(
        file,
        be64(h, 8).unwrap_or(0),
        u64::from(be32(h, 16).unwrap_or(0)),
    )?;
    Ok(())
}

fn qed(file: &File, h: &[u8], info: &mut ImageInfo) -> io::Result<()> {
    const HAS_BACKING: u64 = 0x1;
    const BACKING_IS_RAW: u64 = 0x4;
    let features = le64(h, 16).unwrap_or(0);
    info.capacity = le64(h, 48);
    if features & HAS_BACKING != 0 {
        info.backing = backing_name(
            file,
            u64::from(le32(h, 56).unwrap_or(0)),
            u64::from(le32(h, 60).unwrap_or(0)),
        )?;
        if features & BACKING_IS_RAW != 0 {
            info.backing_format = Some("raw".into());
        }
    }
    Ok(())
}

/// Probes an open image of `file_size` bytes.
pub fn probe(file: &File, file_size: u64) -> io::Result<ImageInfo> {
    let h = read_at(file, 0, HEADER_LEN)?;
    let mut info = ImageInfo {
        format: "raw",
        ..ImageInfo::default()
    };
    let starts = |magic: &[u8]| h.starts_with(magic);
    if starts(b"QFI\xfb") {
        match be32(&h, 4) {
            Some(1) => {
                info.format = "qcow";
                qcow1(file, &h, &mut info)?;
            }
            Some(2) | Some(3) => {
                info.format = "qcow2";
                qcow2(file, &h, &mut info)?;
            }
            _ => {}
        }
    } else if starts(b"QED\0") {
        info.format = "qed";
        qed(file, &h, &mut info)?;
    } else if starts(b"KDMV") {
        info.format = "vmdk";
        info.capacity = le64(&h, 12).and_then(|s| s.checked_mul(512));
    } else if le32(&h, 0x40) == Some(0xbeda_107f) {
        info.format = "vdi";
        info.capacity = le64(&h, 0x170);
    } else if starts(b"conectix") {
        info.format = "vpc";
        info.capacity = be64(&h, 48);
    } else if starts(b"LUKS\xba\xbe") {
        info.format = "luks";
        let payload = u64::from(be32(&h, 104).unwrap_or(0)) * 512;
        info.capacity = file_size.checked_sub(payload);
    } else if starts(b"Bochs Virtual HD Image") {
        info.format = "bochs";
    } else if starts(b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0") {
        info.format = "cloop";
    } else if starts(b"WithoutFreeSpace") || starts(b"WithouFreSpacExt") {
        info.format = "ploop";
    } else if file_size > 32774 && read_at(file, 32769, 5)? == b"CD001" {
        info.format = "iso";
    }
    Ok(info)
}

/// Probes the image at `path`.
pub fn probe_path(path: &Path) -> io::Result<ImageInfo> {
    let file = File::open(path)?;
    let size = file_size(&file)?;
    probe(&file, size)
}

/// The size of a regular file or block device.
pub fn file_size(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::FileTypeExt;
    let meta = file.metadata()?;
    if meta.file_type().is_block_device() {
        let mut f = file;
        io::Seek::seek(&mut f, io::SeekFrom::End(0))
    } else {
        Ok(meta.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("qvisor-image-{tag}-{}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// A qcow2 v3 header naming `backing` with format `fmt`.
    fn qcow2_header(size: u64, backing: Option<(&str, &str)>) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[0..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[20..24].copy_from_slice(&16u32.to_be_bytes());
        h[24..32].copy_from_slice(&size.to_be_bytes());
        h[80..88].copy_from_slice(&1u64.to_be_bytes());
        h[100..104].copy_from_slice(&104u32.to_be_bytes());
        if let Some((name, fmt)) = backing {
            let mut at = 104;
            h[at..at + 4].copy_from_slice(&QCOW2_EXT_BACKING_FORMAT.to_be_bytes());
            h[at + 4..at + 8].copy_from_slice(&(fmt.len() as u32).to_be_bytes());
            h[at + 8..at + 8 + fmt.len()].copy_from_slice(fmt.as_bytes());
            at += 8 + fmt.len().div_ceil(8) * 8;
            at += 8; // end-of-extensions (zeros)
            h[8..16].copy_from_slice(&(at as u64).to_be_bytes());
            h[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
            h[at..at + name.len()].copy_from_slice(name.as_bytes());
        }
        h
    }

    #[test]
    fn qcow2_header_gives_size_backing_and_its_format() {
        let p = temp("q", &qcow2_header(1 << 30, Some(("base.img", "raw"))));
        let info = probe_path(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(info.format, "qcow2");
        assert_eq!(info.capacity, Some(1 << 30));
        assert_eq!(info.backing.as_deref(), Some("base.img"));
        assert_eq!(info.backing_format.as_deref(), Some("raw"));
        assert_eq!(info.compat, Some("1.1"));
        assert_eq!(info.cluster_size, Some(65536));
        assert!(info.lazy_refcounts);
    }

    #[test]
    fn file_named_qcow2_with_raw_bytes_is_raw() {
        let p = temp("fake.qcow2", &[0x55u8; 2048]);
        let info = probe_path(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(info.format, "raw");
        assert_eq!(info.capacity, None);
        assert_eq!(info.backing, None);
    }

    #[test]
    fn backing_name_past_end_of_file_is_an_error() {
        let mut h = qcow2_header(4096, None);
        h[8..16].copy_from_slice(&400u64.to_be_bytes());
        h[16..20].copy_from_slice(&200u32.to_be_bytes());
        let p = temp("trunc", &h);
        let err = probe_path(&p).unwrap_err();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn short_file_is_raw() {
        let p = temp("short", b"QF");
        let info = probe_path(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(info.format, "raw");
    }
}
