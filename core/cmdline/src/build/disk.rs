//! Disks: the blockdev graph (storage node, format node, backing chain)
//! and the guest-side `-device`.

use super::Ctx;
use crate::error::Result;

pub(super) fn disks(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}
