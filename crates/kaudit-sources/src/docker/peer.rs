//! Who is on the other end of a unix socket: `SO_PEERCRED` (uid, gid, pid
//! as the kernel saw them at `connect`), the user and group names from the
//! passwd/group databases, and the process's executable and command line
//! from `/proc` (best effort: the process may be gone or belong to someone
//! the proxy may not inspect).

use super::map::Peer;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Longest command line kept, in bytes.
pub const MAX_CMDLINE: usize = 4096;
/// Largest passwd/group file read (a bigger one is read up to this).
const MAX_DB: u64 = 16 << 20;

/// The kernel's credentials of the peer of `s`.
pub fn peer_cred(s: &UnixStream) -> std::io::Result<(u32, u32, i32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a valid, writable ucred and `len` holds its size, as
    // getsockopt(SO_PEERCRED) requires; the fd is owned by `s` and open.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((cred.uid, cred.gid, cred.pid))
}

fn read_db(path: &Path) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(MAX_DB).read_to_string(&mut s);
    }
    s
}

/// The user name of `uid` in a passwd file's text.
pub fn user_name_in(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _pw = f.next()?;
        let u: u32 = f.next()?.parse().ok()?;
        (u == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// Names of the groups `user` belongs to in a group file's text: `gid`'s
/// group first, then those listing the user as a member.
pub fn groups_in(group: &str, user: &str, gid: u32) -> Vec<String> {
    let mut primary = None;
    let mut rest = Vec::new();
    for l in group.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || f[0].is_empty() {
            continue;
        }
        if f[2].parse::<u32>().ok() == Some(gid) {
            primary = Some(f[0].to_string());
        } else if f[3].split(',').any(|m| m == user) {
            rest.push(f[0].to_string());
        }
        if rest.len() >= 256 {
            break;
        }
    }
    primary.into_iter().chain(rest).collect()
}

/// A peer with names and process details filled in from `/etc` and `/proc`.
pub fn describe(uid: u32, gid: u32, pid: i32) -> Peer {
    let user =
        user_name_in(&read_db(Path::new("/etc/passwd")), uid).unwrap_or_else(|| uid.to_string());
    let groups = groups_in(&read_db(Path::new("/etc/group")), &user, gid);
    let (exe, cmdline) = if pid > 0 {
        process(pid)
    } else {
        (String::new(), String::new())
    };
    Peer {
        uid,
        gid,
        pid,
        user,
        groups,
        exe,
        cmdline,
    }
}

/// `/proc/<pid>/exe` and `/proc/<pid>/cmdline` (NULs as spaces, bounded).
pub fn process(pid: i32) -> (String, String) {
    use std::io::Read;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut raw = Vec::new();
    if let Ok(f) = std::fs::File::open(format!("/proc/{pid}/cmdline")) {
        let _ = f.take(MAX_CMDLINE as u64).read_to_end(&mut raw);
    }
    while raw.last() == Some(&0) {
        raw.pop();
    }
    let cmd: Vec<u8> = raw
        .into_iter()
        .map(|b| if b == 0 { b' ' } else { b })
        .collect();
    (exe, String::from_utf8_lossy(&cmd).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_and_group_lookups() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nbad line\nalice:x:1001:1001::/home/alice:/bin/sh\n:x:5:5\n";
        assert_eq!(user_name_in(passwd, 1001).as_deref(), Some("alice"));
        assert_eq!(user_name_in(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name_in(passwd, 5), None);
        assert_eq!(user_name_in(passwd, 7), None);
        let group = "root:x:0:\nalice:x:1001:\ndocker:x:999:bob,alice\nshort\n";
        assert_eq!(groups_in(group, "alice", 1001), vec!["alice", "docker"]);
        assert_eq!(groups_in(group, "bob", 50), vec!["docker"]);
    }

    #[test]
    fn peer_of_a_socket_pair_is_this_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let (uid, gid, pid) = peer_cred(&a).unwrap();
        assert_eq!(pid, std::process::id() as i32);
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (me, mg) = unsafe { (libc::getuid(), libc::getgid()) };
        assert_eq!((uid, gid), (me, mg));
        let p = describe(uid, gid, pid);
        assert!(!p.exe.is_empty(), "own /proc/self/exe is readable");
        assert!(!p.cmdline.is_empty());
    }
}
