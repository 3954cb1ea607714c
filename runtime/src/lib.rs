//! dync-runtime: what generated programs link. Grows with the backend.
pub mod npy;
