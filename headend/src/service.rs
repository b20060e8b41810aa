//! Running as a system service: systemd readiness and watchdog (sd_notify(3)),
//! and dropping root to an unprivileged user that keeps only the two
//! capabilities a headend needs (capabilities(7)).

use std::collections::HashSet;
use std::ffi::CString;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use caps::{CapSet, Capability};

/// What the headend needs once running: creating/configuring its TUN device
/// (CAP_NET_ADMIN) and binding 443 (CAP_NET_BIND_SERVICE). The systemd unit
/// grants the same two as ambient capabilities.
pub const KEPT_CAPABILITIES: [Capability; 2] =
    [Capability::CAP_NET_ADMIN, Capability::CAP_NET_BIND_SERVICE];

/// Tells systemd (Type=notify) that the listeners and the TUN device are up,
/// and starts the watchdog pings if the unit asks for them (WatchdogSec=).
/// Without NOTIFY_SOCKET (not under systemd) this does nothing.
pub fn notify_ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!("sd_notify READY=1: {e}");
    }
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        // Half the timeout, as sd_watchdog_enabled(3) recommends. The ping runs
        // on the same runtime as the connections: a wedged runtime stops it.
        let every = (timeout / 2).max(Duration::from_millis(100));
        tracing::info!("systemd watchdog: ping every {every:?}");
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
}

/// Tells systemd the headend is shutting down (it logs off every session first).
pub fn notify_stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

/// Tells systemd a reload (SIGHUP) started or that the headend is stopping.
pub fn notify_status(state: &str) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(state)]);
}

/// A user to run as, from the password database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

impl RunAs {
    pub fn lookup(name: &str) -> Result<Self> {
        let c = CString::new(name).context("user name with a NUL byte")?;
        let mut pw: libc::passwd = unsafe_zeroed_passwd();
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        // SAFETY: every pointer is valid for the call; getpwnam_r writes into
        // `pw`/`buf` only and sets `out` to &pw or null.
        let rc =
            unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
        if rc != 0 {
            bail!(
                "looking up user {name}: {}",
                std::io::Error::from_raw_os_error(rc)
            );
        }
        if out.is_null() {
            bail!("no such user: {name} (create it: useradd --system headend)");
        }
        Ok(Self {
            name: name.to_string(),
            uid: pw.pw_uid,
            gid: pw.pw_gid,
        })
    }
}

fn unsafe_zeroed_passwd() -> libc::passwd {
    // SAFETY: passwd is plain C data (integers and pointers); all-zero is a
    // valid value that getpwnam_r overwrites.
    unsafe { std::mem::zeroed() }
}

/// Gives `path` (the pre-bound admin socket) to `user`, so that it can remove
/// it at shutdown and use it itself.
pub fn chown(path: &Path, user: &RunAs) -> Result<()> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
        .with_context(|| format!("chown {} to {}", path.display(), user.name))
}

/// Becomes `user` (uid, gid, no supplementary groups) keeping only
/// [`KEPT_CAPABILITIES`] (effective, permitted, inheritable and ambient) and
/// dropping every other one from the bounding set, so nothing can get root
/// back. Must run while the process has ONE thread: set*id and capset apply
/// to the calling thread only (glibc broadcasts set*id, not capabilities), so
/// call it before the async runtime starts.
pub fn drop_privileges(user: &RunAs) -> Result<()> {
    if threads() != Some(1) {
        bail!("dropping privileges needs a single-threaded process");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "--user {} needs the headend to be started as root",
            user.name
        );
    }
    if user.uid == 0 {
        bail!("--user {}: that is root", user.name);
    }
    // Keep the permitted set across the uid change (PR_SET_KEEPCAPS), then cut it down.
    caps::securebits::set_keepcaps(true).context("PR_SET_KEEPCAPS")?;
    let groups = [user.gid];
    // SAFETY: `groups` outlives the call and its length is passed.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setgroups");
    }
    // SAFETY: plain syscalls with integer arguments.
    if unsafe { libc::setresgid(user.gid, user.gid, user.gid) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setresgid");
    }
    // SAFETY: as above.
    if unsafe { libc::setresuid(user.uid, user.uid, user.uid) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setresuid");
    }
    // Bounding set: needs CAP_SETPCAP, still permitted thanks to keepcaps.
    caps::raise(None, CapSet::Effective, Capability::CAP_SETPCAP).context("raise CAP_SETPCAP")?;
    let kept: HashSet<Capability> = KEPT_CAPABILITIES.into_iter().collect();
    for cap in caps::read(None, CapSet::Bounding).context("reading the bounding set")? {
        if !kept.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .with_context(|| format!("dropping {cap} from the bounding set"))?;
        }
    }
    caps::set(None, CapSet::Effective, &kept).context("setting effective capabilities")?;
    caps::set(None, CapSet::Permitted, &kept).context("setting permitted capabilities")?;
    caps::set(None, CapSet::Inheritable, &kept).context("setting inheritable capabilities")?;
    caps::securebits::set_keepcaps(false).context("PR_SET_KEEPCAPS off")?;
    for cap in KEPT_CAPABILITIES {
        // Ambient: as systemd's AmbientCapabilities=, survives an exec.
        caps::raise(None, CapSet::Ambient, cap).with_context(|| format!("ambient {cap}"))?;
    }
    // Proof that there is no way back.
    // SAFETY: plain syscall.
    if unsafe { libc::setuid(0) } == 0 {
        bail!("still able to become root after dropping privileges");
    }
    Ok(())
}

/// Threads of this process, from /proc/self/status.
fn threads() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_looked_up_in_the_password_database() {
        let root = RunAs::lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let err = RunAs::lookup("no-such-user-headend-test").unwrap_err();
        assert!(err.to_string().contains("no such user"), "{err}");
    }
}
