//! Character devices: `-chardev` backends and serial, parallel, channel
//! and console frontends.

use super::Ctx;
use crate::error::Result;

pub(super) fn serials(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}

pub(super) fn parallels(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}

pub(super) fn channels(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}

pub(super) fn consoles(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}
