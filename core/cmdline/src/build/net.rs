//! Network interfaces: `-netdev` backends and NIC `-device`s.

use super::Ctx;
use crate::error::Result;

pub(super) fn interfaces(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}
