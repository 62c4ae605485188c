//! Paddock's VMM: boots one KVM microVM per process on the rust-vmm crates.

pub mod arch;
pub mod cli;
pub mod config;
pub mod control;
pub mod devices;
pub mod entropy;
pub mod exit;
pub mod memory;
pub mod rate_limit;
pub mod seccomp;
pub mod sync;
pub mod threads;
pub mod trace;
pub mod vcpu;
pub mod virtio;
pub mod vm;
