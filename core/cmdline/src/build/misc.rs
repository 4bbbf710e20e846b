//! The remaining device families: filesystems, smartcards, TPMs,
//! watchdogs, USB redirection, host devices, RNGs, vmcoreinfo, launch
//! security, panic devices, shared memory and vsock.

use super::Ctx;
use crate::error::Result;

pub(super) fn filesystems(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}
pub(super) fn smartcards(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}
pub(super) fn tpms(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}
pub(super) fn watchdogs(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}
pub(super) fn redirdevs(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}
pub(super) fn hostdevs(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}
pub(super) fn rngs(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}
pub(super) fn vmcoreinfo(ctx: &mut Ctx) {
    if ctx.def.features.as_ref().and_then(|f| f.vmcoreinfo) == Some(qvisor_domain::OnOff::On) {
        ctx.device(crate::props::Props::new().with("driver", "vmcoreinfo"));
    }
}
pub(super) fn launch_security(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}
pub(super) fn panics(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}
pub(super) fn shmems(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}
pub(super) fn vsock(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}
