//! Network namespaces by name (`ip netns`, i.e. `/run/netns/NAME`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use crate::cmd;

pub fn exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

pub fn add(name: &str) -> Result<(), String> {
    cmd::run(&mut cmd::command("ip", &["netns", "add", name]))?;
    cmd::run(&mut cmd::command(
        "ip",
        &["-n", name, "link", "set", "lo", "up"],
    ))?;
    Ok(())
}

/// Pids of the processes whose network namespace is `name`.
pub fn pids(name: &str) -> Vec<i32> {
    cmd::run(&mut cmd::command("ip", &["netns", "pids", name]))
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills what still runs in the namespace (all of it was started by the lab that made
/// the namespace) and deletes it. Best effort: for cleanup paths.
pub fn destroy(name: &str) {
    if !exists(name) {
        return;
    }
    for pid in pids(name) {
        // SAFETY: plain syscall on a pid read from the kernel just now.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    if let Err(e) = cmd::run(&mut cmd::command("ip", &["netns", "del", name])) {
        eprintln!("lab cleanup: {e}");
    }
}

/// `ip netns exec NS args...` (ip execs the program: the child's pid is the program's).
pub fn exec<S: AsRef<std::ffi::OsStr>>(ns: &str, args: &[S]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]);
    c.args(args);
    c
}

/// Runs `f` on a fresh thread that has joined network namespace `ns`, so sockets it
/// opens live there (they stay there when handed back to another thread).
pub fn in_netns<T, F>(ns: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = Path::new("/run/netns").join(ns);
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        let file = File::open(&path)
            .unwrap_or_else(|e| panic!("open {} (namespace {ns}): {e}", path.display()));
        // SAFETY: setns on a valid fd; CLONE_NEWNET changes only this thread's namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            panic!("setns({ns}): {}", std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}
