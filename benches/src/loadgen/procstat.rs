//! Samples of the server process from `/proc/PID` (proc(5)): RSS, CPU time,
//! threads and open file descriptors.

use std::path::PathBuf;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    pub rss_kib: u64,
    /// utime + stime, seconds.
    pub cpu_s: f64,
    pub threads: u64,
    pub fds: u64,
}

/// Parses `/proc/PID/stat`: utime and stime (fields 14, 15, in clock ticks)
/// and num_threads (field 20). The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after the last `)`.
pub fn parse_stat(stat: &str, ticks_per_s: f64) -> Option<(f64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field N is f[N - 3].
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let threads = f.get(17)?.parse().ok()?;
    Some(((utime + stime) / ticks_per_s, threads))
}

/// `VmRSS:` of `/proc/PID/status`, KiB.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn sample(pid: u32) -> Option<ProcSample> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let stat = std::fs::read_to_string(base.join("stat")).ok()?;
    let status = std::fs::read_to_string(base.join("status")).ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let (cpu_s, threads) = parse_stat(&stat, ticks)?;
    let fds = std::fs::read_dir(base.join("fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Some(ProcSample {
        rss_kib: parse_rss_kib(&status)?,
        cpu_s,
        threads,
        fds,
    })
}

/// The processes whose network namespace is `/run/netns/NAME` (`ip netns
/// pids NAME`): ocserv runs a process per session, all in its namespace.
pub fn pids_in_netns(name: &str) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(want) = std::fs::metadata(format!("/run/netns/{name}")).map(|m| m.ino()) else {
        return Vec::new();
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == want)
        })
        .collect()
}

/// The sum over `pids` (RSS, CPU, threads, fds); None if none could be read.
pub fn sample_all(pids: &[u32]) -> Option<ProcSample> {
    let mut total: Option<ProcSample> = None;
    for s in pids.iter().filter_map(|p| sample(*p)) {
        let t = total.get_or_insert_with(ProcSample::default);
        t.rss_kib += s.rss_kib;
        t.cpu_s += s.cpu_s;
        t.threads += s.threads;
        t.fds += s.fds;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name() {
        let stat = "1234 (my (weird) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 7 0 12345 1000000 200 18446744073709551615";
        assert_eq!(parse_stat(stat, 100.0), Some((3.0, 7)));
        assert_eq!(parse_stat("garbage", 100.0), None);
        assert_eq!(parse_stat("1 (x) S 1 2", 100.0), None);
    }

    #[test]
    fn rss_from_status() {
        let s = "Name:\theadend\nVmPeak:\t  9000 kB\nVmRSS:\t    15360 kB\nThreads:\t3\n";
        assert_eq!(parse_rss_kib(s), Some(15360));
        assert_eq!(parse_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn sums_over_processes_and_unknown_netns_is_empty() {
        let me = std::process::id();
        let one = sample_all(&[me]).unwrap();
        let two = sample_all(&[me, me]).unwrap();
        assert!(two.fds >= 2 * one.fds.saturating_sub(1) && two.threads >= one.threads);
        assert_eq!(sample_all(&[]), None);
        assert!(pids_in_netns("no-such-netns-loadgen").is_empty());
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0 && s.threads >= 1 && s.fds >= 1);
    }
}
