//! `headend`: an AnyConnect-compatible VPN headend configured with ASA CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use headend::admin;

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

#[derive(Subcommand)]
enum Cmd {
    /// Validate an ASA config and print a summary.
    CheckConfig { file: PathBuf },
    /// Run the headend.
    Run(headend::server::RunArgs),
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
    /// Re-read the running headend's config file and apply its policy
    /// (access-lists, cts role-based sgt-map); the same as SIGHUP.
    Reload {
        #[arg(long, default_value = admin::DEFAULT_SOCKET)]
        admin_socket: PathBuf,
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
            init_tracing();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(headend::server::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Show {
            admin_socket,
            json,
            what,
        } => admin_command(&admin_socket, json, &format!("show {}", what.join(" "))),
        Cmd::Reload { admin_socket } => admin_command(&admin_socket, false, "reload"),
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

fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HEADEND_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use tracing_subscriber::prelude::*;
    // Colour only on a terminal: logs in files stay greppable.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter);
    // The dataplane's `log` ACE matches become ASA syslog 106100.
    let acl_log = headend::syslog::AclLogBridge.with_filter(
        tracing_subscriber::filter::Targets::new()
            .with_target("dataplane::enforce", tracing::Level::INFO),
    );
    tracing_subscriber::registry()
        .with(fmt)
        .with(acl_log)
        .init();
}
