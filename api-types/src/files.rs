//! A workspace's files beyond their bytes: directory listings, and what
//! a directory's creation answers.

use serde::{Deserialize, Serialize};

/// What a directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One entry of `GET /v1/workspaces/{id}/dir`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits, octal (e.g. "644").
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
    /// Unix seconds.
    pub mtime: i64,
}

/// `GET /v1/workspaces/{id}/dir?path=`: the directory's entries, by name
/// (at most 5000).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirListing {
    pub path: String,
    pub entries: Vec<FileEntry>,
}

/// `POST /v1/workspaces/{id}/dir?path=`: the directory made (with its
/// parents).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirCreated {
    pub created: String,
}
