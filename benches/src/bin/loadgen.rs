//! `loadgen`: N AnyConnect sessions from one process over the real protocol
//! (TLS with a pin, aggregate-auth XML login, CONNECT, CSTP, DTLS 1.2
//! PSK-NEGOTIATE), inner packets made here, counted on return. See
//! `benches/README.md`.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use benches::loadgen::http::AuthHeaders;
use benches::loadgen::procstat::{self, ProcSample};
use benches::loadgen::report::{self, Row, Stats};
use benches::loadgen::session::{self, Kind, Phase, Setup, Traffic};
use benches::loadgen::{dtls, tls};
use clap::{Parser, ValueEnum};
use serde_json::json;
use tokio::sync::{Semaphore, watch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    Dtls,
    Cstp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TrafficKind {
    Icmp,
    Udp,
}

#[derive(Debug, Parser)]
#[command(about = "Many AnyConnect sessions from one process, as openconnect 9.01 speaks")]
struct Args {
    /// Server URL, e.g. https://198.18.0.1/
    #[arg(long)]
    server: String,
    /// Certificate pin as openconnect takes it: pin-sha256:BASE64 (SPKI) or sha256:HEX.
    #[arg(long)]
    servercert: String,
    /// User name; `{n}` is replaced by the session number (e.g. lg{n}).
    #[arg(long, default_value = "user{n}")]
    user: String,
    /// Password of every user.
    #[arg(long)]
    password: String,
    /// Tunnel group (matched against the group list's labels like --authgroup).
    #[arg(long)]
    group: Option<String>,
    /// Number of sessions.
    #[arg(long, short = 'n', default_value_t = 1)]
    sessions: usize,
    /// Number of the first session (for `{n}`).
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// New sessions started per second (0: as fast as --concurrency allows).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, value_enum, default_value_t = Transport::Dtls)]
    transport: Transport,
    /// Inner packets: ICMP echo to --target, or UDP to --target:--udp-port.
    #[arg(long, value_enum, default_value_t = TrafficKind::Icmp)]
    traffic: TrafficKind,
    #[arg(long, default_value = "198.18.1.10")]
    target: Ipv4Addr,
    #[arg(long, default_value_t = 9)]
    udp_port: u16,
    /// The UDP target echoes: match its replies (loss and RTT) like ICMP.
    #[arg(long)]
    udp_echo: bool,
    /// Packets per second per session (0: idle sessions).
    #[arg(long, default_value_t = 1.0)]
    pps: f64,
    /// Inner IP packet size in bytes (capped at the tunnel MTU).
    #[arg(long, default_value_t = 84)]
    size: usize,
    /// Total offered load upstream in Gbit/s, spread over the sessions (overrides --pps).
    #[arg(long)]
    gbps: Option<f64>,
    /// Packets per session, then stop sending (0: until the end of --duration). The hold
    /// then lasts at least until every session sent them.
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Once up, each session cuts its TCP connection (RST, no logout) and
    /// reconnects with its cookie this many times, as openconnect does after a
    /// network change (new TLS, CONNECT with X-CSTP-Address, new DTLS); the
    /// hold's traffic then goes through the last tunnel.
    #[arg(long, default_value_t = 0)]
    reconnects: u32,
    /// A session whose connection is lost without the server's DISCONNECT (e.g.
    /// `ss -K` on the server) reconnects with its cookie, as openconnect does,
    /// instead of counting as lost (at most 16 times).
    #[arg(long)]
    reconnect_on_loss: bool,
    /// Sessions send nothing while the others connect; once all are up, every
    /// session sends at once (with `--count 1`: one packet to each session in
    /// one burst, to see whether the server's downlink drops any).
    #[arg(long)]
    burst: bool,
    /// Seconds to hold the sessions with traffic once all are up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// At most this many seconds to wait for outstanding echo replies.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Server process to sample (RSS, CPU, threads, fds).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Sample every process of this network namespace instead (summed), e.g.
    /// ocserv's main, sec-mod and per-session workers.
    #[arg(long, conflicts_with = "server_pid")]
    server_netns: Option<String>,
    /// Write the per-second timeline here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Draw sessions, throughput and latency over time here (SVG).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Once every session is up (or failed), write their tunnel addresses here,
    /// one per line (written whole, then renamed into place), before the hold
    /// starts: `tput send` sends to them from the server's side.
    #[arg(long)]
    addresses_out: Option<PathBuf>,
    /// Receive buffer of each session's DTLS socket, bytes (SO_RCVBUFFORCE as
    /// root, else SO_RCVBUF up to net.core.rmem_max); 0 keeps the kernel's
    /// default (net.core.rmem_default, 208 KiB: a stock client's). A server
    /// that serves 100 sessions in bursts overflows the default while loadgen's
    /// tasks wait for the CPU; a larger buffer keeps the count on the server.
    #[arg(long, default_value_t = 0)]
    udp_rcvbuf: usize,
    /// Before logging out, print `LOADGEN_READY` and wait for a line (or EOF) on stdin.
    #[arg(long)]
    wait_stdin: bool,
    /// No progress lines.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn strap_key() -> Result<String> {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)?;
    let key = openssl::ec::EcKey::generate(&group)?;
    let der = openssl::pkey::PKey::from_ec_key(key)?.public_key_to_der()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(der))
}

/// A systemd service starts with a soft limit of 1024 fds: two per DTLS session.
fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
    r.rlim_cur
}

fn parse_server(url: &str) -> Result<(String, SocketAddr, String)> {
    let rest = url
        .strip_prefix("https://")
        .context("--server must be an https:// URL")?;
    let hostport = rest.split('/').next().unwrap_or_default();
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (
            h.trim_matches(['[', ']']).to_owned(),
            p.parse().context("port")?,
        ),
        _ => (hostport.to_owned(), 443),
    };
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .context("no address")?;
    let group_access = if url.ends_with('/') {
        url.trim_end_matches('/').to_owned()
    } else {
        url.to_owned()
    };
    Ok((host, addr, group_access))
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.sessions == 0 {
        bail!("--sessions must be at least 1");
    }
    let nofile = raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = rt.block_on(run(args, nofile))?;
    std::process::exit(code);
}

async fn run(args: Args, nofile: u64) -> Result<i32> {
    let (host, server, group_access) = parse_server(&args.server)?;
    let pin = tls::Pin::parse(&args.servercert).map_err(anyhow::Error::msg)?;
    let n = args.sessions as u64;
    let pps = match args.gbps {
        Some(g) => g * 1e9 / 8.0 / args.size.max(1) as f64 / n as f64,
        None => args.pps,
    };
    let stats = Arc::new(Stats::default());
    let setup = Arc::new(Setup {
        tls: tls::client_config(pin).map_err(anyhow::Error::msg)?,
        dtls: match args.transport {
            Transport::Dtls => Some(dtls::DtlsClientContext::new()?),
            Transport::Cstp => None,
        },
        server,
        host,
        group_access,
        strap: AuthHeaders {
            strap_pubkey: strap_key()?,
            strap_dh_pubkey: strap_key()?,
        },
        user_pattern: args.user.clone(),
        password: args.password.clone(),
        group: args.group.clone(),
        traffic: Traffic {
            kind: match args.traffic {
                TrafficKind::Icmp => Kind::Icmp,
                TrafficKind::Udp => Kind::Udp,
            },
            target: args.target,
            udp_port: args.udp_port,
            udp_echo: args.udp_echo,
            pps,
            size: args.size,
            count: args.count,
        },
        stats: stats.clone(),
        inner_udp_port: 40000,
        reconnects: args.reconnects,
        reconnect_on_loss: args.reconnect_on_loss,
        udp_rcvbuf: args.udp_rcvbuf,
    });
    let transport = format!("{:?}", args.transport).to_lowercase();
    eprintln!(
        "loadgen: {} sessions ({transport}) to {server}, {} in flight, rate {}, {pps:.2} pps x {} B per session, RLIMIT_NOFILE {nofile}",
        n,
        args.concurrency,
        if args.rate > 0.0 {
            format!("{}/s", args.rate)
        } else {
            "unlimited".into()
        },
        args.size
    );

    let netns = args.server_netns.clone();
    let sample = |pid: Option<u32>| match &netns {
        Some(ns) => procstat::sample_all(&procstat::pids_in_netns(ns)),
        None => pid.and_then(procstat::sample),
    };
    let server0 = sample(args.server_pid);
    let t0 = Instant::now();
    let (phase_tx, phase_rx) = watch::channel(if args.burst { Phase::Ramp } else { Phase::Run });
    let sem = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let spawner = {
        let setup = setup.clone();
        let sem = sem.clone();
        let rate = args.rate;
        let first = args.first;
        tokio::spawn(async move {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..args.sessions {
                if rate > 0.0 {
                    let at = t0 + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(at.into()).await;
                }
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    break;
                };
                set.spawn(session::run(
                    setup.clone(),
                    first + i,
                    permit,
                    phase_rx.clone(),
                ));
            }
            set
        })
    };

    let mut rows: Vec<Row> = Vec::new();
    let mut last = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut last_t = 0.0f64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let g = Stats::get;
    let snapshot = |s: &Stats| (g(&s.tx_bytes), g(&s.rx_bytes), g(&s.tx_pkts), g(&s.rx_pkts));
    let mut timeline = |rows: &mut Vec<Row>, quiet: bool| {
        let t = t0.elapsed().as_secs_f64();
        let dt = (t - last_t).max(1e-3);
        let (mut c, mut r) = stats.take_interval();
        let cp = report::percentiles(&mut c, &[99.0]);
        let rp = report::percentiles(&mut r, &[50.0, 99.0]);
        let ms = |v: Option<u32>| v.map(|us| f64::from(us) / 1000.0);
        let now = (
            g(&stats.up),
            g(&stats.tx_bytes),
            g(&stats.rx_bytes),
            g(&stats.tx_pkts),
            g(&stats.rx_pkts),
        );
        let srv = sample(args.server_pid);
        let row = Row {
            t_s: t,
            sessions_up: g(&stats.up)
                .saturating_sub(g(&stats.down))
                .saturating_sub(g(&stats.lost)),
            failed: stats.failed(),
            connects_per_s: (now.0 - last.0) as f64 / dt,
            connect_p99_ms: ms(cp[0]),
            tx_mbit_s: (now.1 - last.1) as f64 * 8.0 / dt / 1e6,
            rx_mbit_s: (now.2 - last.2) as f64 * 8.0 / dt / 1e6,
            tx_pps: (now.3 - last.3) as f64 / dt,
            rx_pps: (now.4 - last.4) as f64 / dt,
            rtt_p50_ms: ms(rp[0]),
            rtt_p99_ms: ms(rp[1]),
            server_rss_kib: srv.map(|s| s.rss_kib),
            server_cpu_s: srv.map(|s| s.cpu_s),
            server_threads: srv.map(|s| s.threads),
            server_fds: srv.map(|s| s.fds),
        };
        if !quiet {
            eprintln!("{}", row.progress(n));
        }
        rows.push(row);
        last = now;
        last_t = t;
    };

    // Ramp: until every session is up or has failed to come up.
    let settled = |s: &Stats| g(&s.up) + s.failed().saturating_sub(g(&s.lost)) >= n;
    let ramp_deadline = Duration::from_secs(600).max(Duration::from_secs_f64(
        n as f64 / args.rate.max(1.0) * 3.0 + 60.0,
    ));
    // Checked every 20 ms, not only at the 1 s timeline tick: connects/s of a
    // short ramp would otherwise be quantised to whole seconds.
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = tick.tick() => timeline(&mut rows, args.quiet),
            _ = poll.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        if settled(&stats) || t0.elapsed() > ramp_deadline {
            break;
        }
    }
    let ramp_s = t0.elapsed().as_secs_f64();
    if let Some(p) = &args.addresses_out {
        write_addresses(p, &stats.addresses())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if args.burst {
        let _ = phase_tx.send(Phase::Run);
    }
    let server_up = sample(args.server_pid);
    let me = std::process::id();
    let self_start = procstat::sample(me);
    let traffic_start = (Instant::now(), snapshot(&stats), server_up);
    let hold_until = Instant::now() + Duration::from_secs_f64(args.duration);
    // With --count the hold lasts until every live session sent its packets
    // (so the count is exact however slow the box), at most 2 minutes more.
    let count_cap = hold_until + Duration::from_secs(120);
    let pending_count = |s: &Stats| {
        let live = g(&s.up).saturating_sub(g(&s.lost));
        args.count > 0 && pps > 0.0 && g(&s.tx_pkts) < live * args.count
    };
    while Instant::now() < hold_until || (pending_count(&stats) && Instant::now() < count_cap) {
        tokio::select! {
            _ = tick.tick() => timeline(&mut rows, args.quiet),
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let traffic_s = traffic_start.0.elapsed().as_secs_f64();
    let traffic_end = (snapshot(&stats), sample(args.server_pid));
    let self_end = procstat::sample(me);
    let _ = phase_tx.send(Phase::Drain);
    let drain_until = Instant::now() + Duration::from_secs_f64(args.drain);
    while g(&stats.echo_recv) < g(&stats.echo_sent) && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server_peak = sample(args.server_pid);
    if args.wait_stdin {
        println!(
            "LOADGEN_READY up={} failed={} failures={}",
            g(&stats.up),
            stats.failed(),
            json!(stats.failures())
        );
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await;
        // Packets sent to the sessions meanwhile (`tput send`) that are still
        // in flight are counted: wait until nothing arrived for 200 ms, at
        // most 5 s.
        let quiet_deadline = Instant::now() + Duration::from_secs(5);
        let mut rx = g(&stats.rx_pkts);
        while Instant::now() < quiet_deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = g(&stats.rx_pkts);
            if now == rx {
                break;
            }
            rx = now;
        }
    }
    let _ = phase_tx.send(Phase::Logout);
    let mut set = spawner.await.context("spawner")?;
    let logout_deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    // Bounded by the number of sessions and the deadline.
    while let Ok(Some(_)) = tokio::time::timeout_at(logout_deadline, set.join_next()).await {}
    set.abort_all();
    timeline(&mut rows, args.quiet);
    let server_end = sample(args.server_pid);

    // Summary.
    let up = g(&stats.up);
    let server_json = server0.map(|s0| {
        let rss_per = |s: Option<ProcSample>| {
            s.map(|s| (s.rss_kib as f64 - s0.rss_kib as f64) / up.max(1) as f64)
        };
        let gb = {
            let (a, b) = (traffic_start.1, traffic_end.0);
            ((b.0 - a.0) + (b.1 - a.1)) as f64 / 1e9
        };
        let cpu_per_gb = match (traffic_start.2, traffic_end.1) {
            (Some(a), Some(b)) if gb > 0.0 => Some((b.cpu_s - a.cpu_s) / gb),
            _ => None,
        };
        json!({
            "pid": args.server_pid,
            "baseline": {"rss_kib": s0.rss_kib, "threads": s0.threads, "fds": s0.fds, "cpu_s": s0.cpu_s},
            "up": server_up.map(|s| json!({"rss_kib": s.rss_kib, "threads": s.threads, "fds": s.fds, "cpu_s": s.cpu_s})),
            "peak": server_peak.map(|s| json!({"rss_kib": s.rss_kib, "threads": s.threads, "fds": s.fds})),
            "end": server_end.map(|s| json!({"rss_kib": s.rss_kib, "threads": s.threads, "fds": s.fds, "cpu_s": s.cpu_s})),
            "rss_kib_per_session": rss_per(server_up),
            "cpu_s_per_gb": cpu_per_gb,
            "hold_cpu_s": match (traffic_start.2, traffic_end.1) {
                (Some(a), Some(b)) => Some(b.cpu_s - a.cpu_s),
                _ => None,
            },
            "connect_cpu_s": server_up.map(|s| s.cpu_s - s0.cpu_s),
        })
    });
    let run_s = t0.elapsed().as_secs_f64();
    let mut summary =
        report::summary_json(&stats, n, &transport, ramp_s, traffic_s, run_s, server_json);
    // Throughput over the hold only (the ramp has fewer sessions).
    let (a, b) = (traffic_start.1, traffic_end.0);
    let secs = traffic_s.max(1e-9);
    summary["hold"] = json!({
        "tx_gbit_s": (b.0 - a.0) as f64 * 8.0 / secs / 1e9,
        "rx_gbit_s": (b.1 - a.1) as f64 * 8.0 / secs / 1e9,
        "tx_pps": (b.2 - a.2) as f64 / secs,
        "rx_pps": (b.3 - a.3) as f64 / secs,
        "tx_bytes": b.0 - a.0,
        "rx_bytes": b.1 - a.1,
        "tx_packets": b.2 - a.2,
        "rx_packets": b.3 - a.3,
    });
    // loadgen's own CPU over the hold (100 % = one core): near 100 % per
    // busy thread, the figures say more about loadgen than the server.
    if let (Some(a), Some(b)) = (self_start, self_end) {
        summary["loadgen"] = json!({
            "hold_cpu_s": b.cpu_s - a.cpu_s,
            "hold_cpu_pct": 100.0 * (b.cpu_s - a.cpu_s) / secs,
            "threads": b.threads,
        });
    }
    print_human(&summary);
    println!("RESULT_JSON {summary}");
    if let Some(p) = &args.csv {
        report::write_csv(p, &rows).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.svg {
        let title = format!("loadgen: {n} sessions ({transport}) to {}", args.server);
        report::write_svg(p, &rows, &title).map_err(anyhow::Error::msg)?;
    }
    let ok = stats.failed() == 0 && up == n;
    Ok(if ok { 0 } else { 1 })
}

fn write_addresses(path: &std::path::Path, addrs: &[Ipv4Addr]) -> std::io::Result<()> {
    let mut text = String::with_capacity(addrs.len() * 16);
    for a in addrs {
        text.push_str(&a.to_string());
        text.push('\n');
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn print_human(s: &serde_json::Value) {
    let f = |v: &serde_json::Value| match v.as_f64() {
        Some(x) => format!("{x:.2}"),
        None => "-".into(),
    };
    println!(
        "sessions up {}/{} ({} DTLS), failed {}, lost {}, logged out {}",
        s["up"], s["sessions"], s["dtls_up"], s["failed"], s["lost"], s["logged_out"]
    );
    if let Some(m) = s["failures"].as_object() {
        for (why, count) in m {
            println!("  failed: {count} x {why}");
        }
    }
    let c = &s["connect_ms"];
    println!(
        "connect: {} /s over {} s; latency ms p50 {} p90 {} p99 {} max {}",
        f(&s["connects_per_s"]),
        f(&s["ramp_s"]),
        f(&c["p50"]),
        f(&c["p90"]),
        f(&c["p99"]),
        f(&c["max"])
    );
    let h = &s["hold"];
    println!(
        "hold {} s: up {} Gbit/s {} pps, down {} Gbit/s {} pps",
        f(&s["traffic_s"]),
        f(&h["tx_gbit_s"]),
        f(&h["tx_pps"]),
        f(&h["rx_gbit_s"]),
        f(&h["rx_pps"])
    );
    if s["reconnects"].as_u64().unwrap_or(0) > 0 {
        println!(
            "reconnects after a cut TCP connection: {} ({} with another address)",
            s["reconnects"], s["reconnect_address_changed"]
        );
    }
    if let Some(l) = s["loadgen"].as_object() {
        println!(
            "loadgen CPU during the hold: {} s ({} % of one core); pacer wrote off {} packets",
            f(&l["hold_cpu_s"]),
            f(&l["hold_cpu_pct"]),
            s["tx"]["pacer_lagged"]
        );
    }
    let e = &s["echo"];
    println!(
        "echo: sent {} received {} lost {} ({}%); rtt ms p50 {} p90 {} p99 {} max {}",
        e["sent"],
        e["received"],
        e["lost"],
        f(&e["loss_pct"]),
        f(&e["rtt_ms"]["p50"]),
        f(&e["rtt_ms"]["p90"]),
        f(&e["rtt_ms"]["p99"]),
        f(&e["rtt_ms"]["max"])
    );
    let v = &s["server"];
    if !v.is_null() {
        println!(
            "server: rss {} -> {} KiB with sessions up ({} KiB/session), {} KiB at the end; threads {} -> {}; fds {} -> {}; CPU {} s/GB",
            v["baseline"]["rss_kib"],
            v["up"]["rss_kib"],
            f(&v["rss_kib_per_session"]),
            v["end"]["rss_kib"],
            v["baseline"]["threads"],
            v["up"]["threads"],
            v["baseline"]["fds"],
            v["up"]["fds"],
            f(&v["cpu_s_per_gb"])
        );
    }
}
