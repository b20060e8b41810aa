//! `tput`: the server side of loadgen's throughput runs (`benches/tput.sh`).
//!
//! - `tput sink --bind 198.18.1.10:9`: counts the UDP datagrams that arrive
//!   (loadgen's upstream, `--traffic udp --gbps G`), per source address (one
//!   per session), until a line or EOF on stdin or `--max-secs`.
//! - `tput send --addresses FILE --gbps G --duration S`: sends UDP datagrams
//!   of `--size` bytes (IP packet) round-robin to every tunnel address in
//!   FILE (loadgen `--addresses-out`) at G Gbit/s in total (downstream).
//!
//! Plain threads and syscalls (`recvmmsg`/`sendmmsg`, 64 datagrams a call),
//! paced by `benches::loadgen::pace` (1 ms ticks), every loop bounded by a
//! deadline. Each prints one `RESULT_JSON {...}` line, including its own CPU
//! time, so a saturated sender or sink shows in the report.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use benches::loadgen::pace::Pacer;
use benches::loadgen::procstat;
use clap::{Parser, Subcommand};
use serde_json::json;

/// IPv4 + UDP headers: `--size` and the byte counts are IP packet sizes, as
/// loadgen's `--size` and its counters.
const IP_UDP: usize = 28;
/// Datagrams per recvmmsg/sendmmsg.
const BATCH: usize = 64;
/// Receive buffer asked for (SO_RCVBUFFORCE as root): a 100 ms burst at
/// 2.5 Gbit/s, so the sink is not where datagrams are lost.
const SINK_RCVBUF: libc::c_int = 32 << 20;
const TICK: Duration = Duration::from_millis(1);

#[derive(Debug, Parser)]
#[command(about = "UDP sink and paced sender for loadgen throughput runs")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Count UDP datagrams arriving on --bind until a line (or EOF) on stdin.
    Sink {
        #[arg(long)]
        bind: SocketAddrV4,
        /// Stop after this many seconds at the latest.
        #[arg(long, default_value_t = 900.0)]
        max_secs: f64,
    },
    /// Send UDP to every address in --addresses at --gbps in total.
    Send {
        /// Destination addresses, one per line (loadgen --addresses-out).
        #[arg(long)]
        addresses: PathBuf,
        /// Destination UDP port (loadgen's sessions listen on 40000).
        #[arg(long, default_value_t = 40000)]
        port: u16,
        /// Total offered rate in Gbit/s (IP packets).
        #[arg(long)]
        gbps: f64,
        /// IP packet size in bytes (at most the tunnel MTU).
        #[arg(long, default_value_t = 1380)]
        size: usize,
        /// Seconds to send.
        #[arg(long)]
        duration: f64,
        /// Sending threads (each a socket and a share of the addresses).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Sink { bind, max_secs } => sink(bind, max_secs),
        Cmd::Send {
            addresses,
            port,
            gbps,
            size,
            duration,
            threads,
        } => {
            let text = std::fs::read_to_string(&addresses)
                .with_context(|| format!("reading {}", addresses.display()))?;
            let addrs: Vec<Ipv4Addr> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.trim().parse().with_context(|| format!("address '{l}'")))
                .collect::<Result<_>>()?;
            send(&addrs, port, gbps, size, duration, threads)
        }
    }
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> bool {
    // SAFETY: a live socket; the pointer/length are of a local c_int.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            std::ptr::from_ref(&v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, opt: libc::c_int) -> libc::c_int {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a live socket; the pointers are of locals of the right size.
    unsafe {
        libc::getsockopt(fd, level, opt, std::ptr::from_mut(&mut v).cast(), &mut len);
    }
    v
}

fn self_cpu_s() -> f64 {
    procstat::sample(std::process::id()).map_or(0.0, |s| s.cpu_s)
}

// ------------------------------------------------------------------ sink

#[derive(Default)]
struct SinkCounts {
    packets: u64,
    bytes: u64,
    truncated: u64,
    per_source: HashMap<Ipv4Addr, u64>,
    first: Option<Instant>,
    last: Option<Instant>,
}

fn sink(bind: SocketAddrV4, max_secs: f64) -> Result<()> {
    let sock = UdpSocket::bind(bind).with_context(|| format!("bind {bind}"))?;
    let fd = sock.as_raw_fd();
    if !setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SINK_RCVBUF) {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, SINK_RCVBUF);
    }
    let rcvbuf = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF);
    // The receive loop checks the stop flag at least this often.
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let cpu0 = self_cpu_s();
    let rx = {
        let stop = stop.clone();
        std::thread::spawn(move || receive(&sock, &stop, t0 + Duration::from_secs_f64(max_secs)))
    };
    println!("TPUT_SINK_READY {bind} rcvbuf={rcvbuf}");
    // A line or EOF on stdin ends the count (the script's fifo, or a test).
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        stop.store(true, Ordering::Relaxed);
    });
    let c = rx
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))?;
    let cpu = self_cpu_s() - cpu0;
    let active = match (c.first, c.last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let per: Vec<u64> = c.per_source.values().copied().collect();
    let out = json!({
        "packets": c.packets,
        "bytes": c.bytes,
        "truncated": c.truncated,
        "sources": per.len(),
        "per_source": {"min": per.iter().min(), "max": per.iter().max()},
        "active_s": active,
        "gbit_s_active": if active > 0.0 { c.bytes as f64 * 8.0 / active / 1e9 } else { 0.0 },
        "cpu_s": cpu,
        "rcvbuf": rcvbuf,
        "run_s": t0.elapsed().as_secs_f64(),
    });
    println!(
        "sink: {} datagrams, {} bytes from {} sources over {active:.2} s; CPU {cpu:.2} s",
        c.packets,
        c.bytes,
        per.len()
    );
    println!("RESULT_JSON {out}");
    Ok(())
}

fn receive(sock: &UdpSocket, stop: &AtomicBool, deadline: Instant) -> SinkCounts {
    const BUF: usize = 2048;
    let fd = sock.as_raw_fd();
    let mut bufs = vec![0u8; BUF * BATCH];
    // SAFETY: sockaddr_in is plain data; zeroed is valid.
    let mut names: Vec<libc::sockaddr_in> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .chunks_mut(BUF)
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; zeroed is valid, filled in below.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut c = SinkCounts::default();
    // Bounded by the stop flag and the deadline (recvmmsg times out every 100 ms).
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        for i in 0..BATCH {
            msgs[i].msg_hdr.msg_name = std::ptr::from_mut(&mut names[i]).cast();
            msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            msgs[i].msg_hdr.msg_iov = std::ptr::from_mut(&mut iovs[i]);
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at live buffers, names and iovecs of
        // BATCH entries that outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            continue;
        }
        let now = Instant::now();
        c.first.get_or_insert(now);
        c.last = Some(now);
        for i in 0..n as usize {
            let m = &msgs[i];
            c.packets += 1;
            c.bytes += u64::from(m.msg_len) + IP_UDP as u64;
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                c.truncated += 1;
            }
            let src = Ipv4Addr::from(u32::from_be(names[i].sin_addr.s_addr));
            *c.per_source.entry(src).or_default() += 1;
        }
    }
    c
}

// ------------------------------------------------------------------ send

#[derive(Default, Clone, Copy)]
struct SendCounts {
    packets: u64,
    errors: u64,
    lagged: u64,
}

fn send(
    addrs: &[Ipv4Addr],
    port: u16,
    gbps: f64,
    size: usize,
    duration: f64,
    threads: usize,
) -> Result<()> {
    if addrs.is_empty() {
        bail!("no addresses to send to");
    }
    if !(IP_UDP + 8..=1500).contains(&size) {
        bail!("--size {size}: 36..=1500");
    }
    if !(gbps > 0.0 && duration > 0.0 && duration <= 3600.0) {
        bail!("--gbps must be > 0 and --duration in (0, 3600]");
    }
    let threads = threads.clamp(1, addrs.len().min(16));
    let pps = gbps * 1e9 / 8.0 / size as f64;
    let cpu0 = self_cpu_s();
    let t0 = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mine: Vec<SocketAddrV4> = addrs
                .iter()
                .skip(t)
                .step_by(threads)
                .map(|a| SocketAddrV4::new(*a, port))
                .collect();
            let rate = pps * mine.len() as f64 / addrs.len() as f64;
            std::thread::spawn(move || send_thread(&mine, rate, size, duration))
        })
        .collect();
    let mut total = SendCounts::default();
    for h in handles {
        let c = h.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
        total.packets += c.packets;
        total.errors += c.errors;
        total.lagged += c.lagged;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = self_cpu_s() - cpu0;
    let bytes = total.packets * size as u64;
    let out = json!({
        "destinations": addrs.len(),
        "threads": threads,
        "size": size,
        "asked_gbit_s": gbps,
        "packets": total.packets,
        "bytes": bytes,
        "secs": secs,
        "gbit_s": bytes as f64 * 8.0 / secs / 1e9,
        "send_errors": total.errors,
        "pacer_lagged": total.lagged,
        "cpu_s": cpu,
        "cpu_pct": 100.0 * cpu / secs,
    });
    println!(
        "send: {} datagrams of {size} B to {} addresses in {secs:.2} s ({:.3} Gbit/s, asked {gbps}); {} send errors, {} written off; CPU {:.0} %",
        total.packets,
        addrs.len(),
        bytes as f64 * 8.0 / secs / 1e9,
        total.errors,
        total.lagged,
        100.0 * cpu / secs
    );
    println!("RESULT_JSON {out}");
    Ok(())
}

fn send_thread(
    dests: &[SocketAddrV4],
    rate: f64,
    size: usize,
    duration: f64,
) -> Result<SendCounts> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    // A full queue blocks at most this long, then the batch counts as errors.
    sock.set_write_timeout(Some(Duration::from_millis(50)))?;
    let fd = sock.as_raw_fd();
    let payload = {
        let mut p = vec![0x5au8; size - IP_UDP];
        p[..8].copy_from_slice(b"loadgen!");
        p
    };
    let names: Vec<libc::sockaddr_in> = dests
        .iter()
        .map(|a| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            },
            sin_zero: [0; 8],
        })
        .collect();
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: mmsghdr is plain data; zeroed is valid, filled in per batch.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut pacer = Pacer::new(rate, Pacer::burst_for(rate, TICK.as_secs_f64(), 10.0));
    let mut c = SendCounts::default();
    let mut next = 0usize;
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(duration);
    let mut tick = t0;
    // Bounded by `end`; each pass sends at most the pacer's burst cap.
    while Instant::now() < end {
        let mut due = pacer.due(t0.elapsed().as_secs_f64());
        while due > 0 {
            let k = (due as usize).min(BATCH);
            for m in msgs.iter_mut().take(k) {
                let name = &names[next];
                next = (next + 1) % names.len();
                m.msg_hdr.msg_name = std::ptr::from_ref(name) as *mut libc::c_void;
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                m.msg_hdr.msg_iov = std::ptr::from_mut(&mut iov);
                m.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: k headers pointing at `names` and the one iovec over
            // `payload`, all alive across the call; sendmmsg only reads them.
            let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), k as u32, 0) };
            let sent = if n < 0 { 0 } else { n as u64 };
            c.packets += sent;
            c.errors += k as u64 - sent;
            due -= k as u64;
        }
        tick += TICK;
        let now = Instant::now();
        if tick > now {
            std::thread::sleep(tick - now);
        } else {
            tick = now;
        }
    }
    c.lagged = pacer.lagged();
    Ok(c)
}
