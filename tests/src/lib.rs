//! Paddock's end-to-end test harness and the small tools it runs on both
//! sides of a VM.

pub mod agent_suite;
pub mod appliance;
pub mod bench;
pub mod echo_https;
pub mod esp_config;
pub mod fakenet;
pub mod harness;
pub mod measure;
pub mod pattern;
pub mod proxybed;
pub mod secure_boot;
pub mod uki;
