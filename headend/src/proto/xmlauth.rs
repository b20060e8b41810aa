//! Aggregate-auth XML (`<config-auth>`) as openconnect 9.01 speaks it
//! (protocol.md §1; openconnect `auth.c`: `xmlpost_new_query`,
//! `xmlpost_initial_req`, `xmlpost_append_form_opts`, `parse_xml_response`).
//!
//! Parsing is strict and never expands anything: a `DOCTYPE` is rejected
//! outright, only the five predefined entities and character references are
//! decoded, any other `&name;` is an error, and input is capped at
//! [`MAX_XML_LEN`] bytes and [`MAX_DEPTH`] levels.
//!
//! `<opaque>`: the server puts its state in `<opaque is-for="sg">` and
//! openconnect copies that element back verbatim (libxml2 `xmlCopyNode`) in every
//! auth-reply, but not in a (re-)init. [`ClientMessage`] keeps both the raw
//! inner XML ([`ClientMessage::opaque`], byte for byte) and the two fields this
//! server writes into it, decoded: `<tunnel-group>` and `<aggauth-handle>` (our
//! auth context). The opaque comes from the client, so treat both as untrusted
//! hints that must be checked against server-side state.

use std::borrow::Cow;
use std::fmt::Write as _;

use quick_xml::Reader;
use quick_xml::events::{BytesRef, BytesStart, Event};
use thiserror::Error;

/// Largest `<config-auth>` body we parse (openconnect's are well under 2 KiB).
pub const MAX_XML_LEN: usize = 32 * 1024;
/// Deepest element nesting we accept.
pub const MAX_DEPTH: usize = 16;

/// Why a client message was refused (answer 400 and log it).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum XmlAuthError {
    #[error("auth XML of {len} bytes exceeds the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("auth XML is not valid UTF-8")]
    NotUtf8,
    #[error("DOCTYPE declarations are not allowed")]
    Doctype,
    #[error("entity reference &{0}; is not allowed")]
    UnknownEntity(String),
    #[error("root element is <{0}>, not <config-auth>")]
    NotConfigAuth(String),
    #[error("no root element")]
    NoRoot,
    #[error("elements nested deeper than {0}")]
    TooDeep(usize),
    #[error("content after the root element")]
    TrailingContent,
    #[error("document ends inside an element")]
    Truncated,
    #[error("element <{0}> appears twice")]
    Duplicate(String),
    #[error("malformed XML: {0}")]
    Malformed(String),
}

impl From<quick_xml::Error> for XmlAuthError {
    fn from(e: quick_xml::Error) -> Self {
        XmlAuthError::Malformed(e.to_string())
    }
}

impl From<quick_xml::encoding::EncodingError> for XmlAuthError {
    fn from(_: quick_xml::encoding::EncodingError) -> Self {
        XmlAuthError::NotUtf8
    }
}

/// The `type` attribute of `<config-auth>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    /// First request, and the re-init after choosing a group.
    Init,
    /// Form answer (username/password, sso-token, ...).
    AuthReply,
    /// Sent by Cisco clients; openconnect 9.01 has no HTTP logout.
    Logout,
    /// Anything else, verbatim (empty if the attribute is missing).
    Other(String),
}

impl MessageKind {
    fn from_attr(s: &str) -> Self {
        match s {
            "init" => MessageKind::Init,
            "auth-reply" => MessageKind::AuthReply,
            "logout" => MessageKind::Logout,
            other => MessageKind::Other(other.to_owned()),
        }
    }
}

/// A parsed client `<config-auth>`. Present-but-empty elements give `Some("")`.
/// Text is returned exactly as sent (no trimming: passwords may have blanks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    pub kind: MessageKind,
    /// `<group-access>`: the URL the user typed (init only).
    pub group_access: Option<String>,
    /// `<group-select>` directly under `<config-auth>` (re-init or auth-reply).
    pub group_select: Option<String>,
    /// Raw inner XML of `<opaque>`, byte for byte as received.
    pub opaque: Option<String>,
    /// `<opaque><tunnel-group>`, decoded.
    pub opaque_tunnel_group: Option<String>,
    /// `<opaque><aggauth-handle>`, decoded: the context this server issued.
    pub opaque_context: Option<String>,
    /// `<auth><username>`.
    pub username: Option<String>,
    /// `<auth><password>` (openconnect also renames `answer`, `whichpin` and
    /// `new_password` inputs to this).
    pub password: Option<String>,
    /// `<auth><sso-token>`: the input named `sso-token` in our SSO form.
    pub sso_token: Option<String>,
    /// Other leaf children of `<auth>` (e.g. `secondary_password`), in order.
    pub other_auth_fields: Vec<(String, String)>,
    /// `<version who="vpn">`, e.g. `v9.01-3`.
    pub version: Option<String>,
    /// `<device-id>`, e.g. `linux-64`.
    pub device_id: Option<String>,
    /// `<capabilities><auth-method>` values, e.g. `single-sign-on-v2`,
    /// `single-sign-on-external-browser`.
    pub capabilities: Vec<String>,
}

impl ClientMessage {
    fn new(kind: MessageKind) -> Self {
        Self {
            kind,
            group_access: None,
            group_select: None,
            opaque: None,
            opaque_tunnel_group: None,
            opaque_context: None,
            username: None,
            password: None,
            sso_token: None,
            other_auth_fields: Vec::new(),
            version: None,
            device_id: None,
            capabilities: Vec::new(),
        }
    }

    /// Whether the client offered `<auth-method>` `method`.
    pub fn has_capability(&self, method: &str) -> bool {
        self.capabilities.iter().any(|c| c == method)
    }
}

fn set_once(slot: &mut Option<String>, name: &str, value: String) -> Result<(), XmlAuthError> {
    if slot.is_some() {
        return Err(XmlAuthError::Duplicate(name.to_owned()));
    }
    *slot = Some(value);
    Ok(())
}

fn element_name(e: &BytesStart<'_>) -> Result<String, XmlAuthError> {
    std::str::from_utf8(e.name().as_ref())
        .map(str::to_owned)
        .map_err(|_| XmlAuthError::NotUtf8)
}

/// Decode `&...;` in text: character references and the five XML entities.
fn resolve_ref(r: &BytesRef<'_>, out: &mut String) -> Result<(), XmlAuthError> {
    if r.is_char_ref() {
        match r.resolve_char_ref()? {
            Some(c) => out.push(c),
            None => return Err(XmlAuthError::Malformed("bad character reference".into())),
        }
        return Ok(());
    }
    let name = r.decode()?;
    let c = match name.as_ref() {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        other => return Err(XmlAuthError::UnknownEntity(other.to_owned())),
    };
    out.push(c);
    Ok(())
}

/// Parse a client `<config-auth>` body (the HTTP POST body).
pub fn parse_client(body: &[u8]) -> Result<ClientMessage, XmlAuthError> {
    if body.len() > MAX_XML_LEN {
        return Err(XmlAuthError::TooLarge {
            len: body.len(),
            limit: MAX_XML_LEN,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| XmlAuthError::NotUtf8)?;
    let mut reader = Reader::from_str(text);
    {
        let cfg = reader.config_mut();
        cfg.check_end_names = true;
        cfg.check_comments = true;
        cfg.expand_empty_elements = false;
        cfg.allow_dangling_amp = false;
        cfg.allow_unmatched_ends = false;
        cfg.trim_text(false);
    }

    let mut msg: Option<ClientMessage> = None;
    let mut stack: Vec<String> = Vec::new();
    let mut root_done = false;
    // Text since the last start/end tag: the content of a leaf element.
    let mut leaf_text = String::new();
    // Byte offset just after `<opaque ...>` (inner XML start).
    let mut opaque_start: Option<usize> = None;

    loop {
        let before = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader.read_event()?;
        match event {
            Event::DocType(_) => return Err(XmlAuthError::Doctype),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                let name = element_name(e)?;
                if stack.is_empty() {
                    if root_done {
                        return Err(XmlAuthError::TrailingContent);
                    }
                    if name != "config-auth" {
                        return Err(XmlAuthError::NotConfigAuth(name));
                    }
                    let mut kind = String::new();
                    for attr in e.attributes() {
                        let attr = attr.map_err(|err| XmlAuthError::Malformed(err.to_string()))?;
                        if attr.key.as_ref() == b"type" {
                            kind = attr
                                .decode_and_unescape_value(reader.decoder())?
                                .into_owned();
                        }
                    }
                    msg = Some(ClientMessage::new(MessageKind::from_attr(&kind)));
                } else {
                    // Validate the other elements' attributes too (well-formedness).
                    for attr in e.attributes() {
                        attr.map_err(|err| XmlAuthError::Malformed(err.to_string()))?;
                    }
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlAuthError::TooDeep(MAX_DEPTH));
                }
                stack.push(name);
                leaf_text.clear();
                if is_opaque_path(&stack) {
                    opaque_start = Some(usize::try_from(reader.buffer_position()).unwrap_or(0));
                }
                if is_empty {
                    let inner_end = if is_opaque_path(&stack) {
                        opaque_start
                    } else {
                        None
                    };
                    end_element(
                        &mut msg,
                        &mut stack,
                        &mut leaf_text,
                        text,
                        opaque_start,
                        inner_end,
                    )?;
                    if stack.is_empty() {
                        root_done = true;
                    }
                }
            }
            Event::End(_) => {
                end_element(
                    &mut msg,
                    &mut stack,
                    &mut leaf_text,
                    text,
                    opaque_start,
                    Some(before),
                )?;
                if stack.is_empty() {
                    root_done = true;
                }
            }
            Event::Text(t) => {
                let s = t.decode()?;
                if stack.is_empty() {
                    if !s.trim().is_empty() {
                        return Err(if root_done {
                            XmlAuthError::TrailingContent
                        } else {
                            XmlAuthError::Malformed("text before the root element".into())
                        });
                    }
                } else {
                    leaf_text.push_str(&s);
                }
            }
            Event::CData(c) => {
                if stack.is_empty() {
                    return Err(XmlAuthError::Malformed(
                        "CDATA outside the root element".into(),
                    ));
                }
                leaf_text.push_str(&c.decode()?);
            }
            Event::GeneralRef(r) => {
                if stack.is_empty() {
                    return Err(XmlAuthError::Malformed(
                        "reference outside the root element".into(),
                    ));
                }
                resolve_ref(&r, &mut leaf_text)?;
            }
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlAuthError::Truncated);
    }
    msg.ok_or(XmlAuthError::NoRoot)
}

fn is_opaque_path(stack: &[String]) -> bool {
    matches!(stack, [root, o] if root == "config-auth" && o == "opaque")
}

/// Close the innermost element and store its text if it is a field we read.
/// `inner_end` is the byte offset of the closing tag (for `<opaque>`).
fn end_element(
    msg: &mut Option<ClientMessage>,
    stack: &mut Vec<String>,
    leaf_text: &mut String,
    doc: &str,
    opaque_start: Option<usize>,
    inner_end: Option<usize>,
) -> Result<(), XmlAuthError> {
    let closing_opaque = is_opaque_path(stack);
    let Some(name) = stack.pop() else {
        return Err(XmlAuthError::Malformed("unmatched end tag".into()));
    };
    let value = std::mem::take(leaf_text);
    let Some(m) = msg.as_mut() else {
        return Ok(());
    };
    let parent: Vec<&str> = stack.iter().map(String::as_str).collect();
    match (parent.as_slice(), name.as_str()) {
        (["config-auth"], "opaque") if closing_opaque => {
            let raw = match (opaque_start, inner_end) {
                (Some(s), Some(e)) => doc.get(s..e).unwrap_or_default().to_owned(),
                _ => String::new(),
            };
            set_once(&mut m.opaque, "opaque", raw)?;
        }
        (["config-auth"], "version") => set_once(&mut m.version, "version", value)?,
        (["config-auth"], "device-id") => set_once(&mut m.device_id, "device-id", value)?,
        (["config-auth"], "group-access") => {
            set_once(&mut m.group_access, "group-access", value)?;
        }
        (["config-auth"], "group-select") => {
            set_once(&mut m.group_select, "group-select", value)?;
        }
        (["config-auth", "capabilities"], "auth-method") => m.capabilities.push(value),
        (["config-auth", "opaque"], "tunnel-group") => {
            set_once(&mut m.opaque_tunnel_group, "tunnel-group", value)?;
        }
        (["config-auth", "opaque"], "aggauth-handle") => {
            set_once(&mut m.opaque_context, "aggauth-handle", value)?;
        }
        (["config-auth", "auth"], "username") => set_once(&mut m.username, "username", value)?,
        (["config-auth", "auth"], "password") => set_once(&mut m.password, "password", value)?,
        (["config-auth", "auth"], "sso-token") => set_once(&mut m.sso_token, "sso-token", value)?,
        (["config-auth", "auth"], _) => m.other_auth_fields.push((name, value)),
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Server messages
// ---------------------------------------------------------------------------

/// Escape text or attribute content. Characters XML 1.0 forbids (most C0
/// controls) become U+FFFD so libxml2 never sees an invalid document.
pub fn escape(s: &str) -> Cow<'_, str> {
    let needs = s
        .chars()
        .any(|c| matches!(c, '&' | '<' | '>' | '"' | '\'' | '\r' | '\n' | '\t') || is_forbidden(c));
    if !needs {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Escaped so attribute values survive whitespace normalisation.
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c if is_forbidden(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn is_forbidden(c: char) -> bool {
    (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// The SSO (`single-sign-on-v2`) part of an auth-request (protocol.md §1,
/// SAML). openconnect reads the `sso-v2-*` elements only as children of
/// `<auth>` and starts SSO only when the form has an input of type `sso`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoLogin {
    /// `<sso-v2-login>`: URL the browser opens; carries a one-time context.
    pub login_url: String,
    /// `<sso-v2-login-final>`: URL where embedded browsers find the token cookie.
    pub login_final_url: String,
    /// `<sso-v2-token-cookie-name>`, normally `acSamlv2Token`.
    pub token_cookie_name: String,
    /// `<sso-v2-error-cookie-name>`, normally `acSamlv2Error`.
    pub error_cookie_name: String,
    /// `<sso-v2-browser-mode>`: `external` (compared case-sensitively); empty =
    /// no element, which means the client's embedded browser.
    pub browser_mode: String,
}

impl SsoLogin {
    /// External-browser SSO with the cookie names Cisco uses.
    pub fn external(login_url: impl Into<String>, login_final_url: impl Into<String>) -> Self {
        Self {
            login_url: login_url.into(),
            login_final_url: login_final_url.into(),
            token_cookie_name: "acSamlv2Token".to_owned(),
            error_cookie_name: "acSamlv2Error".to_owned(),
            browser_mode: "external".to_owned(),
        }
    }

    /// The same for the client's embedded browser (ASA's default): no
    /// `<sso-v2-browser-mode>`.
    pub fn embedded(login_url: impl Into<String>, login_final_url: impl Into<String>) -> Self {
        Self {
            browser_mode: String::new(),
            ..Self::external(login_url, login_final_url)
        }
    }
}

/// Which inputs the form asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormInputs {
    /// `username` (text) and `password` (password). Repeat these, with an
    /// error, after a wrong password: a form without inputs makes openconnect
    /// abort.
    Password,
    /// The SSO form: `<input type="sso" name="sso-token">` plus `sso-v2-*`.
    /// The group list is never rendered with it (9.01 would start SSO at once
    /// and never re-init for the group).
    Sso(SsoLogin),
    /// No inputs: only the group list, or (with no group list) a final
    /// message/error after which openconnect gives up.
    None,
    /// A RADIUS Access-Challenge (one-time code, MFA): `<auth id="challenge">`
    /// with one password input named `password` labelled `Response:`; the
    /// server's Reply-Message is the form's message. openconnect posts it back
    /// with the opaque (`-F challenge:password=CODE` fills it non-interactively).
    Challenge,
}

/// A `type="auth-request"` message with `<auth id="main">`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequestForm {
    pub title: String,
    pub message: String,
    /// `<error>` text (no `param1`/`param2` are sent, so a `%s` stays literal).
    pub error: Option<String>,
    /// Written as `<opaque is-for="sg"><tunnel-group>`; copied back verbatim in
    /// each auth-reply.
    pub opaque_tunnel_group: Option<String>,
    /// Written as `<opaque is-for="sg"><aggauth-handle>`: binds the next
    /// auth-reply to server-side auth state across TLS connections.
    pub opaque_context: Option<String>,
    /// `<form action>`; openconnect defaults it to `/`.
    pub action: Option<String>,
    /// `(value, label)` options of `<select name="group_list" label="GROUP:">`.
    /// `--authgroup` matches labels by case-insensitive prefix, sends the value.
    pub group_list: Vec<(String, String)>,
    /// Value of the option marked `selected="true"`.
    pub selected: Option<String>,
    pub inputs: FormInputs,
}

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

impl AuthRequestForm {
    /// A username/password form with no group list and no opaque.
    pub fn password(title: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            message: message.into(),
            error: None,
            opaque_tunnel_group: None,
            opaque_context: None,
            action: None,
            group_list: Vec::new(),
            selected: None,
            inputs: FormInputs::Password,
        }
    }

    /// The XML body (the caller sends it with `Content-Type: text/xml`).
    pub fn render(&self) -> String {
        let mut x = String::with_capacity(1024);
        x.push_str(XML_DECL);
        x.push_str(
            "<config-auth client=\"vpn\" type=\"auth-request\" aggregate-auth-version=\"2\">\n",
        );
        if self.opaque_tunnel_group.is_some() || self.opaque_context.is_some() {
            x.push_str("<opaque is-for=\"sg\">\n");
            if let Some(tg) = &self.opaque_tunnel_group {
                let _ = writeln!(x, "<tunnel-group>{}</tunnel-group>", escape(tg));
            }
            if let Some(ctx) = &self.opaque_context {
                let _ = writeln!(x, "<aggauth-handle>{}</aggauth-handle>", escape(ctx));
            }
            x.push_str("</opaque>\n");
        }
        let auth_id = if matches!(self.inputs, FormInputs::Challenge) {
            "challenge"
        } else {
            "main"
        };
        let _ = writeln!(x, "<auth id=\"{auth_id}\">");
        let _ = writeln!(x, "<title>{}</title>", escape(&self.title));
        let _ = writeln!(x, "<message>{}</message>", escape(&self.message));
        if let Some(err) = &self.error {
            let _ = writeln!(x, "<error id=\"88\">{}</error>", escape(err));
        }
        if let FormInputs::Sso(sso) = &self.inputs {
            let _ = writeln!(x, "<sso-v2-login>{}</sso-v2-login>", escape(&sso.login_url));
            let _ = writeln!(
                x,
                "<sso-v2-login-final>{}</sso-v2-login-final>",
                escape(&sso.login_final_url)
            );
            let _ = writeln!(
                x,
                "<sso-v2-token-cookie-name>{}</sso-v2-token-cookie-name>",
                escape(&sso.token_cookie_name)
            );
            let _ = writeln!(
                x,
                "<sso-v2-error-cookie-name>{}</sso-v2-error-cookie-name>",
                escape(&sso.error_cookie_name)
            );
            if !sso.browser_mode.is_empty() {
                let _ = writeln!(
                    x,
                    "<sso-v2-browser-mode>{}</sso-v2-browser-mode>",
                    escape(&sso.browser_mode)
                );
            }
        }
        match &self.action {
            Some(a) => {
                let _ = writeln!(x, "<form method=\"post\" action=\"{}\">", escape(a));
            }
            None => x.push_str("<form>\n"),
        }
        match &self.inputs {
            FormInputs::Password => {
                x.push_str("<input type=\"text\" name=\"username\" label=\"Username:\"></input>\n");
                x.push_str(
                    "<input type=\"password\" name=\"password\" label=\"Password:\"></input>\n",
                );
            }
            FormInputs::Sso(_) => {
                x.push_str("<input type=\"sso\" name=\"sso-token\"></input>\n");
            }
            FormInputs::Challenge => {
                x.push_str(
                    "<input type=\"password\" name=\"password\" label=\"Response:\"></input>\n",
                );
            }
            FormInputs::None => {}
        }
        // openconnect ignores an empty <select>; never mix it with SSO.
        // The challenge continues a login already bound to its group.
        if !self.group_list.is_empty()
            && !matches!(self.inputs, FormInputs::Sso(_) | FormInputs::Challenge)
        {
            x.push_str("<select name=\"group_list\" label=\"GROUP:\">\n");
            for (value, label) in &self.group_list {
                let sel = if self.selected.as_deref() == Some(value.as_str()) {
                    " selected=\"true\""
                } else {
                    ""
                };
                let _ = writeln!(
                    x,
                    "<option value=\"{}\"{sel}>{}</option>",
                    escape(value),
                    escape(label)
                );
            }
            x.push_str("</select>\n");
        }
        x.push_str("</form>\n</auth>\n</config-auth>\n");
        x
    }
}

/// Whether `token` survives openconnect's cookie handling (split at `;` and
/// the first `=`, later sent as `Cookie: webvpn=TOKEN`).
pub fn is_valid_session_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 512
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'))
}

/// The success message: `<auth id="success">` is all openconnect checks, and
/// it takes the bearer cookie from `<session-token>` (send the same value if a
/// `Set-Cookie: webvpn=` goes out as well). `<config>` / `vpn-base-config` are
/// not needed by openconnect. The token is escaped, not validated: mint it so
/// that [`is_valid_session_token`] holds.
pub fn render_success(session_token: &str, server_cert_hash: &str) -> String {
    let mut x = String::with_capacity(512);
    x.push_str(XML_DECL);
    x.push_str("<config-auth client=\"vpn\" type=\"complete\" aggregate-auth-version=\"2\">\n");
    let _ = writeln!(
        x,
        "<session-token>{}</session-token>",
        escape(session_token)
    );
    // openconnect-sso reads auth/message and config/vpn-base-config/server-cert-hash
    // (it passes the hash to openconnect as --servercert); AnyConnect gets them from ASA.
    x.push_str(
        "<auth id=\"success\">\n<message id=\"0\" param1=\"\" param2=\"\"></message>\n</auth>\n",
    );
    let _ = writeln!(
        x,
        "<config client=\"vpn\" type=\"private\">\n<vpn-base-config>\n\
         <server-cert-hash>{}</server-cert-hash>\n</vpn-base-config>\n\
         <opaque is-for=\"vpn-client\"></opaque>\n</config>",
        escape(server_cert_hash)
    );
    x.push_str("</config-auth>\n");
    x
}

/// Username/password form for `tunnel_group` (carried in `<opaque>`), with the
/// optional group chooser (`(value, label)` pairs, `selected` value) and error.
pub fn render_password_form(
    tunnel_group: &str,
    group_list: &[(String, String)],
    selected: Option<&str>,
    error: Option<&str>,
) -> String {
    AuthRequestForm {
        error: error.map(str::to_owned),
        opaque_tunnel_group: Some(tunnel_group.to_owned()),
        group_list: group_list.to_vec(),
        selected: selected.map(str::to_owned),
        ..AuthRequestForm::password("Login", "Please enter your username and password.")
    }
    .render()
}

/// A final answer without inputs: openconnect prints `message` as an error
/// and stops (handle_auth_form returns -EPERM for a form without options).
pub fn render_refusal(tunnel_group: Option<&str>, message: &str) -> String {
    AuthRequestForm {
        error: Some(message.to_owned()),
        opaque_tunnel_group: tunnel_group.map(str::to_owned),
        inputs: FormInputs::None,
        ..AuthRequestForm::password("Login", "")
    }
    .render()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte-exact init body of openconnect 9.01 (libxml2 `xmlDocDumpMemoryEnc`,
    /// no indentation; auth.c `xmlpost_initial_req`).
    const INIT: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<config-auth client=\"vpn\" type=\"init\" aggregate-auth-version=\"2\">\
<version who=\"vpn\">v9.01-3</version><device-id>linux-64</device-id>\
<capabilities><auth-method>single-sign-on-v2</auth-method>\
<auth-method>single-sign-on-external-browser</auth-method></capabilities>\
<group-access>https://vpn.example.com</group-access></config-auth>\n";

    /// Re-init after the client saw `group_list` (`--authgroup` or default).
    const REINIT: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<config-auth client=\"vpn\" type=\"init\" aggregate-auth-version=\"2\">\
<version who=\"vpn\">v9.01-3</version><device-id>linux-64</device-id>\
<capabilities><auth-method>single-sign-on-v2</auth-method>\
<auth-method>single-sign-on-external-browser</auth-method></capabilities>\
<group-access>https://vpn.example.com:8443/corp</group-access>\
<group-select>SAML-TG</group-select></config-auth>\n";

    /// Auth-reply (auth.c `xmlpost_append_form_opts`): opaque copied verbatim,
    /// then `<auth>`, then `<group-select>` under the root; libxml2 escapes
    /// `&`, `<`, `>` and CR in text.
    const AUTH_REPLY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<config-auth client=\"vpn\" type=\"auth-reply\" aggregate-auth-version=\"2\">\
<version who=\"vpn\">v9.01-3</version><device-id>linux-64</device-id>\
<capabilities><auth-method>single-sign-on-v2</auth-method>\
<auth-method>single-sign-on-external-browser</auth-method></capabilities>\
<opaque is-for=\"sg\">\n<tunnel-group>CORP</tunnel-group>\n\
<aggauth-handle>ctx-42</aggauth-handle>\n</opaque>\
<auth><username>alice</username><password> p&amp;ss&lt;w&gt;rd\"&#13; </password></auth>\
<group-select>CORP</group-select></config-auth>\n";

    const SSO_REPLY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<config-auth client=\"vpn\" type=\"auth-reply\" aggregate-auth-version=\"2\">\
<version who=\"vpn\">v9.01-3</version><device-id>linux-64</device-id>\
<capabilities><auth-method>single-sign-on-v2</auth-method>\
<auth-method>single-sign-on-external-browser</auth-method></capabilities>\
<opaque is-for=\"sg\">\n<tunnel-group>SAML-TG</tunnel-group>\n</opaque>\
<auth><sso-token>A1B2C3D4E5F6</sso-token></auth></config-auth>\n";

    #[test]
    fn parses_init() {
        let m = parse_client(INIT.as_bytes()).unwrap();
        assert_eq!(m.kind, MessageKind::Init);
        assert_eq!(m.version.as_deref(), Some("v9.01-3"));
        assert_eq!(m.device_id.as_deref(), Some("linux-64"));
        assert_eq!(m.group_access.as_deref(), Some("https://vpn.example.com"));
        assert_eq!(m.group_select, None);
        assert_eq!(m.opaque, None);
        assert_eq!(
            m.capabilities,
            ["single-sign-on-v2", "single-sign-on-external-browser"]
        );
        assert!(m.has_capability("single-sign-on-v2"));
        assert_eq!(m.username, None);
    }

    #[test]
    fn parses_group_select_reinit() {
        let m = parse_client(REINIT.as_bytes()).unwrap();
        assert_eq!(m.kind, MessageKind::Init);
        assert_eq!(m.group_select.as_deref(), Some("SAML-TG"));
        assert_eq!(
            m.group_access.as_deref(),
            Some("https://vpn.example.com:8443/corp")
        );
    }

    #[test]
    fn parses_auth_reply() {
        let m = parse_client(AUTH_REPLY.as_bytes()).unwrap();
        assert_eq!(m.kind, MessageKind::AuthReply);
        assert_eq!(m.username.as_deref(), Some("alice"));
        assert_eq!(m.password.as_deref(), Some(" p&ss<w>rd\"\r "));
        assert_eq!(m.group_select.as_deref(), Some("CORP"));
        assert_eq!(m.opaque_tunnel_group.as_deref(), Some("CORP"));
        assert_eq!(m.opaque_context.as_deref(), Some("ctx-42"));
        assert_eq!(
            m.opaque.as_deref(),
            Some("\n<tunnel-group>CORP</tunnel-group>\n<aggauth-handle>ctx-42</aggauth-handle>\n")
        );
        assert_eq!(m.sso_token, None);
    }

    #[test]
    fn parses_sso_token_reply() {
        let m = parse_client(SSO_REPLY.as_bytes()).unwrap();
        assert_eq!(m.kind, MessageKind::AuthReply);
        assert_eq!(m.sso_token.as_deref(), Some("A1B2C3D4E5F6"));
        assert_eq!(m.opaque_tunnel_group.as_deref(), Some("SAML-TG"));
        assert_eq!(m.username, None);
        assert_eq!(m.password, None);
    }

    #[test]
    fn other_kinds_fields_and_empty_elements() {
        let m = parse_client(
            b"<config-auth type=\"logout\"><auth><secondary_password>123</secondary_password>\
<username/></auth><opaque/><group-select></group-select></config-auth>",
        )
        .unwrap();
        assert_eq!(m.kind, MessageKind::Logout);
        assert_eq!(m.username.as_deref(), Some(""));
        assert_eq!(m.opaque.as_deref(), Some(""));
        assert_eq!(m.group_select.as_deref(), Some(""));
        assert_eq!(
            m.other_auth_fields,
            [("secondary_password".to_owned(), "123".to_owned())]
        );
        let m = parse_client(b"<config-auth type=\"x&amp;y\"/>").unwrap();
        assert_eq!(m.kind, MessageKind::Other("x&y".into()));
        let m = parse_client(b"<config-auth/>").unwrap();
        assert_eq!(m.kind, MessageKind::Other(String::new()));
    }

    #[test]
    fn nested_fields_only_at_their_path() {
        // <username> outside <auth> and <group-select> inside <auth> are ignored.
        let m = parse_client(
            b"<config-auth type=\"auth-reply\"><username>x</username>\
<auth><group-select>G</group-select><password>p<!-- c -->w<![CDATA[<d>]]></password></auth></config-auth>",
        )
        .unwrap();
        assert_eq!(m.username, None);
        assert_eq!(m.group_select, None);
        assert_eq!(m.password.as_deref(), Some("pw<d>"));
    }

    #[test]
    fn rejects_doctype_and_entities_without_expanding() {
        let xxe = b"<?xml version=\"1.0\"?>\n<!DOCTYPE config-auth [\n\
<!ENTITY xxe SYSTEM \"file:///etc/passwd\">\n<!ENTITY lol \"lollollol\">]>\n\
<config-auth type=\"init\"><group-access>&xxe;&lol;</group-access></config-auth>";
        assert_eq!(parse_client(xxe), Err(XmlAuthError::Doctype));
        // Without the DTD an undeclared entity is still refused, not dropped.
        assert_eq!(
            parse_client(b"<config-auth><version>&lol;</version></config-auth>"),
            Err(XmlAuthError::UnknownEntity("lol".into()))
        );
        assert!(parse_client(b"<config-auth type=\"&lol;\"/>").is_err());
    }

    #[test]
    fn rejects_malformed() {
        let cases: &[&[u8]] = &[
            b"",
            b"   ",
            b"<config-auth>",
            b"<config-auth><auth></config-auth>",
            b"<config-auth></auth>",
            b"<foo/>",
            b"<config-auth/><config-auth/>",
            b"<config-auth/>trailing",
            b"junk<config-auth/>",
            b"<config-auth a=\"1\" a=\"2\"/>",
            b"<config-auth><version>a</version><version>b</version></config-auth>",
            b"<config-auth>&#0;</config-auth>",
            b"<config-auth>& </config-auth>",
            b"\xff\xfe<config-auth/>",
            b"<config-auth><a><b><c><d><e><f><g><h><i><j><k><l><m><n><o><p><q></q></p></o></n></m></l></k></j></i></h></g></f></e></d></c></b></a></config-auth>",
        ];
        for c in cases {
            assert!(
                parse_client(c).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(c)
            );
        }
        assert_eq!(parse_client(b""), Err(XmlAuthError::NoRoot));
        assert_eq!(
            parse_client(b"<foo/>"),
            Err(XmlAuthError::NotConfigAuth("foo".into()))
        );
    }

    #[test]
    fn rejects_oversize() {
        let mut big = b"<config-auth><version>".to_vec();
        big.resize(MAX_XML_LEN + 1, b'a');
        assert_eq!(
            parse_client(&big),
            Err(XmlAuthError::TooLarge {
                len: MAX_XML_LEN + 1,
                limit: MAX_XML_LEN
            })
        );
    }

    #[test]
    fn renders_password_form_with_groups() {
        let form = AuthRequestForm {
            error: Some("Login failed <again> & %s".into()),
            opaque_tunnel_group: Some("CORP".into()),
            group_list: vec![
                ("CORP".into(), "Corporate".into()),
                ("SAML-TG".into(), "Single \"Sign\" On".into()),
            ],
            selected: Some("CORP".into()),
            ..AuthRequestForm::password("Login", "Please enter your username and password.")
        };
        let expected = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<config-auth client=\"vpn\" type=\"auth-request\" aggregate-auth-version=\"2\">\n\
<opaque is-for=\"sg\">\n\
<tunnel-group>CORP</tunnel-group>\n\
</opaque>\n\
<auth id=\"main\">\n\
<title>Login</title>\n\
<message>Please enter your username and password.</message>\n\
<error id=\"88\">Login failed &lt;again&gt; &amp; %s</error>\n\
<form>\n\
<input type=\"text\" name=\"username\" label=\"Username:\"></input>\n\
<input type=\"password\" name=\"password\" label=\"Password:\"></input>\n\
<select name=\"group_list\" label=\"GROUP:\">\n\
<option value=\"CORP\" selected=\"true\">Corporate</option>\n\
<option value=\"SAML-TG\">Single &quot;Sign&quot; On</option>\n\
</select>\n\
</form>\n\
</auth>\n\
</config-auth>\n";
        assert_eq!(form.render(), expected);
    }

    #[test]
    fn renders_sso_form_without_group_list() {
        let form = AuthRequestForm {
            opaque_tunnel_group: Some("SAML-TG".into()),
            opaque_context: Some("c&1".into()),
            action: Some("/auth?tg=1&x=2".into()),
            group_list: vec![("A".into(), "A".into())],
            inputs: FormInputs::Sso(SsoLogin::external(
                "https://vpn.example.com/+CSCOE+/saml/sp/login?ctx=abc&tgname=SAML-TG",
                "https://vpn.example.com/+CSCOE+/saml_ac_login.html",
            )),
            ..AuthRequestForm::password("", "")
        };
        let x = form.render();
        assert!(x.contains(
            "<sso-v2-login>https://vpn.example.com/+CSCOE+/saml/sp/login?ctx=abc&amp;tgname=SAML-TG</sso-v2-login>\n"
        ));
        assert!(x.contains(
            "<sso-v2-login-final>https://vpn.example.com/+CSCOE+/saml_ac_login.html</sso-v2-login-final>\n"
        ));
        assert!(x.contains("<sso-v2-token-cookie-name>acSamlv2Token</sso-v2-token-cookie-name>\n"));
        assert!(x.contains("<sso-v2-error-cookie-name>acSamlv2Error</sso-v2-error-cookie-name>\n"));
        assert!(x.contains("<sso-v2-browser-mode>external</sso-v2-browser-mode>\n"));
        // The embedded browser (ASA's default) has no browser-mode element.
        let embedded = AuthRequestForm {
            inputs: FormInputs::Sso(SsoLogin::embedded("https://a/l", "https://a/f")),
            ..form.clone()
        }
        .render();
        assert!(embedded.contains("<sso-v2-login>https://a/l</sso-v2-login>\n"));
        assert!(!embedded.contains("sso-v2-browser-mode"), "{embedded}");
        assert!(x.contains(
            "<form method=\"post\" action=\"/auth?tg=1&amp;x=2\">\n<input type=\"sso\" name=\"sso-token\"></input>\n</form>\n"
        ));
        assert!(x.contains("<aggauth-handle>c&amp;1</aggauth-handle>"));
        assert!(!x.contains("group_list"));
        // sso-v2-* must be children of <auth>, before the form.
        let auth = x.find("<auth id=\"main\">").unwrap();
        assert!(x.find("<sso-v2-login>").unwrap() > auth);
    }

    /// What openconnect sends back after our form: the opaque element verbatim.
    #[test]
    fn opaque_round_trip() {
        let form = AuthRequestForm {
            opaque_tunnel_group: Some("T<&>G".into()),
            opaque_context: Some("h1".into()),
            ..AuthRequestForm::password("t", "m")
        };
        let x = form.render();
        let start = x.find("<opaque").unwrap();
        let end = x.find("</opaque>").unwrap() + "</opaque>".len();
        let opaque_elem = &x[start..end];
        let reply = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config-auth client=\"vpn\" \
type=\"auth-reply\" aggregate-auth-version=\"2\">{opaque_elem}<auth><username>u</username>\
<password>p</password></auth></config-auth>\n"
        );
        let m = parse_client(reply.as_bytes()).unwrap();
        assert_eq!(m.opaque_tunnel_group.as_deref(), Some("T<&>G"));
        assert_eq!(m.opaque_context.as_deref(), Some("h1"));
        assert_eq!(
            m.opaque.as_deref(),
            Some(
                "\n<tunnel-group>T&lt;&amp;&gt;G</tunnel-group>\n<aggauth-handle>h1</aggauth-handle>\n"
            )
        );
    }

    #[test]
    fn rendered_forms_are_well_formed() {
        // Our own output must parse under the same strict rules (root renamed).
        for form in [
            AuthRequestForm::password("a\u{1}b", "x\ny"),
            AuthRequestForm {
                inputs: FormInputs::None,
                error: Some("Account locked".into()),
                ..AuthRequestForm::password("t", "m")
            },
        ] {
            let x = form.render();
            assert!(!x.contains('\u{1}'));
            let mut r = Reader::from_str(&x);
            loop {
                match r.read_event() {
                    Ok(Event::Eof) => break,
                    Ok(_) => {}
                    Err(e) => panic!("{e}: {x}"),
                }
            }
        }
    }

    #[test]
    fn renders_success() {
        let x = render_success("3A7F00C0FFEE@1234@ABCD", "0123ABCD");
        assert_eq!(
            x,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<config-auth client=\"vpn\" type=\"complete\" aggregate-auth-version=\"2\">\n\
<session-token>3A7F00C0FFEE@1234@ABCD</session-token>\n\
<auth id=\"success\">\n\
<message id=\"0\" param1=\"\" param2=\"\"></message>\n\
</auth>\n\
<config client=\"vpn\" type=\"private\">\n<vpn-base-config>\n\
<server-cert-hash>0123ABCD</server-cert-hash>\n</vpn-base-config>\n\
<opaque is-for=\"vpn-client\"></opaque>\n</config>\n\
</config-auth>\n"
        );
        assert!(is_valid_session_token("3A7F00C0FFEE@1234@ABCD"));
        for bad in ["", "a;b", "a b", "a,b", "a\"b", "é"] {
            assert!(!is_valid_session_token(bad), "{bad}");
        }
        assert!(render_success("<&>", "").contains("<session-token>&lt;&amp;&gt;</session-token>"));
    }

    #[test]
    fn convenience_renderers() {
        let groups = vec![("corp".to_owned(), "Corp".to_owned())];
        let x = render_password_form("CORP-TG", &groups, Some("corp"), Some("Login failed."));
        assert_eq!(
            x,
            AuthRequestForm {
                error: Some("Login failed.".into()),
                opaque_tunnel_group: Some("CORP-TG".into()),
                group_list: groups.clone(),
                selected: Some("corp".into()),
                ..AuthRequestForm::password("Login", "Please enter your username and password.")
            }
            .render()
        );
        let x = render_refusal(Some("TG"), "Login denied: no address.");
        assert!(
            x.contains("<error id=\"88\">Login denied: no address.</error>\n<form>\n</form>\n")
        );
        assert!(x.contains("<tunnel-group>TG</tunnel-group>"));
        assert!(!x.contains("<input"));
    }

    #[test]
    fn challenge_form_has_its_own_auth_id_one_password_and_the_handle() {
        let x = AuthRequestForm {
            opaque_tunnel_group: Some("MFA".into()),
            opaque_context: Some("abc123".into()),
            group_list: vec![("MFA".into(), "MFA".into())],
            inputs: FormInputs::Challenge,
            ..AuthRequestForm::password("Login", "Enter the code <now>")
        }
        .render();
        assert!(x.contains("<auth id=\"challenge\">"), "{x}");
        assert!(
            x.contains("<message>Enter the code &lt;now&gt;</message>"),
            "{x}"
        );
        assert!(x.contains("<aggauth-handle>abc123</aggauth-handle>"), "{x}");
        assert!(
            x.contains("<input type=\"password\" name=\"password\" label=\"Response:\">"),
            "{x}"
        );
        assert!(!x.contains("name=\"username\""), "{x}");
        assert!(
            !x.contains("group_list"),
            "no group list on a challenge: {x}"
        );
    }
}
