//! The agent logs to the console (the VM's serial port), which the host
//! keeps. It never logs environment values, file contents or command output.

pub fn log(msg: std::fmt::Arguments) {
    eprintln!("paddock-agent: {msg}");
}

#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::log(format_args!($($t)*)) };
}
