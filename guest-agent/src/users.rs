//! Who commands run as: root, or the template's unprivileged `agent` user,
//! looked up in /etc/passwd (a static binary has no NSS).

use paddock_proto::User;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

pub fn parse_passwd(text: &str, name: &str) -> Option<Account> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || f[0] != name {
            return None;
        }
        Some(Account {
            name: f[0].to_string(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5].to_string(),
            shell: f[6].to_string(),
        })
    })
}

pub fn lookup(user: User) -> Option<Account> {
    let name = match user {
        User::Root => "root",
        User::Agent => "agent",
    };
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    parse_passwd(&text, name).or_else(|| match user {
        // A root filesystem without a passwd entry for root still has root.
        User::Root => Some(Account {
            name: "root".into(),
            uid: 0,
            gid: 0,
            home: "/root".into(),
            shell: "/bin/sh".into(),
        }),
        User::Agent => None,
    })
}

/// Gives the calling thread, and only it, `user`'s credentials for good:
/// no supplementary groups, its gid and uid as real, effective, saved and
/// filesystem ids. A non-root uid leaves the thread no capabilities, so
/// the kernel checks every file access (and every /proc/PID access) as that
/// user. Raw system calls on purpose: glibc's setuid and friends change
/// every thread of the process, and the agent's other threads serve other
/// connections as root.
pub fn become_user(user: User) -> std::io::Result<()> {
    if user == User::Root {
        return Ok(());
    }
    let account = lookup(user)
        .ok_or_else(|| std::io::Error::other(format!("no {user:?} account in /etc/passwd")))?;
    if account.uid == 0 || account.gid == 0 {
        return Err(std::io::Error::other(format!(
            "the {} account has uid {} gid {}: refusing to treat it as unprivileged",
            account.name, account.uid, account.gid
        )));
    }
    let (uid, gid) = (
        libc::c_long::from(account.uid),
        libc::c_long::from(account.gid),
    );
    // SAFETY: setgroups with an empty list, then setresgid and setresuid
    // with plain integers; as raw syscalls they touch only this thread.
    let ok = unsafe {
        libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) == 0
            && libc::syscall(libc::SYS_setresgid, gid, gid, gid) == 0
            && libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_entries_and_skips_junk() {
        let t = "root:x:0:0:root:/root:/bin/bash\nbroken line\nagent:x:1000:1000::/home/agent:/bin/bash\n";
        let a = parse_passwd(t, "agent").expect("agent");
        assert_eq!((a.uid, a.gid, a.home.as_str()), (1000, 1000, "/home/agent"));
        assert!(parse_passwd(t, "nobody").is_none());
        assert!(parse_passwd("agent:x:notanumber:1::/:/bin/sh", "agent").is_none());
    }
}
