//! paddock-init as a library: the pieces of PID 1, so the binary stays a
//! thin entry point and tests can drive the parts that make sense alone
//! (the API process, configuration, formats).

pub mod api;
pub mod bootstrap;
pub mod children;
pub mod config;
pub mod control;
pub mod demo;
pub mod entropy;
pub mod fatal;
pub mod fsutil;
pub mod keys;
pub mod log;
pub mod modules;
pub mod mounts;
pub mod net;
pub mod net_services;
pub mod notify;
pub mod pid1;
pub mod power;
pub mod procfs;
#[cfg(test)]
mod seccomp_probe;
pub mod shutdown;
pub mod status;
pub mod storage;
pub mod tls;
pub mod workspaces;
