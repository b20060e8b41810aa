//! The client side of the aggregate-auth XML login, as openconnect 9.01 runs it
//! (protocol.md section 1): init, re-init with `<group-select>` the first time a
//! group list is seen, auth-reply with username/password and the opaque copied
//! back verbatim, success recognised only by `<auth id="success">`.
//!
//! Sans-IO: [`Login`] takes response bodies and hands out request bodies; the
//! session task moves the bytes. The unit tests feed it the headend's own
//! renderers (`headend::proto::xmlauth`), so the two cannot drift apart unnoticed.

use headend::proto::xmlauth::escape;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// What the server's XML said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerForm {
    /// `<opaque ...>...</opaque>` exactly as received (copied back verbatim).
    pub opaque: Option<String>,
    /// `(value, label)` of `<select name="group_list">`.
    pub groups: Vec<(String, String)>,
    /// The form has a `username` input.
    pub has_username: bool,
    /// The form has a `password` input.
    pub has_password: bool,
    /// `<error>` text.
    pub error: Option<String>,
    /// `<auth id="success">` was present.
    pub success: bool,
    /// `<session-token>`.
    pub session_token: Option<String>,
}

fn attr(e: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

/// The first `<NAME ...>...</NAME>` of `body`, verbatim.
fn raw_element(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("<{name}"))?;
    let close = format!("</{name}>");
    let end = body[start..].find(&close)? + start + close.len();
    Some(body[start..end].to_owned())
}

/// Parses a server `<config-auth>` body (auth-request or complete).
pub fn parse_server(body: &str) -> Result<ServerForm, String> {
    let mut form = ServerForm {
        opaque: raw_element(body, "opaque"),
        ..ServerForm::default()
    };
    let mut reader = Reader::from_str(body);
    let mut option_value: Option<String> = None;
    let mut in_group_list = false;
    // Text of the innermost open element (quick-xml splits it at entities).
    let mut text = String::new();
    let bad = |e: &dyn std::fmt::Display| format!("bad auth XML: {e}");
    // Bounded by the body: every event consumes input.
    loop {
        let (e, empty) = match reader.read_event().map_err(|e| bad(&e))? {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(e) => {
                let t = std::mem::take(&mut text).trim().to_owned();
                match e.name().as_ref() {
                    b"select" => in_group_list = false,
                    b"option" if in_group_list => {
                        if let Some(v) = option_value.take() {
                            form.groups.push((v, t));
                        }
                    }
                    b"error" => form.error = Some(t),
                    b"session-token" => form.session_token = Some(t),
                    _ => {}
                }
                continue;
            }
            Event::Text(t) => {
                text.push_str(&t.decode().map_err(|e| bad(&e))?);
                continue;
            }
            Event::GeneralRef(r) => {
                if let Some(c) = r.resolve_char_ref().map_err(|e| bad(&e))? {
                    text.push(c);
                } else {
                    let name = r.decode().map_err(|e| bad(&e))?;
                    let v = quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("bad auth XML: unknown entity &{name};"))?;
                    text.push_str(v);
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        text.clear();
        match e.name().as_ref() {
            b"auth" if attr(&e, b"id").as_deref() == Some("success") => form.success = true,
            b"input" => match attr(&e, b"name").as_deref() {
                Some("password") => form.has_password = true,
                Some("username") => form.has_username = true,
                _ => {}
            },
            b"select" if !empty => {
                in_group_list = attr(&e, b"name").as_deref() == Some("group_list");
            }
            b"option" if in_group_list => option_value = attr(&e, b"value"),
            _ => {}
        }
    }
    Ok(form)
}

/// openconnect's init body (auth.c `xmlpost_initial_req`), byte for byte.
pub fn init_body(group_access: &str, group_select: Option<&str>) -> String {
    let mut x = String::with_capacity(512);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str("<config-auth client=\"vpn\" type=\"init\" aggregate-auth-version=\"2\">");
    x.push_str("<version who=\"vpn\">v9.01-3</version><device-id>linux-64</device-id>");
    x.push_str("<capabilities><auth-method>single-sign-on-v2</auth-method>");
    x.push_str("<auth-method>single-sign-on-external-browser</auth-method></capabilities>");
    x.push_str("<group-access>");
    x.push_str(&escape(group_access));
    x.push_str("</group-access>");
    if let Some(g) = group_select {
        x.push_str("<group-select>");
        x.push_str(&escape(g));
        x.push_str("</group-select>");
    }
    x.push_str("</config-auth>\n");
    x
}

/// The auth-reply with the form filled in.
pub fn reply_body(
    opaque: Option<&str>,
    user: Option<&str>,
    password: Option<&str>,
    group_select: Option<&str>,
) -> String {
    let mut x = String::with_capacity(512);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str("<config-auth client=\"vpn\" type=\"auth-reply\" aggregate-auth-version=\"2\">");
    x.push_str("<version who=\"vpn\">v9.01-3</version><device-id>linux-64</device-id>");
    if let Some(o) = opaque {
        x.push_str(o);
    }
    // Only the inputs the form asked for (ocserv asks for the username and
    // the password in two forms).
    x.push_str("<auth>");
    if let Some(u) = user {
        x.push_str("<username>");
        x.push_str(&escape(u));
        x.push_str("</username>");
    }
    if let Some(p) = password {
        x.push_str("<password>");
        x.push_str(&escape(p));
        x.push_str("</password>");
    }
    x.push_str("</auth>");
    if let Some(g) = group_select {
        x.push_str("<group-select>");
        x.push_str(&escape(g));
        x.push_str("</group-select>");
    }
    x.push_str("<capabilities><auth-method>single-sign-on-v2</auth-method>");
    x.push_str("<auth-method>single-sign-on-external-browser</auth-method></capabilities>");
    x.push_str("</config-auth>\n");
    x
}

/// `--authgroup`: option labels matched case-insensitively by prefix; the
/// option's value is sent.
pub fn pick_group<'a>(groups: &'a [(String, String)], wanted: &str) -> Option<&'a str> {
    let w = wanted.to_ascii_lowercase();
    groups
        .iter()
        .find(|(_, label)| label.to_ascii_lowercase().starts_with(&w))
        .map(|(v, _)| v.as_str())
}

/// Next step of a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// POST this body to `/`.
    Post(String),
    /// Logged in: the bearer cookie (`webvpn=`).
    Done(String),
    /// The server refused or the exchange went wrong.
    Failed(String),
}

/// One login's state.
#[derive(Debug)]
pub struct Login {
    group_access: String,
    user: String,
    password: String,
    group: Option<String>,
    selected: Option<String>,
    reinited: bool,
    replied: bool,
    posts: u8,
}

/// More round trips than any login needs: a server that keeps asking is broken.
const MAX_POSTS: u8 = 6;

impl Login {
    pub fn new(group_access: &str, user: &str, password: &str, group: Option<&str>) -> Self {
        Self {
            group_access: group_access.to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
            group: group.map(str::to_owned),
            selected: None,
            reinited: false,
            replied: false,
            posts: 0,
        }
    }

    /// The first request.
    pub fn start(&mut self) -> Step {
        self.posts = 1;
        Step::Post(init_body(&self.group_access, None))
    }

    /// Feeds one response: HTTP status, the `webvpn` value of any
    /// `Set-Cookie`, and the body.
    pub fn on_response(&mut self, status: u16, set_cookie: Option<&str>, body: &str) -> Step {
        if status != 200 {
            return Step::Failed(format!("HTTP {status} during auth"));
        }
        let form = match parse_server(body) {
            Ok(f) => f,
            Err(e) => return Step::Failed(e),
        };
        if form.success {
            return match form.session_token.as_deref().or(set_cookie) {
                Some(t) if !t.is_empty() => Step::Done(t.to_owned()),
                _ => Step::Failed("success without a session token".into()),
            };
        }
        if self.posts >= MAX_POSTS {
            return Step::Failed("too many auth round trips".into());
        }
        self.posts += 1;
        if !form.groups.is_empty() && !self.reinited {
            // openconnect re-inits once with the chosen (or default) group.
            self.reinited = true;
            let value = match &self.group {
                Some(g) => match pick_group(&form.groups, g) {
                    Some(v) => v.to_owned(),
                    None => return Step::Failed(format!("no group matching {g:?}")),
                },
                None => form.groups[0].0.clone(),
            };
            self.selected = Some(value);
            return Step::Post(init_body(&self.group_access, self.selected.as_deref()));
        }
        if form.has_password || form.has_username {
            // Asked again for the password: it was refused.
            if form.has_password && self.replied {
                let why = form.error.unwrap_or_else(|| "login refused".into());
                return Step::Failed(format!("auth: {why}"));
            }
            self.replied |= form.has_password;
            return Step::Post(reply_body(
                form.opaque.as_deref(),
                form.has_username.then_some(self.user.as_str()),
                form.has_password.then_some(self.password.as_str()),
                self.selected.as_deref(),
            ));
        }
        Step::Failed(format!(
            "auth: {}",
            form.error
                .unwrap_or_else(|| "form without username/password".into())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use headend::proto::xmlauth::{
        ClientMessage, MessageKind, parse_client, render_password_form, render_refusal,
        render_success,
    };

    fn groups() -> Vec<(String, String)> {
        vec![
            ("LOCAL-PW".into(), "LOCAL-PW".into()),
            ("LOCAL-NODTLS".into(), "LOCAL-NODTLS".into()),
        ]
    }

    fn parse(body: &str) -> ClientMessage {
        parse_client(body.as_bytes()).expect("headend parses what loadgen sends")
    }

    #[test]
    fn full_login_against_headend_renderers() {
        let mut l = Login::new("https://198.18.0.1/", "u1", "p<w>", Some("local-nodtls"));
        let Step::Post(init) = l.start() else {
            panic!()
        };
        let m = parse(&init);
        assert_eq!(m.kind, MessageKind::Init);
        assert_eq!(m.group_select, None);

        // The chooser: re-init with the group whose label matches by prefix.
        let chooser = render_password_form("LOCAL-PW", &groups(), Some("LOCAL-PW"), None);
        let Step::Post(reinit) = l.on_response(200, None, &chooser) else {
            panic!()
        };
        let m = parse(&reinit);
        assert_eq!(m.kind, MessageKind::Init);
        assert_eq!(m.group_select.as_deref(), Some("LOCAL-NODTLS"));

        // The password form for that group: reply with the opaque copied back.
        let form = render_password_form("LOCAL-NODTLS", &groups(), Some("LOCAL-NODTLS"), None);
        let Step::Post(reply) = l.on_response(200, None, &form) else {
            panic!()
        };
        let m = parse(&reply);
        assert_eq!(m.kind, MessageKind::AuthReply);
        assert_eq!(m.username.as_deref(), Some("u1"));
        assert_eq!(m.password.as_deref(), Some("p<w>"));
        assert_eq!(m.opaque_tunnel_group.as_deref(), Some("LOCAL-NODTLS"));
        assert_eq!(m.group_select.as_deref(), Some("LOCAL-NODTLS"));

        let ok = render_success("TOKEN123", "ABC");
        assert_eq!(
            l.on_response(200, Some("TOKEN123"), &ok),
            Step::Done("TOKEN123".into())
        );
    }

    #[test]
    fn wrong_password_and_refusal_fail_with_the_server_text() {
        let mut l = Login::new("https://h/", "u", "bad", None);
        l.start();
        let form = render_password_form("LOCAL-PW", &[], None, None);
        assert!(matches!(l.on_response(200, None, &form), Step::Post(_)));
        let again = render_password_form("LOCAL-PW", &[], None, Some("Login failed."));
        assert_eq!(
            l.on_response(200, None, &again),
            Step::Failed("auth: Login failed.".into())
        );

        let mut l = Login::new("https://h/", "u", "p", None);
        l.start();
        let refusal = render_refusal(Some("LOCAL-PW"), "Session limit reached");
        assert_eq!(
            l.on_response(200, None, &refusal),
            Step::Failed("auth: Session limit reached".into())
        );
    }

    #[test]
    fn unknown_group_http_errors_and_garbage_fail() {
        let mut l = Login::new("https://h/", "u", "p", Some("nope"));
        l.start();
        let chooser = render_password_form("LOCAL-PW", &groups(), None, None);
        assert!(matches!(
            l.on_response(200, None, &chooser),
            Step::Failed(_)
        ));
        assert!(matches!(l.on_response(401, None, ""), Step::Failed(_)));
        let mut l = Login::new("https://h/", "u", "p", None);
        l.start();
        assert!(matches!(
            l.on_response(200, None, "<config-auth><auth"),
            Step::Failed(_)
        ));
    }

    #[test]
    fn a_server_that_keeps_asking_is_cut_off() {
        let mut l = Login::new("https://h/", "u", "p", None);
        l.start();
        let chooser = render_password_form("A", &groups(), None, None);
        let mut steps = 0;
        while let Step::Post(_) = l.on_response(200, None, &chooser) {
            steps += 1;
            assert!(steps < 20, "login never gives up");
        }
    }

    /// ocserv's plain auth: a username form, then a password form.
    #[test]
    fn username_then_password_forms() {
        let user_form = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<config-auth client=\"vpn\" type=\"auth-request\"><auth id=\"main\"><message>Please enter your username.</message>\
<form method=\"post\" action=\"/auth\"><input type=\"text\" name=\"username\" label=\"Username:\" /></form></auth></config-auth>";
        let pass_form = user_form.replace("username.", "password.").replace(
            "type=\"text\" name=\"username\"",
            "type=\"password\" name=\"password\"",
        );
        let mut l = Login::new("https://h/", "u1", "pw", None);
        l.start();
        let Step::Post(r1) = l.on_response(200, None, user_form) else {
            panic!()
        };
        let m = parse(&r1);
        assert_eq!(
            (m.username.as_deref(), m.password.as_deref()),
            (Some("u1"), None)
        );
        let Step::Post(r2) = l.on_response(200, None, &pass_form) else {
            panic!()
        };
        let m = parse(&r2);
        assert_eq!(
            (m.username.as_deref(), m.password.as_deref()),
            (None, Some("pw"))
        );
        assert!(matches!(
            l.on_response(200, None, &pass_form),
            Step::Failed(_)
        ));
    }

    #[test]
    fn group_prefix_match_is_case_insensitive() {
        let g = groups();
        assert_eq!(pick_group(&g, "local-n"), Some("LOCAL-NODTLS"));
        assert_eq!(pick_group(&g, "LOCAL"), Some("LOCAL-PW"));
        assert_eq!(pick_group(&g, "x"), None);
    }
}
