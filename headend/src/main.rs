//! `headend`: an AnyConnect-compatible VPN headend configured with ASA CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use headend::admin;

// jemalloc instead of glibc's malloc (issue 12): with glibc, RSS grew by ~1 GB
// over 3,000 session lifetimes and was never given back; with jemalloc it
// settles within a few MiB of its level after the first round (BENCHMARKS.md,
// `benches/churn.sh`). Unprefixed, so OpenSSL's DTLS state uses it as well.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's `const char *malloc_conf`, read at its first allocation: freed
/// pages go back to the kernel about a second after they fall idle.
/// `MALLOC_CONF` in the environment still overrides it. The background thread
/// that does this while no allocation happens (an idle headend after a wave
/// of logouts) is started later, by [`start_background_purge`]: a thread at
/// start would stop `--user` from dropping privileges (service.rs needs a
/// single-threaded process).
#[cfg(feature = "jemalloc")]
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to an immutable, 'static, NUL-terminated string.
#[cfg(feature = "jemalloc")]
unsafe impl Sync for MallocConf {}

#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "malloc_conf")]
static MALLOC_CONF: MallocConf = MallocConf(c"dirty_decay_ms:1000,muzzy_decay_ms:1000".as_ptr());

/// Turns on jemalloc's background purging thread (`mallctl background_thread`).
#[cfg(feature = "jemalloc")]
fn start_background_purge() {
    use std::ffi::{c_char, c_int, c_void};
    // The unprefixed jemalloc linked in by tikv-jemallocator exports it.
    unsafe extern "C" {
        fn mallctl(
            name: *const c_char,
            oldp: *mut c_void,
            oldlenp: *mut usize,
            newp: *mut c_void,
            newlen: usize,
        ) -> c_int;
    }
    let mut on = true;
    // SAFETY: "background_thread" is a bool control; we write a live local
    // bool of the right size and read no old value.
    let rc = unsafe {
        mallctl(
            c"background_thread".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            (&raw mut on).cast(),
            std::mem::size_of::<bool>(),
        )
    };
    if rc != 0 {
        tracing::warn!(
            "jemalloc background_thread: error {rc}; freed memory goes back only while allocating"
        );
    }
}

#[cfg(not(feature = "jemalloc"))]
fn start_background_purge() {}

#[derive(Parser)]
#[command(
    name = "headend",
    version,
    about = "AnyConnect-compatible VPN headend configured with Cisco ASA CLI"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once at start-up: the size of the `Run` variant does not matter.
#[derive(Subcommand)]
enum Cmd {
    /// Validate an ASA config and print a summary.
    CheckConfig { file: PathBuf },
    /// Run the headend.
    Run(Box<headend::server::RunArgs>),
    /// `show ...` commands, answered by a running headend.
    Show {
        #[arg(long, default_value = admin::DEFAULT_SOCKET)]
        admin_socket: PathBuf,
        /// Answer as JSON (for scripts) instead of ASA's text.
        #[arg(long)]
        json: bool,
        /// e.g. `vpn-sessiondb`, `vpn-sessiondb anyconnect`, `counters`
        #[arg(required = true, num_args = 1..)]
        what: Vec<String>,
    },
    /// Re-read the running headend's config file and apply all of it without
    /// dropping a session (a config with an error changes nothing); the same as SIGHUP.
    Reload {
        #[arg(long, default_value = admin::DEFAULT_SOCKET)]
        admin_socket: PathBuf,
    },
    /// `clear shun`, `clear threat-detection service [NAME]`,
    /// `clear aaa local user lockout {all|username U}`, `clear access-list NAME
    /// counters`.
    Clear {
        #[arg(long, default_value = admin::DEFAULT_SOCKET)]
        admin_socket: PathBuf,
        #[arg(required = true, num_args = 1..)]
        what: Vec<String>,
    },
    /// `no shun IP`.
    No {
        #[arg(long, default_value = admin::DEFAULT_SOCKET)]
        admin_socket: PathBuf,
        #[arg(required = true, num_args = 1..)]
        what: Vec<String>,
    },
    /// Write the man pages (`man1/*.1`) and shell completions (bash, zsh,
    /// fish) into DIR, for packaging.
    #[command(hide = true)]
    GenerateAssets {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// `vpn-sessiondb logoff index N | name USER | all [noconfirm]`.
    VpnSessiondb {
        #[arg(long, default_value = admin::DEFAULT_SOCKET)]
        admin_socket: PathBuf,
        /// Answer as JSON (for scripts) instead of ASA's text.
        #[arg(long)]
        json: bool,
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("headend: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::CheckConfig { file } => match headend::config::load_file(&file) {
            Ok(cfg) => {
                print!("{}", cfg.summary());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Cmd::Run(args) => {
            let args = *args;
            init_tracing(args.log_format);
            // Root's part first, while the process has one thread: the admin
            // socket in /run, then become the user (TUN and 443 need only the
            // two capabilities kept).
            let admin_listener = match &args.user {
                Some(name) => {
                    let user = headend::service::RunAs::lookup(name)?;
                    let l = admin::bind(&args.admin_socket)?;
                    headend::service::chown(&args.admin_socket, &user)?;
                    headend::service::drop_privileges(&user)
                        .with_context(|| format!("dropping root to user {name}"))?;
                    tracing::info!(
                        uid = user.uid,
                        gid = user.gid,
                        "running as user {name} with CAP_NET_ADMIN and CAP_NET_BIND_SERVICE only"
                    );
                    Some(l)
                }
                None => None,
            };
            start_background_purge();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                // Bounded (blocking.rs): login work queues as tasks, not threads.
                .max_blocking_threads(headend::blocking::max_blocking_threads())
                .build()
                .context("starting the async runtime")?;
            rt.block_on(headend::server::run_with(args, admin_listener))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Show {
            admin_socket,
            json,
            what,
        } => admin_command(&admin_socket, json, &format!("show {}", what.join(" "))),
        Cmd::Clear { admin_socket, what } => {
            admin_command(&admin_socket, false, &format!("clear {}", what.join(" ")))
        }
        Cmd::No { admin_socket, what } => {
            admin_command(&admin_socket, false, &format!("no {}", what.join(" ")))
        }
        Cmd::Reload { admin_socket } => admin_command(&admin_socket, false, "reload"),
        Cmd::GenerateAssets { out } => {
            generate_assets(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::VpnSessiondb {
            admin_socket,
            json,
            args,
        } => admin_command(
            &admin_socket,
            json,
            &format!("vpn-sessiondb {}", args.join(" ")),
        ),
    }
}

/// `man1/headend.1` plus one page per subcommand (`headend-run.1`, as git
/// does), and `completions/{headend.bash,_headend,headend.fish}`.
fn generate_assets(out: &std::path::Path) -> Result<()> {
    use clap::CommandFactory;
    let man_dir = out.join("man1");
    let comp_dir = out.join("completions");
    for d in [&man_dir, &comp_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let cmd = Cli::command();
    let write_page = |cmd: clap::Command, name: &str| -> Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        let path = man_dir.join(format!("{name}.1"));
        std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))
    };
    write_page(cmd.clone(), "headend")?;
    for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
        let name = format!("headend-{}", sub.get_name());
        write_page(sub.clone().name(name.clone()), &name)?;
    }
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut Cli::command(), "headend", &comp_dir)
            .with_context(|| format!("{shell} completions"))?;
    }
    Ok(())
}

fn admin_command(socket: &std::path::Path, json: bool, command: &str) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let command = if json {
        format!("json {command}")
    } else {
        command.to_string()
    };
    let reply = rt.block_on(admin::request(socket, &command))?;
    print!("{reply}");
    Ok(
        if reply.starts_with("ERROR")
            || reply.starts_with("{\"command\"") && reply.contains("\"error\":true")
        {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

fn init_tracing(format: headend::server::LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HEADEND_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use tracing_subscriber::prelude::*;
    // The dataplane's `log` ACE matches become ASA syslog 106100.
    let acl_log = headend::syslog::AclLogBridge.with_filter(
        tracing_subscriber::filter::Targets::new()
            .with_target("dataplane::enforce", tracing::Level::INFO),
    );
    // Under systemd, stderr goes to the journal (JOURNAL_STREAM is set), which
    // stamps every line itself.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(acl_log);
    match format {
        headend::server::LogFormat::Json => registry.with(fmt.json().with_filter(filter)).init(),
        headend::server::LogFormat::Text if journal => registry
            .with(fmt.without_time().with_ansi(false).with_filter(filter))
            .init(),
        // Colour only on a terminal: logs in files stay greppable.
        headend::server::LogFormat::Text => registry
            .with(
                fmt.with_ansi(std::io::stderr().is_terminal())
                    .with_filter(filter),
            )
            .init(),
    }
}
