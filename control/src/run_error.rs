//! The error of preparing, starting, limiting and stopping a workspace,
//! and the helpers that name the path a failed file operation was on.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the workspace did not become ready: {0}")]
    NotReady(String),
    #[error("the workspace's encrypted disk: {0}")]
    Keys(#[from] paddock_keys::KeyError),
    #[error("the workspace's network: {0}")]
    Net(String),
    #[error("its VMM refused: {0}")]
    Vmm(String),
    #[error("{0}")]
    Paused(String),
}

pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RunError {
    let path = path.to_path_buf();
    move |source| RunError::Io { what, path, source }
}

pub(crate) fn write(path: &Path, value: &str) -> Result<(), RunError> {
    std::fs::write(path, value).map_err(io("writing", path))
}
