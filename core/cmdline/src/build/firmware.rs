//! Firmware: `-bios`, pflash blockdevs for UEFI, NVRAM, and firmware
//! autoselection from descriptor files.

use qvisor_domain::{Domain, LoaderType};

use super::Ctx;
use crate::error::Result;

/// Whether the loader is a pflash (UEFI) image handed over as blockdevs.
pub(super) fn old_style_uefi(def: &Domain) -> bool {
    def.os
        .loader
        .as_ref()
        .is_some_and(|l| l.kind == Some(LoaderType::Pflash) && l.path.is_some())
}

pub(super) fn pflash_blockdevs(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}

pub(super) fn loader(ctx: &mut Ctx) {
    let Some(l) = ctx.def.os.loader.clone() else {
        return;
    };
    if let (Some(LoaderType::Rom) | None, Some(path)) = (l.kind, &l.path) {
        ctx.word("-bios", path.clone());
    }
}
