//! Entry names: what a restore may turn into a path under its staging
//! directory, so nothing that could climb out of it or mean two things.

use crate::error::BackupError;
use crate::MAX_NAME;

/// Why `name` is not an entry name, if it is not one.
pub(crate) fn check(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_NAME {
        return Err("it is longer than 128 bytes");
    }
    if !name
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
    {
        return Err("only letters, digits, '.', '_', '-' and '/' may appear");
    }
    if name[0] == b'/' {
        return Err("it starts with '/'");
    }
    for part in name.split(|b| *b == b'/') {
        match part {
            b"" => return Err("it has an empty path component ('//' or a trailing '/')"),
            b"." | b".." => return Err("it has a '.' or '..' path component"),
            _ => {}
        }
    }
    Ok(())
}

/// `check`, as the error that names the entry.
pub(crate) fn checked(name: &[u8]) -> Result<String, BackupError> {
    check(name).map_err(|why| BackupError::BadName {
        name: String::from_utf8_lossy(name).into_owned(),
        why,
    })?;
    // Checked above: ASCII only.
    Ok(name.iter().map(|b| *b as char).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_stay_inside_a_directory_pass() {
        for ok in [
            "redb.json",
            "audit/2024-01-02.log",
            "a",
            "A_b-c.d/e",
            ".hidden",
            "a..b",
        ] {
            assert_eq!(check(ok.as_bytes()), Ok(()), "{ok}");
        }
        assert_eq!(check(&[b'x'; 128]), Ok(()));
    }

    #[test]
    fn names_that_could_climb_out_or_confuse_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "../x",
            "a/../b",
            "a/..",
            ".",
            "./a",
            "a//b",
            "a/",
            "sp ace",
            "tab\t",
            "nul\0",
            "back\\slash",
            "é",
            "a:b",
        ] {
            assert!(check(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(check(&[b'x'; 129]).is_err());
        assert!(check(&[0xff]).is_err());
        let e = checked(b"../x").expect_err("refused").to_string();
        assert!(e.contains("\"../x\"") && e.contains("'..'"), "{e}");
    }
}
