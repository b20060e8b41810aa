//! The SSH front end of the CLI (russh): checks the source against the `ssh`
//! lines, the password against LOCAL users, then moves bytes between the
//! session channel and a [`CliSession`]. No CLI rule lives here.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use russh::keys::PrivateKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId};
use tokio::net::TcpListener;

use super::{Backend, CliEvent, CliSession};
use crate::admin::AdminContext;

/// Where the host key lives when `--ssh-host-key` is not given.
pub const DEFAULT_HOST_KEY: &str = "/var/lib/headend/ssh_host_ed25519_key";

/// The host key at `path`, generated (Ed25519) and saved with mode 0600 on first
/// use so clients see the same key across restarts.
pub fn load_or_create_host_key(path: &Path) -> Result<PrivateKey> {
    if path.exists() {
        return PrivateKey::read_openssh_file(path)
            .with_context(|| format!("reading SSH host key {}", path.display()));
    }
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
    let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let key = PrivateKey::from(pair);
    let pem = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .context("encoding the SSH host key")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating SSH host key {}", path.display()))?;
    f.write_all(pem.as_bytes())?;
    tracing::info!("generated SSH host key {}", path.display());
    Ok(key)
}

/// What every SSH connection shares.
pub struct SshContext {
    pub admin: Arc<AdminContext>,
}

impl SshContext {
    fn interface_for(&self, ip: IpAddr) -> Option<String> {
        let IpAddr::V4(v4) = ip else { return None };
        self.admin
            .config()
            .management
            .ssh_access
            .iter()
            .find(|a| a.permits(v4))
            .map(|a| a.interface.clone())
    }
}

#[derive(Debug, Clone)]
pub struct SshArgs {
    pub port: u16,
    pub host_key: PathBuf,
}

/// `Some(ssh timeout minutes)` while the config has `ssh IP MASK IF` lines:
/// the listener runs then, as on ASA.
fn wanted(config: &crate::config::Config) -> Option<u32> {
    let m = &config.management;
    (!m.ssh_access.is_empty()).then_some(m.ssh_timeout_minutes)
}

/// The reload side of the SSH listener: a reload that adds the first `ssh`
/// line starts it, one that removes the last stops it (sessions already open
/// stay until they end), one that changes `ssh timeout` restarts it with the
/// new inactivity timeout.
pub struct SshControl {
    tx: tokio::sync::watch::Sender<Option<u32>>,
    port: u16,
}

impl SshControl {
    /// Before a reload changes anything: a listener to start needs its port.
    pub fn check(&self, config: &crate::config::Config) -> Result<()> {
        if self.tx.borrow().is_none() && wanted(config).is_some() {
            std::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], self.port)))
                .with_context(|| format!("SSH port {}: cannot bind TCP", self.port))?;
        }
        Ok(())
    }

    /// After the new config is live: (re)starts or stops the listener.
    pub fn apply(&self, config: &crate::config::Config) -> Option<String> {
        let new = wanted(config);
        if *self.tx.borrow() == new {
            return None;
        }
        self.tx.send_replace(new);
        Some(match new {
            Some(_) => format!("SSH CLI listening on TCP {}", self.port),
            None => "SSH CLI stopped (no `ssh` lines)".to_string(),
        })
    }
}

/// Runs [`serve`] while the config wants it; [`SshControl`] follows reloads.
pub fn spawn(args: SshArgs, admin: Arc<AdminContext>) -> SshControl {
    let (tx, mut rx) = tokio::sync::watch::channel(wanted(&admin.config()));
    let port = args.port;
    tokio::spawn(async move {
        loop {
            let on = rx.borrow_and_update().is_some();
            let mut task = on.then(|| {
                let (args, admin) = (args.clone(), admin.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve(args, admin).await {
                        tracing::error!("SSH CLI stopped: {e:#}");
                    }
                })
            });
            let changed = rx.changed().await;
            // The old listener is closed before a new one binds the port.
            if let Some(t) = task.take() {
                t.abort();
                let _ = t.await;
            }
            if changed.is_err() {
                return;
            }
        }
    });
    SshControl { tx, port }
}

/// Runs the SSH CLI until the listener fails.
pub async fn serve(args: SshArgs, admin: Arc<AdminContext>) -> Result<()> {
    let key = load_or_create_host_key(&args.host_key)?;
    let m = admin.config().management.clone();
    let config = Arc::new(russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-Cisco-1.25".into()),
        keys: vec![key],
        inactivity_timeout: Some(Duration::from_secs(u64::from(m.ssh_timeout_minutes) * 60)),
        auth_rejection_time: Duration::from_secs(1),
        auth_rejection_time_initial: Some(Duration::ZERO),
        methods: russh::MethodSet::from(&[russh::MethodKind::Password][..]),
        max_auth_attempts: 3,
        ..Default::default()
    });
    let listen = SocketAddr::from(([0, 0, 0, 0], args.port));
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding SSH on {listen}"))?;
    // LOCAL users come from the live config (`reload` changes passwords).
    let ctx = Arc::new(SshContext { admin });
    tracing::info!("SSH CLI on {listen}");
    loop {
        let (stream, peer) = listener.accept().await?;
        let Some(ifname) = ctx.interface_for(peer.ip()) else {
            // ASA drops the connection and logs 710003.
            crate::syslog::emit(crate::syslog::Message::TcpAccessDenied {
                src: peer,
                interface: "outside".into(),
                dst: SocketAddr::new(
                    stream.local_addr().map(|a| a.ip()).unwrap_or(listen.ip()),
                    args.port,
                ),
            });
            drop(stream);
            continue;
        };
        let local = stream.local_addr().unwrap_or(listen);
        let handler = Connection {
            ctx: ctx.clone(),
            peer,
            local,
            interface: ifname,
            user: None,
            cli: None,
            channel: None,
        };
        let config = config.clone();
        tokio::spawn(async move {
            match russh::server::run_stream(config, stream, handler).await {
                Ok(session) => {
                    if let Err(e) = session.await {
                        tracing::debug!("SSH session from {peer}: {e}");
                    }
                }
                Err(e) => tracing::debug!("SSH handshake from {peer}: {e}"),
            }
        });
    }
}

struct Connection {
    ctx: Arc<SshContext>,
    peer: SocketAddr,
    /// The headend address the client reached (ASA logs the interface address).
    local: SocketAddr,
    interface: String,
    user: Option<String>,
    cli: Option<CliSession>,
    channel: Option<ChannelId>,
}

struct AdminBackend<'a> {
    ctx: &'a SshContext,
    peer: SocketAddr,
    local: SocketAddr,
    interface: &'a str,
}

impl Backend for AdminBackend<'_> {
    fn run(&mut self, command: &str) -> String {
        crate::admin::execute(command, &self.ctx.admin)
    }

    fn running_config(&mut self, section: &[String]) -> String {
        match std::fs::read_to_string(&self.ctx.admin.config_path) {
            Ok(text) => super::running_config(&text, section),
            Err(e) => format!("ERROR: cannot read the configuration: {e}\n"),
        }
    }

    fn show_logging(&mut self) -> String {
        crate::syslog::show_logging()
    }

    fn check_login(&mut self, user: &str, password: &str) -> Option<u8> {
        use crate::syslog::Message;
        let cfg = self.ctx.admin.config();
        let ok = cfg.management.ssh_auth_local
            && self.ctx.admin.live.load().users.check(user, password)
                == auth::PasswordCheck::Accepted;
        let (src, dst, interface) = (self.peer, self.local, self.interface.to_string());
        let user_s = user.to_string();
        if ok {
            crate::syslog::emit(Message::LoginPermitted {
                src,
                interface,
                dst,
                user: user_s,
            });
            cfg.usernames.get(user).map(|u| u.privilege)
        } else {
            crate::syslog::emit(Message::LoginDenied {
                src,
                interface,
                dst,
                user: user_s,
            });
            None
        }
    }

    fn event(&mut self, event: CliEvent) {
        use crate::syslog::Message;
        let ip = self.peer.ip();
        let msg = match event {
            CliEvent::Executed { user, command } => Message::CommandExecuted { user, ip, command },
            // ASA has no message for this (it only answers "Invalid input"); the
            // headend's own log keeps it.
            CliEvent::Denied { user, command } => {
                tracing::warn!(
                    user,
                    peer = %self.peer,
                    "SSH CLI: '{command}' refused: privilege level too low"
                );
                return;
            }
            // ASA logs a failed `enable` as a denied login of user enable_15.
            CliEvent::EnableFailed { user } => {
                tracing::warn!(user, peer = %self.peer, "SSH CLI: wrong enable password");
                Message::LoginDenied {
                    src: self.peer,
                    interface: self.interface.to_string(),
                    dst: self.local,
                    user: "enable_15".into(),
                }
            }
            CliEvent::PrivilegeChanged { user, from, to } => {
                Message::PrivilegeChanged { user, from, to }
            }
        };
        crate::syslog::emit(msg);
    }
}

impl Connection {
    fn feed(
        &mut self,
        data: &[u8],
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let Some(cli) = self.cli.as_mut() else {
            return Ok(());
        };
        let mut backend = AdminBackend {
            ctx: &self.ctx,
            peer: self.peer,
            local: self.local,
            interface: &self.interface,
        };
        let out = cli.input(data, &mut backend);
        if !out.bytes.is_empty() {
            session.data(channel, out.bytes)?;
        }
        if out.close {
            session.exit_status_request(channel, 0)?;
            session.eof(channel)?;
            session.close(channel)?;
        }
        Ok(())
    }

    fn open_cli(&mut self) {
        let user = self.user.clone().unwrap_or_default();
        let cfg = self.ctx.admin.config();
        self.cli = Some(CliSession::new(
            cfg.hostname.as_deref().unwrap_or("headend"),
            &user,
            cfg.management.enable_password.clone(),
        ));
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        use crate::syslog::Message;
        let local = self.ctx.admin.config().management.ssh_auth_local;
        let ok = local
            && self.ctx.admin.live.load().users.check(user, password)
                == auth::PasswordCheck::Accepted;
        let (src, dst, interface, user_s) = (
            self.peer,
            self.local,
            self.interface.clone(),
            user.to_string(),
        );
        if ok {
            crate::syslog::emit(Message::LoginPermitted {
                src,
                interface,
                dst,
                user: user_s,
            });
            self.user = Some(user.to_string());
            Ok(Auth::Accept)
        } else {
            crate::syslog::emit(Message::LoginDenied {
                src,
                interface,
                dst,
                user: user_s,
            });
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // One CLI per connection, as on ASA.
        if self.channel.is_some() {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.channel = Some(channel.id());
        self.open_cli();
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        if let Some(cli) = self.cli.as_mut() {
            let prompt = cli.start();
            session.data(channel, prompt)?;
        }
        Ok(())
    }

    /// `ssh host 'show version'`: one command at level 1, then the channel closes.
    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        if let Some(cli) = self.cli.as_mut() {
            cli.set_pager(0);
        }
        let mut line = data.to_vec();
        line.extend_from_slice(b"\rexit\r");
        self.feed(&line, channel, session)
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.feed(data, channel, session)
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;

    fn cfg(text: &str) -> crate::config::Config {
        crate::config::parse_str(text, "s.cfg").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn ssh_lines_start_and_stop_the_listener_and_a_busy_port_refuses() {
        let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::watch::channel(None);
        let control = SshControl { tx, port };
        let on = cfg("ssh 198.18.0.0 255.255.0.0 outside\nssh timeout 7\n");
        let off = cfg("hostname asa\n");
        assert!(control.check(&off).is_ok());
        assert!(control.apply(&off).is_none(), "nothing to start");
        // Starting needs the port: taken, the reload is refused.
        let e = control.check(&on).unwrap_err();
        assert!(format!("{e:#}").contains("cannot bind"), "{e:#}");
        drop(busy);
        control.check(&on).unwrap();
        let note = control.apply(&on).unwrap();
        assert!(note.contains(&format!("TCP {port}")), "{note}");
        assert_eq!(*rx.borrow(), Some(7));
        // Running: no bind check, the same config changes nothing.
        assert!(control.check(&on).is_ok());
        assert!(control.apply(&on).is_none());
        assert!(control.apply(&off).unwrap().contains("stopped"));
        assert_eq!(*rx.borrow(), None);
    }
}
