//! The ASA command line, sans-IO: bytes typed on a terminal in, bytes to show out.
//! The SSH front end (`ssh.rs`) only moves bytes between a channel and a
//! [`CliSession`]; every rule (prompt, `enable`, privilege, unique prefixes, `?`,
//! the pager, ASA's error forms) lives here and is unit-tested.
//!
//! Behaviour follows the ASA CLI: `hostname>` at privilege 1, `enable` asks
//! `Password:` (no echo) and gives `hostname#` at 15; commands may be shortened to
//! any unique prefix (`sh vpn-s anyc`); `?` lists what may follow; a bad word gets
//! `ERROR: % Invalid input detected at '^' marker.` with a caret under it.

pub mod ssh;

use std::fmt::Write as _;

/// Privilege of the `>` prompt and of `enable`.
pub const PRIV_USER: u8 = 1;
pub const PRIV_ENABLE: u8 = 15;
/// ASA's default `pager lines`.
pub const DEFAULT_PAGER: usize = 24;
const MAX_LINE: usize = 1024;
/// ASA ends privileged mode after three bad enable passwords.
const ENABLE_TRIES: u8 = 3;

/// What the CLI asks of the headend.
pub trait Backend {
    /// Runs a canonical command line of the admin channel (`admin::execute`).
    fn run(&mut self, command: &str) -> String;
    /// `show running-config [section]`, secrets masked.
    fn running_config(&mut self, section: &[String]) -> String;
    /// `show logging`.
    fn show_logging(&mut self) -> String;
    /// Something an operator did or was refused (logged and sent to syslog).
    fn event(&mut self, event: CliEvent);
    /// `login`: the privilege of `user` when `password` is right (LOCAL).
    fn check_login(&mut self, user: &str, password: &str) -> Option<u8>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliEvent {
    /// A command ran (ASA 111008 / 111010).
    Executed { user: String, command: String },
    /// A command above the user's privilege (ASA: not shown at that level).
    Denied { user: String, command: String },
    /// `enable` with a wrong password.
    EnableFailed { user: String },
    /// `enable` succeeded (ASA 502103).
    PrivilegeChanged { user: String, from: u8, to: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Kw(&'static str, &'static str),
    /// Any word (a name); its help text.
    Word(&'static str),
    /// A number; its help text.
    Num(&'static str),
    /// The rest of the line (`show running-config SECTION...`).
    Rest(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// Pass the canonical line to the admin channel.
    Admin,
    CurPriv,
    RunningConfig,
    Logging,
    Pager,
    Width,
    Enable,
    Login,
    Disable,
    Exit,
    ConfigureTerminal,
    End,
}

struct Command {
    privilege: u8,
    toks: &'static [Tok],
    action: Action,
    /// Only in `configure terminal` mode (true) or only outside it (false).
    config_mode: bool,
}

use Tok::{Kw, Num, Rest, Word};

const SHOW: Tok = Kw("show", "Show running system information");
const VPN_SDB: Tok = Kw("vpn-sessiondb", "Show information about the VPN sessions");
const ANYC: Tok = Kw("anyconnect", "AnyConnect sessions");
const ACL: Tok = Kw("access-list", "Show hit counters for access policies");
const CTS: Tok = Kw("cts", "Show Cisco TrustSec information");
const RBS: Tok = Kw("role-based", "Role-based access control");
const SGT_MAP: Tok = Kw("sgt-map", "IP address to SGT mappings");
const LOGOFF: Tok = Kw("logoff", "Log off VPN sessions");
const NOCONFIRM: Tok = Kw("noconfirm", "Do not ask for confirmation");
const VPN_SDB_EXEC: Tok = Kw("vpn-sessiondb", "Manage the VPN session database");
const TERMINAL: Tok = Kw("terminal", "Set terminal line parameters");
const CLEAR: Tok = Kw("clear", "Reset functions");

macro_rules! cmd {
    ($p:expr, $a:expr, [$($t:expr),*]) => {
        Command { privilege: $p, toks: &[$($t),*], action: $a, config_mode: false }
    };
}

static COMMANDS: &[Command] = &[
    cmd!(1, Action::Admin, [SHOW, VPN_SDB]),
    cmd!(1, Action::Admin, [SHOW, VPN_SDB, ANYC]),
    cmd!(
        1,
        Action::Admin,
        [SHOW, VPN_SDB, Kw("detail", "Show detailed output"), ANYC]
    ),
    cmd!(
        1,
        Action::Admin,
        [SHOW, VPN_SDB, Kw("summary", "Show session summary")]
    ),
    cmd!(1, Action::Admin, [SHOW, ACL]),
    cmd!(1, Action::Admin, [SHOW, ACL, Word("access-list name")]),
    cmd!(1, Action::Admin, [SHOW, CTS, RBS, SGT_MAP]),
    cmd!(
        1,
        Action::Admin,
        [SHOW, CTS, RBS, SGT_MAP, Kw("all", "All mappings")]
    ),
    cmd!(
        1,
        Action::Admin,
        [
            SHOW,
            CTS,
            Kw("sxp", "SXP information"),
            Kw("connections", "SXP connections")
        ]
    ),
    cmd!(
        1,
        Action::Admin,
        [SHOW, Kw("counters", "Show dataplane counters")]
    ),
    cmd!(
        1,
        Action::CurPriv,
        [SHOW, Kw("curpriv", "Show current privilege level")]
    ),
    cmd!(
        1,
        Action::Admin,
        [SHOW, Kw("version", "Display the system software version")]
    ),
    cmd!(
        1,
        Action::Logging,
        [SHOW, Kw("logging", "Show the contents of logging buffers")]
    ),
    cmd!(
        15,
        Action::RunningConfig,
        [
            SHOW,
            Kw("running-config", "Show the current operating configuration")
        ]
    ),
    cmd!(
        15,
        Action::RunningConfig,
        [
            SHOW,
            Kw("running-config", "Show the current operating configuration"),
            Rest("configuration section")
        ]
    ),
    cmd!(
        15,
        Action::Admin,
        [
            VPN_SDB_EXEC,
            LOGOFF,
            Kw("index", "Session index"),
            Num("<1-4294967295> session index")
        ]
    ),
    cmd!(
        15,
        Action::Admin,
        [
            VPN_SDB_EXEC,
            LOGOFF,
            Kw("index", "Session index"),
            Num("<1-4294967295> session index"),
            NOCONFIRM
        ]
    ),
    cmd!(
        15,
        Action::Admin,
        [
            VPN_SDB_EXEC,
            LOGOFF,
            Kw("name", "Username"),
            Word("username")
        ]
    ),
    cmd!(
        15,
        Action::Admin,
        [
            VPN_SDB_EXEC,
            LOGOFF,
            Kw("name", "Username"),
            Word("username"),
            NOCONFIRM
        ]
    ),
    cmd!(
        15,
        Action::Admin,
        [VPN_SDB_EXEC, LOGOFF, Kw("all", "All sessions")]
    ),
    cmd!(
        15,
        Action::Admin,
        [VPN_SDB_EXEC, LOGOFF, Kw("all", "All sessions"), NOCONFIRM]
    ),
    cmd!(
        15,
        Action::Admin,
        [
            CLEAR,
            ACL,
            Word("access-list name"),
            Kw("counters", "Clear hit counters")
        ]
    ),
    cmd!(
        0,
        Action::Pager,
        [
            TERMINAL,
            Kw("pager", "Control page length for pagination"),
            Num("<0-2147483647> lines, 0 for no pager")
        ]
    ),
    cmd!(
        0,
        Action::Pager,
        [
            TERMINAL,
            Kw("pager", "Control page length for pagination"),
            Kw("lines", "Lines per page"),
            Num("<0-2147483647> lines, 0 for no pager")
        ]
    ),
    cmd!(
        0,
        Action::Width,
        [
            TERMINAL,
            Kw("width", "Set width of display terminal"),
            Num("<0-511> columns")
        ]
    ),
    cmd!(
        0,
        Action::Enable,
        [Kw("enable", "Turn on privileged commands")]
    ),
    cmd!(
        0,
        Action::Disable,
        [Kw("disable", "Turn off privileged commands")]
    ),
    cmd!(
        0,
        Action::Login,
        [Kw("login", "Log in as a particular user")]
    ),
    cmd!(0, Action::Exit, [Kw("exit", "Exit from the EXEC")]),
    cmd!(0, Action::Exit, [Kw("quit", "Exit from the EXEC")]),
    cmd!(0, Action::Exit, [Kw("logout", "Exit from the EXEC")]),
    cmd!(
        15,
        Action::ConfigureTerminal,
        [
            Kw("configure", "Configuration subcommands"),
            Kw("terminal", "Configure using terminal/console")
        ]
    ),
    // Netmiko sets `terminal width 511` in config mode; nothing else is
    // configurable over SSH: the config file is the source of truth.
    Command {
        privilege: 15,
        toks: &[
            TERMINAL,
            Kw("width", "Set width of display terminal"),
            Num("<0-511> columns"),
        ],
        action: Action::Width,
        config_mode: true,
    },
    Command {
        privilege: 15,
        toks: &[
            TERMINAL,
            Kw("pager", "Control page length for pagination"),
            Num("<0-2147483647> lines, 0 for no pager"),
        ],
        action: Action::Pager,
        config_mode: true,
    },
    Command {
        privilege: 15,
        toks: &[Kw("end", "Exit from configure mode")],
        action: Action::End,
        config_mode: true,
    },
    Command {
        privilege: 15,
        toks: &[Kw("exit", "Exit from configure mode")],
        action: Action::End,
        config_mode: true,
    },
];

/// Result of matching typed words against the command table.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Ok {
        cmd: usize,
        words: Vec<String>,
    },
    /// Word `at` (index) matches nothing available.
    Invalid {
        at: usize,
    },
    Ambiguous,
    Incomplete,
}

fn tok_matches(t: Tok, word: &str, exact: bool) -> bool {
    match t {
        Kw(k, _) => {
            if exact {
                k.eq_ignore_ascii_case(word)
            } else {
                k.len() >= word.len() && k[..word.len()].eq_ignore_ascii_case(word)
            }
        }
        Word(_) | Rest(_) => true,
        Num(_) => word.parse::<u64>().is_ok(),
    }
}

fn available(c: &Command, privilege: u8, config_mode: bool) -> bool {
    c.privilege <= privilege && c.config_mode == config_mode
}

/// Matches `words` (as typed) to one command: keywords by unique prefix (an
/// exact keyword wins over longer ones), names and numbers as given.
fn parse(words: &[&str], privilege: u8, config_mode: bool) -> Parsed {
    let mut alive: Vec<usize> = (0..COMMANDS.len())
        .filter(|&i| available(&COMMANDS[i], privilege, config_mode))
        .collect();
    let mut canon: Vec<String> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        // Commands already in their `Rest` part take every further word.
        let mut next = Vec::new();
        let mut keywords: Vec<&'static str> = Vec::new();
        for &c in &alive {
            let toks = COMMANDS[c].toks;
            let t = match toks.get(i) {
                Some(t) => *t,
                None => match toks.last() {
                    Some(Rest(_)) => Rest(""),
                    _ => continue,
                },
            };
            if tok_matches(t, w, false) {
                next.push(c);
                if let Kw(k, _) = t
                    && !keywords.contains(&k)
                {
                    keywords.push(k);
                }
            }
        }
        if next.is_empty() {
            return Parsed::Invalid { at: i };
        }
        // Keywords compete with each other; an exact one wins.
        if keywords.len() > 1 {
            if let Some(k) = keywords.iter().find(|k| k.eq_ignore_ascii_case(w)) {
                keywords = vec![k];
            } else {
                return Parsed::Ambiguous;
            }
        }
        let kw = keywords.first().copied();
        // Keep commands whose token here is that keyword, or a free word when
        // no keyword matched.
        alive = next
            .into_iter()
            .filter(|&c| match COMMANDS[c].toks.get(i) {
                Some(Kw(k, _)) => Some(*k) == kw,
                _ => kw.is_none(),
            })
            .collect();
        if alive.is_empty() {
            return Parsed::Invalid { at: i };
        }
        canon.push(kw.map_or_else(|| (*w).to_string(), str::to_string));
    }
    let complete: Vec<usize> = alive
        .iter()
        .copied()
        .filter(|&c| {
            let toks = COMMANDS[c].toks;
            toks.len() == words.len()
                || matches!(toks.last(), Some(Rest(_))) && words.len() >= toks.len()
        })
        .collect();
    match complete.first() {
        Some(&cmd) => Parsed::Ok { cmd, words: canon },
        None => Parsed::Incomplete,
    }
}

/// `?` after `words`: what may come next (`partial` = the word being typed, for
/// `sh?`-style completion help).
fn help(words: &[&str], partial: Option<&str>, privilege: u8, config_mode: bool) -> String {
    let mut alive: Vec<usize> = (0..COMMANDS.len())
        .filter(|&i| available(&COMMANDS[i], privilege, config_mode))
        .collect();
    for (i, w) in words.iter().enumerate() {
        alive.retain(|&c| {
            COMMANDS[c]
                .toks
                .get(i)
                .is_some_and(|t| tok_matches(*t, w, false))
        });
    }
    let pos = words.len();
    let mut rows: Vec<(String, &str)> = Vec::new();
    let mut cr = false;
    for &c in &alive {
        let toks = COMMANDS[c].toks;
        match toks.get(pos) {
            None => cr = true,
            Some(t) => {
                let (name, text) = match *t {
                    Kw(k, h) => (k.to_string(), h),
                    Word(h) | Rest(h) => ("WORD".to_string(), h),
                    Num(h) => (
                        h.split(' ').next().unwrap_or("<0-4294967295>").to_string(),
                        h,
                    ),
                };
                if partial.is_none_or(|p| matches!(t, Kw(..)) && tok_matches(*t, p, false))
                    && !rows.iter().any(|(n, _)| *n == name)
                {
                    rows.push((name, text));
                }
            }
        }
    }
    let mut out = String::new();
    if let Some(_p) = partial {
        let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
        let _ = writeln!(out, "{}", names.join("  "));
        return out;
    }
    out.push('\n');
    for (n, h) in &rows {
        let text = h
            .split_once(' ')
            .filter(|_| n.starts_with('<'))
            .map_or(*h, |(_, r)| r);
        let _ = writeln!(out, "  {n:<16}{text}");
    }
    if cr {
        out.push_str("  <cr>\n");
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Exec,
    Config,
    EnablePassword {
        tries: u8,
    },
    /// `login`: typing the user name (echoed), then its password.
    LoginUser,
    LoginPassword {
        user: String,
    },
    /// Paged output waits for a key.
    More,
    Closed,
}

/// What [`CliSession::input`] produced.
#[derive(Debug, Default)]
pub struct Output {
    pub bytes: Vec<u8>,
    /// The session ended (`exit`, too many bad enable passwords).
    pub close: bool,
}

/// One operator's command line.
pub struct CliSession {
    hostname: String,
    user: String,
    enable_password: Option<String>,
    privilege: u8,
    mode: Mode,
    line: String,
    /// The previous byte was CR (a CR LF pair is one Enter).
    after_cr: bool,
    pager: usize,
    /// Lines not yet shown by the pager.
    pending: Vec<String>,
}

impl CliSession {
    pub fn new(hostname: &str, user: &str, enable_password: Option<String>) -> Self {
        Self {
            hostname: hostname.to_string(),
            user: user.to_string(),
            enable_password,
            privilege: PRIV_USER,
            mode: Mode::Exec,
            line: String::new(),
            after_cr: false,
            pager: DEFAULT_PAGER,
            pending: Vec::new(),
        }
    }

    /// `terminal pager N` (0 = off).
    pub fn set_pager(&mut self, lines: usize) {
        self.pager = lines;
    }

    pub fn privilege(&self) -> u8 {
        self.privilege
    }

    pub fn prompt(&self) -> String {
        match self.mode {
            Mode::Config => format!("{}(config)# ", self.hostname),
            _ if self.privilege >= PRIV_ENABLE => format!("{}# ", self.hostname),
            _ => format!("{}> ", self.hostname),
        }
    }

    /// The first prompt.
    pub fn start(&mut self) -> Vec<u8> {
        self.prompt().into_bytes()
    }

    /// Feeds typed bytes; returns the echo, the output of completed commands and
    /// prompts.
    pub fn input(&mut self, data: &[u8], backend: &mut dyn Backend) -> Output {
        let mut out = Output::default();
        for &b in data {
            if self.mode == Mode::Closed {
                break;
            }
            let cr_pair = self.after_cr && b == b'\n';
            self.after_cr = b == b'\r';
            if cr_pair {
                continue;
            }
            match self.mode.clone() {
                Mode::More => self.more_key(b, &mut out),
                Mode::EnablePassword { tries } => self.password_key(b, tries, &mut out, backend),
                Mode::LoginUser => self.login_user_key(b, &mut out),
                Mode::LoginPassword { user } => self.login_password_key(b, user, &mut out, backend),
                _ => self.key(b, &mut out, backend),
            }
        }
        out.close = self.mode == Mode::Closed;
        out
    }

    fn key(&mut self, b: u8, out: &mut Output, backend: &mut dyn Backend) {
        match b {
            b'\r' | b'\n' => {
                out.bytes.extend_from_slice(b"\r\n");
                let line = std::mem::take(&mut self.line);
                self.execute(&line, out, backend);
                if !matches!(
                    self.mode,
                    Mode::Closed
                        | Mode::More
                        | Mode::EnablePassword { .. }
                        | Mode::LoginUser
                        | Mode::LoginPassword { .. }
                ) {
                    out.bytes.extend_from_slice(self.prompt().as_bytes());
                }
            }
            b'?' => {
                out.bytes.extend_from_slice(b"?\r\n");
                let words: Vec<&str> = self.line.split_whitespace().collect();
                let text = if self.line.is_empty() || self.line.ends_with(' ') {
                    help(&words, None, self.privilege, self.mode == Mode::Config)
                } else {
                    let (last, head) = words.split_last().expect("non-empty line");
                    help(head, Some(last), self.privilege, self.mode == Mode::Config)
                };
                push_text(&mut out.bytes, &text);
                out.bytes.extend_from_slice(self.prompt().as_bytes());
                out.bytes.extend_from_slice(self.line.as_bytes());
            }
            // Backspace / DEL.
            0x08 | 0x7f if self.line.pop().is_some() => {
                out.bytes.extend_from_slice(b"\x08 \x08");
            }
            // Ctrl-C, Ctrl-U: drop the line.
            0x03 | 0x15 => {
                self.line.clear();
                out.bytes.extend_from_slice(b"\r\n");
                out.bytes.extend_from_slice(self.prompt().as_bytes());
            }
            // Ctrl-D on an empty line ends the session.
            0x04 if self.line.is_empty() => self.mode = Mode::Closed,
            b'\t' => {}
            0x20..=0x7e if self.line.len() < MAX_LINE => {
                self.line.push(b as char);
                out.bytes.push(b);
            }
            _ => {}
        }
    }

    fn password_key(&mut self, b: u8, tries: u8, out: &mut Output, backend: &mut dyn Backend) {
        match b {
            b'\r' | b'\n' => {
                out.bytes.extend_from_slice(b"\r\n");
                let typed = std::mem::take(&mut self.line);
                let ok = self
                    .enable_password
                    .as_deref()
                    .is_some_and(|p| constant_time_eq(p.as_bytes(), typed.as_bytes()));
                if ok {
                    let from = self.privilege;
                    self.privilege = PRIV_ENABLE;
                    self.mode = Mode::Exec;
                    backend.event(CliEvent::PrivilegeChanged {
                        user: self.user.clone(),
                        from,
                        to: PRIV_ENABLE,
                    });
                    out.bytes.extend_from_slice(self.prompt().as_bytes());
                    return;
                }
                backend.event(CliEvent::EnableFailed {
                    user: self.user.clone(),
                });
                if tries + 1 >= ENABLE_TRIES {
                    self.mode = Mode::Exec;
                    push_text(&mut out.bytes, "Invalid password\n");
                    out.bytes.extend_from_slice(self.prompt().as_bytes());
                } else {
                    self.mode = Mode::EnablePassword { tries: tries + 1 };
                    out.bytes.extend_from_slice(b"Password: ");
                }
            }
            0x08 | 0x7f => {
                self.line.pop();
            }
            0x03 => {
                self.line.clear();
                self.mode = Mode::Exec;
                out.bytes.extend_from_slice(b"\r\n");
                out.bytes.extend_from_slice(self.prompt().as_bytes());
            }
            0x20..=0x7e if self.line.len() < MAX_LINE => self.line.push(b as char),
            _ => {}
        }
    }

    fn login_user_key(&mut self, b: u8, out: &mut Output) {
        match b {
            b'\r' | b'\n' => {
                let user = std::mem::take(&mut self.line);
                out.bytes.extend_from_slice(b"\r\nPassword: ");
                self.mode = Mode::LoginPassword { user };
            }
            0x03 => {
                self.line.clear();
                self.mode = Mode::Exec;
                out.bytes.extend_from_slice(b"\r\n");
                out.bytes.extend_from_slice(self.prompt().as_bytes());
            }
            0x08 | 0x7f if self.line.pop().is_some() => out.bytes.extend_from_slice(b"\x08 \x08"),
            0x20..=0x7e if self.line.len() < MAX_LINE => {
                self.line.push(b as char);
                out.bytes.push(b);
            }
            _ => {}
        }
    }

    fn login_password_key(
        &mut self,
        b: u8,
        user: String,
        out: &mut Output,
        backend: &mut dyn Backend,
    ) {
        match b {
            b'\r' | b'\n' => {
                out.bytes.extend_from_slice(b"\r\n");
                let password = std::mem::take(&mut self.line);
                self.mode = Mode::Exec;
                match backend.check_login(&user, &password) {
                    Some(level) => {
                        let from = self.privilege;
                        self.user = user.clone();
                        self.privilege = level;
                        backend.event(CliEvent::PrivilegeChanged {
                            user,
                            from,
                            to: level,
                        });
                    }
                    None => push_text(&mut out.bytes, "Invalid password\n"),
                }
                out.bytes.extend_from_slice(self.prompt().as_bytes());
            }
            0x08 | 0x7f => {
                self.line.pop();
            }
            0x03 => {
                self.line.clear();
                self.mode = Mode::Exec;
                out.bytes.extend_from_slice(b"\r\n");
                out.bytes.extend_from_slice(self.prompt().as_bytes());
            }
            0x20..=0x7e if self.line.len() < MAX_LINE => self.line.push(b as char),
            _ => {}
        }
    }

    fn more_key(&mut self, b: u8, out: &mut Output) {
        // Erase the `<--- More --->` marker, as ASA does.
        out.bytes.extend_from_slice(b"\r              \r");
        match b {
            b'q' | b'Q' | 0x03 => self.pending.clear(),
            b'\r' | b'\n' => self.page(1, out),
            _ => self.page(self.pager, out),
        }
        if self.pending.is_empty() {
            self.mode = Mode::Exec;
            out.bytes.extend_from_slice(self.prompt().as_bytes());
        }
    }

    /// Shows up to `n` pending lines, then the More marker if lines remain.
    fn page(&mut self, n: usize, out: &mut Output) {
        let take = n.min(self.pending.len());
        for l in self.pending.drain(..take) {
            out.bytes.extend_from_slice(l.as_bytes());
            out.bytes.extend_from_slice(b"\r\n");
        }
        if !self.pending.is_empty() {
            out.bytes.extend_from_slice(b"<--- More --->");
            self.mode = Mode::More;
        }
    }

    fn show(&mut self, text: &str, out: &mut Output) {
        if self.pager == 0 {
            push_text(&mut out.bytes, text);
            return;
        }
        self.pending = text.lines().map(str::to_string).collect();
        // A page is the screen less the prompt line.
        self.page(self.pager.saturating_sub(1).max(1), out);
    }

    fn error_at(&self, line: &str, words: &[&str], at: usize, out: &mut Output) {
        // The caret goes under the first letter of the bad word, counted from
        // the prompt, as ASA draws it.
        let mut col = self.prompt().len();
        let mut rest = line;
        for (i, w) in words.iter().enumerate() {
            let off = rest.find(w).unwrap_or(0);
            if i == at {
                col += off;
                break;
            }
            col += off + w.len();
            rest = &rest[off + w.len()..];
        }
        let text = format!(
            "{}^\nERROR: % Invalid input detected at '^' marker.\n",
            " ".repeat(col)
        );
        push_text(&mut out.bytes, &text);
    }

    fn execute(&mut self, line: &str, out: &mut Output, backend: &mut dyn Backend) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            return;
        }
        let config_mode = self.mode == Mode::Config;
        match parse(&words, self.privilege, config_mode) {
            Parsed::Ok { cmd, words: canon } => {
                backend.event(CliEvent::Executed {
                    user: self.user.clone(),
                    command: canon.join(" "),
                });
                self.run(COMMANDS[cmd].action, &canon, out, backend);
            }
            Parsed::Invalid { at } => {
                // Refused because of privilege? Then it is logged as such.
                if self.privilege < PRIV_ENABLE
                    && matches!(parse(&words, PRIV_ENABLE, config_mode), Parsed::Ok { .. })
                {
                    backend.event(CliEvent::Denied {
                        user: self.user.clone(),
                        command: line.trim().to_string(),
                    });
                }
                self.error_at(line, &words, at, out);
            }
            Parsed::Ambiguous => push_text(
                &mut out.bytes,
                &format!("ERROR: % Ambiguous command:  \"{}\"\n", line.trim()),
            ),
            Parsed::Incomplete => push_text(&mut out.bytes, "ERROR: % Incomplete command\n"),
        }
    }

    fn run(
        &mut self,
        action: Action,
        canon: &[String],
        out: &mut Output,
        backend: &mut dyn Backend,
    ) {
        let last_num = || {
            canon
                .iter()
                .rev()
                .find_map(|w| w.parse::<usize>().ok())
                .unwrap_or(0)
        };
        match action {
            Action::Admin => {
                let text = backend.run(&canon.join(" "));
                self.show(&text, out);
            }
            Action::CurPriv => {
                let mode = if self.privilege >= PRIV_ENABLE {
                    "P_PRIV"
                } else {
                    "P_UNPR"
                };
                let text = format!(
                    "Username : {}\nCurrent privilege level : {}\nCurrent Mode/s : {mode}\n",
                    self.user, self.privilege
                );
                self.show(&text, out);
            }
            Action::RunningConfig => {
                let text = backend.running_config(&canon[2..]);
                self.show(&text, out);
            }
            Action::Logging => {
                let text = backend.show_logging();
                self.show(&text, out);
            }
            Action::Pager => self.pager = last_num().min(i32::MAX as usize),
            Action::Width => {}
            Action::Enable => {
                if self.privilege >= PRIV_ENABLE {
                    return;
                }
                self.mode = Mode::EnablePassword { tries: 0 };
                out.bytes.extend_from_slice(b"Password: ");
            }
            Action::Login => {
                self.mode = Mode::LoginUser;
                out.bytes.extend_from_slice(b"Username: ");
            }
            Action::Disable => {
                self.privilege = PRIV_USER;
                self.mode = Mode::Exec;
            }
            Action::Exit => {
                push_text(&mut out.bytes, "\nLogoff\n\n");
                self.mode = Mode::Closed;
            }
            Action::ConfigureTerminal => self.mode = Mode::Config,
            Action::End => self.mode = Mode::Exec,
        }
    }
}

/// Appends `text` with terminal line ends (CR LF).
fn push_text(out: &mut Vec<u8>, text: &str) {
    for l in text.split_inclusive('\n') {
        match l.strip_suffix('\n') {
            Some(body) => {
                out.extend_from_slice(body.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            None => out.extend_from_slice(l.as_bytes()),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// `show running-config [section]` from the config text: the lines of the
/// section's top-level commands (those starting with its words) and their
/// indented children, with secrets replaced by `*****` as ASA prints them.
pub fn running_config(text: &str, section: &[String]) -> String {
    let mut out = String::new();
    let mut keep = section.is_empty();
    // The PKCS#12 blob after `crypto ca import NAME pkcs12 PASS`, up to `quit`,
    // is key material: ASA never prints it back.
    let mut in_import = false;
    for line in text.lines() {
        if in_import {
            in_import = line.trim() != "quit";
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        in_import = matches!(
            words.as_slice(),
            ["crypto", "ca", "import", _, "pkcs12", ..]
        );
        if line.trim_start().starts_with('!') && !section.is_empty() {
            continue;
        }
        let top = !line.starts_with(' ');
        if top && !section.is_empty() {
            keep = words.len() >= section.len() && words.iter().zip(section).all(|(w, s)| w == s);
        }
        if keep {
            out.push_str(&mask_secrets(line));
            out.push('\n');
        }
    }
    out
}

/// ASA masks passwords and shared keys in `show running-config`: the word after
/// `password`, `passwd`, `pre-shared-key` or `pkcs12`, and the value of `key`,
/// `radius-common-pw` and `ldap-login-password` lines.
pub fn mask_secrets(line: &str) -> String {
    let indent = &line[..line.len() - line.trim_start().len()];
    let words: Vec<&str> = line.split_whitespace().collect();
    let value_line = matches!(
        words.first().copied(),
        Some("key" | "radius-common-pw" | "ldap-login-password")
    );
    let mut hide_next = false;
    let mut masked: Vec<&str> = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        if hide_next || (value_line && i == 1) {
            masked.push("*****");
            hide_next = false;
            continue;
        }
        masked.push(w);
        hide_next = matches!(*w, "password" | "passwd" | "pre-shared-key" | "pkcs12");
    }
    format!("{indent}{}", masked.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake {
        ran: Vec<String>,
        events: Vec<CliEvent>,
        reply: String,
    }

    impl Backend for Fake {
        fn run(&mut self, command: &str) -> String {
            self.ran.push(command.to_string());
            self.reply.clone()
        }
        fn running_config(&mut self, section: &[String]) -> String {
            running_config(
                "hostname vpn\nusername admin password Secr3t privilege 15\nenable password En4ble\naaa-server ISE (inside) host 198.18.1.5\n key RadKey\ntunnel-group TG type remote-access\ncrypto ca import ID pkcs12 P12pass\nMIIKEYBLOB\nquit\n",
                section,
            )
        }
        fn show_logging(&mut self) -> String {
            "Syslog logging: enabled\n".into()
        }
        fn event(&mut self, e: CliEvent) {
            self.events.push(e);
        }
        fn check_login(&mut self, user: &str, password: &str) -> Option<u8> {
            (user == "admin" && password == "Secr3t").then_some(15)
        }
    }

    fn s() -> CliSession {
        CliSession::new("vpn", "admin", Some("En4ble".into()))
    }

    fn typed(cli: &mut CliSession, f: &mut Fake, text: &str) -> String {
        let o = cli.input(text.as_bytes(), f);
        String::from_utf8(o.bytes).unwrap()
    }

    #[test]
    fn prompt_enable_and_prefixes() {
        let (mut cli, mut f) = (s(), Fake::default());
        assert_eq!(cli.start(), b"vpn> ");
        // Echo, then the command's output and the prompt.
        f.reply = "INFO: There are presently no active sessions\n".into();
        let out = typed(&mut cli, &mut f, "sh vpn-s anyc\r\n");
        assert_eq!(
            out,
            "sh vpn-s anyc\r\nINFO: There are presently no active sessions\r\nvpn> "
        );
        assert_eq!(f.ran, ["show vpn-sessiondb anyconnect"]);

        // Not at level 1: refused with a caret, and logged as denied.
        let out = typed(
            &mut cli,
            &mut f,
            "vpn-sessiondb logoff name bob noconfirm\r",
        );
        assert!(
            out.ends_with("\r\n     ^\r\nERROR: % Invalid input detected at '^' marker.\r\nvpn> "),
            "{out:?}"
        );
        assert!(f.events.contains(&CliEvent::Denied {
            user: "admin".into(),
            command: "vpn-sessiondb logoff name bob noconfirm".into()
        }));
        assert_eq!(f.ran.len(), 1);

        // Wrong enable password, then the right one: no echo of either.
        let out = typed(&mut cli, &mut f, "en\rnope\r");
        assert_eq!(out, "en\r\nPassword: \r\nPassword: ");
        let out = typed(&mut cli, &mut f, "En4ble\r");
        assert_eq!(out, "\r\nvpn# ");
        assert_eq!(cli.privilege(), 15);
        assert!(f.events.contains(&CliEvent::EnableFailed {
            user: "admin".into()
        }));

        f.reply = "INFO: Number of sessions with name \"bob\" logged off : 1\n".into();
        typed(
            &mut cli,
            &mut f,
            "vpn-sessiondb logoff name bob noconfirm\r",
        );
        assert_eq!(f.ran[1], "vpn-sessiondb logoff name bob noconfirm");

        let out = typed(&mut cli, &mut f, "show curpriv\r");
        assert!(
            out.contains(
                "Username : admin\r\nCurrent privilege level : 15\r\nCurrent Mode/s : P_PRIV\r\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn errors_ambiguous_incomplete_and_caret() {
        let (mut cli, mut f) = (s(), Fake::default());
        let out = typed(&mut cli, &mut f, "show bogus\r");
        // prompt "vpn> " is 5 columns, "show " 5 more.
        assert_eq!(
            out,
            "show bogus\r\n          ^\r\nERROR: % Invalid input detected at '^' marker.\r\nvpn> "
        );
        let out = typed(&mut cli, &mut f, "show c\r");
        assert!(
            out.contains("ERROR: % Ambiguous command:  \"show c\""),
            "{out}"
        );
        let out = typed(&mut cli, &mut f, "show cts role-based\r");
        assert!(out.contains("ERROR: % Incomplete command"), "{out}");
        assert!(f.ran.is_empty());
    }

    #[test]
    fn question_mark_help() {
        let (mut cli, mut f) = (s(), Fake::default());
        let out = typed(&mut cli, &mut f, "show vpn-sessiondb ?");
        assert!(
            out.contains("  anyconnect      AnyConnect sessions\r\n"),
            "{out}"
        );
        assert!(out.contains("  summary "), "{out}");
        assert!(out.contains("  <cr>\r\n"), "{out}");
        // Prompt and the partial line come back.
        assert!(out.ends_with("vpn> show vpn-sessiondb "), "{out}");
        let out = typed(&mut cli, &mut f, "\x15sh c?");
        assert!(out.contains("?\r\ncts  counters  curpriv\r\n"), "{out}");
        // Privileged commands are not listed at level 1.
        let out = typed(&mut cli, &mut f, "\x15?");
        assert!(!out.contains("vpn-sessiondb"), "{out}");
        assert!(out.contains("enable"), "{out}");
    }

    #[test]
    fn pager_and_terminal_pager_0() {
        let (mut cli, mut f) = (s(), Fake::default());
        f.reply = (1..=30).map(|i| format!("line {i}\n")).collect();
        let out = typed(&mut cli, &mut f, "show counters\r");
        assert!(out.contains("line 23\r\n<--- More --->"), "{out}");
        assert!(!out.contains("line 24"), "{out}");
        let out = typed(&mut cli, &mut f, " ");
        assert!(out.contains("line 30\r\n"), "{out}");
        assert!(out.ends_with("vpn> "), "{out}");
        typed(&mut cli, &mut f, "terminal pager 0\r");
        let out = typed(&mut cli, &mut f, "show counters\r");
        assert!(out.contains("line 30\r\nvpn> "), "{out}");
        assert!(!out.contains("More"), "{out}");
    }

    #[test]
    fn login_as_a_local_user() {
        let (mut cli, mut f) = (s(), Fake::default());
        let out = typed(&mut cli, &mut f, "login\radmin\rbad\r");
        assert_eq!(
            out,
            "login\r\nUsername: admin\r\nPassword: \r\nInvalid password\r\nvpn> "
        );
        let out = typed(&mut cli, &mut f, "login\radmin\rSecr3t\r");
        assert!(out.ends_with("Password: \r\nvpn# "), "{out:?}");
        assert_eq!(cli.privilege(), 15);
    }

    #[test]
    fn config_mode_for_netmiko_and_exit() {
        let (mut cli, mut f) = (s(), Fake::default());
        typed(&mut cli, &mut f, "enable\rEn4ble\r");
        let out = typed(&mut cli, &mut f, "configure terminal\r");
        assert!(out.ends_with("vpn(config)# "), "{out}");
        let out = typed(&mut cli, &mut f, "terminal width 511\r");
        assert!(out.ends_with("vpn(config)# "), "{out}");
        let out = typed(&mut cli, &mut f, "end\r");
        assert!(out.ends_with("vpn# "), "{out}");
        let o = cli.input(b"exit\r", &mut f);
        assert!(o.close);
    }

    #[test]
    fn running_config_masks_and_sections() {
        let (mut cli, mut f) = (s(), Fake::default());
        let out = typed(&mut cli, &mut f, "show running-config\r");
        assert!(out.contains("ERROR: % Invalid input"), "level 1: {out}");
        typed(&mut cli, &mut f, "enable\rEn4ble\rterminal pager 0\r");
        let out = typed(&mut cli, &mut f, "show run\r");
        assert!(
            out.contains("username admin password ***** privilege 15\r\n"),
            "{out}"
        );
        assert!(out.contains("enable password *****\r\n"), "{out}");
        assert!(out.contains(" key *****\r\n"), "{out}");
        assert!(
            out.contains("crypto ca import ID pkcs12 *****\r\n"),
            "{out}"
        );
        for secret in ["Secr3t", "En4ble", "RadKey", "P12pass", "MIIKEYBLOB"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        let out = typed(&mut cli, &mut f, "show running-config aaa-server\r");
        assert!(
            out.contains("aaa-server ISE (inside) host 198.18.1.5\r\n key *****\r\n"),
            "{out}"
        );
        assert!(!out.contains("tunnel-group"), "{out}");
    }
}
