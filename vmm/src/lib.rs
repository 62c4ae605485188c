//! Paddock's VMM: boots one KVM microVM per process on the rust-vmm crates.

pub mod arch;
pub mod cli;
pub mod config;
pub mod control;
pub mod control_client;
pub mod devices;
pub mod entropy;
pub mod exit;
pub mod fd_passing;
pub mod memory;
pub mod pause;
pub mod rate_limit;
pub mod restore;
pub mod seccomp;
pub mod snapshot;
pub mod sync;
pub mod threads;
pub mod trace;
pub mod vcpu;
pub mod virtio;
pub mod vm;
