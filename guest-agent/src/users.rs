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
