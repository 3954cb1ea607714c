//! The pass trait and manager: named, timed, verified passes with IR dumps.
//!
//! Contract of a [`Pass`]: it receives a verified graph, leaves a verified graph, and returns
//! whether it changed anything. The manager verifies after every pass; after a pass that changed
//! the graph it also runs `fold_constants` and `dce`, so no pass needs to clean up after itself.

use crate::error::PassError;
use crate::passes::{dce::Dce, fold_constants::FoldConstants};
use dync_ir::Graph;
use std::time::{Duration, Instant};

/// Something a pass wants the user to know, located at an ONNX node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remark {
    pub pass: &'static str,
    pub origin: String,
    pub message: String,
}

impl std::fmt::Display for Remark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: node {:?}: {}", self.pass, self.origin, self.message)
    }
}

/// What passes share: messages for the user.
#[derive(Debug, Default)]
pub struct PassCx {
    /// What the user should act on: a dynamic conv left as generic ops, and why.
    pub remarks: Vec<Remark>,
    /// What the user may want to know about a recognized dynamic conv: a part of it that
    /// stays a separate op (e.g. ODConv's input-channel attention), and why.
    pub notes: Vec<Remark>,
}

pub trait Pass {
    fn name(&self) -> &'static str;
    /// Rewrites `g`; returns whether anything changed.
    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<bool, PassError>;
}

/// Which passes to print the IR after.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PrintAfter {
    #[default]
    None,
    All,
    Pass(String),
}

/// Runs passes with verification, cleanup, timing and dumps.
pub struct PassManager {
    pub print_after: PrintAfter,
    /// (pass name, time) of every pass run, cleanup included, in order.
    pub timings: Vec<(&'static str, Duration)>,
    /// IR dumps requested by `print_after`: (pass name, IR text).
    pub dumps: Vec<(&'static str, String)>,
    pub cx: PassCx,
}

impl PassManager {
    pub fn new(print_after: PrintAfter) -> Self {
        PassManager {
            print_after,
            timings: Vec::new(),
            dumps: Vec::new(),
            cx: PassCx::default(),
        }
    }

    fn run_one(&mut self, pass: &dyn Pass, g: &mut Graph) -> Result<bool, PassError> {
        let t0 = Instant::now();
        let changed = pass.run(g, &mut self.cx)?;
        self.timings.push((pass.name(), t0.elapsed()));
        if let Err(errors) = dync_ir::verify::verify(g) {
            return Err(PassError::Verify {
                pass: pass.name(),
                report: dync_ir::verify::print_with_errors(g, &errors),
            });
        }
        let wanted = match &self.print_after {
            PrintAfter::None => false,
            PrintAfter::All => true,
            PrintAfter::Pass(p) => p == pass.name(),
        };
        if wanted {
            self.dumps.push((pass.name(), dync_ir::print::print(g)));
        }
        Ok(changed)
    }

    /// Runs `pass`, then (when it changed the graph) constant folding and dead-code elimination.
    pub fn run(&mut self, pass: &dyn Pass, g: &mut Graph) -> Result<bool, PassError> {
        let changed = self.run_one(pass, g)?;
        let is_cleanup = matches!(pass.name(), "fold_constants" | "dce");
        if changed && !is_cleanup {
            self.run_one(&FoldConstants, g)?;
            self.run_one(&Dce, g)?;
        }
        Ok(changed)
    }

    /// Runs every pass of `passes` in order.
    pub fn run_all(&mut self, passes: &[&dyn Pass], g: &mut Graph) -> Result<(), PassError> {
        for p in passes {
            self.run(*p, g)?;
        }
        Ok(())
    }

    /// A `--time-passes` report: one line per pass (times summed over runs), then the total.
    pub fn timing_report(&self) -> String {
        let mut rows: Vec<(&'static str, Duration, usize)> = Vec::new();
        for &(name, d) in &self.timings {
            match rows.iter_mut().find(|r| r.0 == name) {
                Some(r) => {
                    r.1 += d;
                    r.2 += 1;
                }
                None => rows.push((name, d, 1)),
            }
        }
        let total: Duration = rows.iter().map(|r| r.1).sum();
        let mut s = String::from("pass                      runs     time\n");
        for (name, d, n) in rows {
            s.push_str(&format!(
                "{name:<24} {n:>5} {:>9.3} ms\n",
                d.as_secs_f64() * 1e3
            ));
        }
        s.push_str(&format!(
            "{:<30} {:>9.3} ms\n",
            "total",
            total.as_secs_f64() * 1e3
        ));
        s
    }
}
