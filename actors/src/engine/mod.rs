//! The library's front door: [`Engine::builder`] starts one supervision tree and returns
//! its [`EngineHandle`].
//!
//! - `builder`: [`Engine`] and [`EngineBuilder`].
//! - `handle`: [`EngineHandle`] and what its calls return.

mod builder;
mod handle;

pub use builder::{Engine, EngineBuilder};
pub use handle::{EngineError, EngineHandle, TriggerReport};

#[cfg(test)]
mod tests;
