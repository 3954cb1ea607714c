//! `dce`: removes nodes no graph output depends on. Graph inputs stay (they are the signature).
//! Needs nothing before it; always leaves a verified graph verified.

use crate::error::PassError;
use crate::manager::{Pass, PassCx};
use dync_ir::Graph;

pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }
    fn run(&self, g: &mut Graph, _cx: &mut PassCx) -> Result<bool, PassError> {
        Ok(g.remove_dead() > 0)
    }
}
