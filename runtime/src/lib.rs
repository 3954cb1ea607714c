//! dync-runtime: what the programs `dync compile` builds link (as `libdync_runtime.a`), and what
//! the compiler shares with them.
//!
//! - [`npy`]: validated `.npy` reading and writing;
//! - [`model`]: the C ABI of a compiled model (its descriptor) and a validated view to run it;
//! - [`rt`]: the arena, latency statistics, CPU feature checks, the seeded random inputs and the
//!   top-5 report shared with `dync run`;
//! - [`ctx`] and [`pool`]: the context generated code receives (parallel loops on a thread
//!   pool, the profiling hook, the micro-kernel slot);
//! - [`exe`]: the executable's main, `dync_rt_main`, called by the generated `main`.
pub mod ctx;
pub mod exe;
pub mod model;
pub mod npy;
pub mod pool;
pub mod rt;
pub mod ukernel;
