//! One module per command group.

pub(crate) mod apps;
pub(crate) mod config;
pub(crate) mod domains;
pub(crate) mod logs;
pub(crate) mod ps;
pub(crate) mod releases;
