//! The aggregate-auth (XML login) side of an AnyConnect-style client, played with
//! curl in a lab client namespace request by request, for tests that must see each
//! answer of the headend itself (protocol.md section 1): the SAML embedded-browser
//! flow of Cisco AnyConnect's built-in browser and of openconnect-sso, and the same
//! client with Chromium as its browser. Stock openconnect drives the other tests.
//!
//! Requests are as openconnect-sso 0.8 (`openconnect_sso/authenticator.py`) sends
//! them: `X-Transcend-Version: 1`, `X-Aggregate-Auth: 1`, an `<?xml ...?>`
//! declaration, `<group-select>` before `<group-access>`, and an auth-reply with
//! empty `<session-token/>` and `<session-id/>` and the server's `<opaque>` copied
//! back; a client with STRAP keys (AnyConnect 4.10, openconnect) adds its
//! `X-AnyConnect-STRAP-*` headers.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use crate::cmd;
use crate::lab::{Lab, OUTSIDE_IP};

/// openconnect-sso's version string and User-Agent.
pub const AC_VERSION: &str = "4.7.00136";
pub const AC_USER_AGENT: &str = "AnyConnect Linux_64 4.7.00136";

/// One HTTP answer as curl saw it.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    /// Header lines of the (only) response, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// Every value of header `name` (case-insensitive).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).last().copied()
    }

    /// The value of the cookie `name` set by this answer, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.all("Set-Cookie").iter().find_map(|c| {
            let first = c.split(';').next()?.trim();
            let (k, v) = first.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }

    /// The text of the first `<tag>...</tag>` of the body, entities of URLs undone.
    pub fn element(&self, tag: &str) -> Option<String> {
        element(&self.body, tag).map(|v| v.replace("&amp;", "&"))
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "HTTP {}", self.code)?;
        for (k, v) in &self.headers {
            writeln!(f, "{k}: {v}")?;
        }
        write!(f, "\n{}", self.body)
    }
}

/// The text between `<tag ...>` and `</tag>` (first occurrence).
pub fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = xml.find(&format!("<{tag}"))?;
    let rest = &xml[open..];
    let start = rest.find('>')? + 1;
    let end = rest.find(&format!("</{tag}>"))?;
    rest.get(start..end)
}

/// The whole `<opaque ...>...</opaque>` element, as the client copies it back.
pub fn opaque_element(xml: &str) -> Option<&str> {
    let open = xml.find("<opaque")?;
    let close = xml[open..].find("</opaque>")? + open + "</opaque>".len();
    Some(&xml[open..close])
}

/// curl in the first client namespace, one request at a time, with files in `dir`.
pub struct Curl<'a> {
    lab: &'a Lab,
    dir: PathBuf,
    n: Cell<usize>,
}

impl<'a> Curl<'a> {
    pub fn new(lab: &'a Lab, name: &str) -> Curl<'a> {
        let dir = lab.dir().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir curl dir");
        Curl {
            lab,
            dir,
            n: Cell::new(0),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// One request, no redirects followed; `args` go before the URL.
    pub fn request(&self, args: &[&str], url: &str) -> Reply {
        let n = self.n.get() + 1;
        self.n.set(n);
        let head = self.path(&format!("{n}.head"));
        let body = self.path(&format!("{n}.body"));
        let (head_s, body_s) = (
            head.to_string_lossy().into_owned(),
            body.to_string_lossy().into_owned(),
        );
        let mut argv = vec![
            "curl",
            "-sS",
            "-k",
            "--noproxy",
            "*",
            "--globoff",
            "--path-as-is",
            "--max-time",
            "20",
            "-D",
            &head_s,
            "-o",
            &body_s,
            "-w",
            "%{http_code}",
        ];
        argv.extend_from_slice(args);
        argv.push(url);
        let out = self.lab.exec_client(&argv);
        assert!(
            out.status.success(),
            "curl {url} failed: {}",
            cmd::combined(&out)
        );
        let code = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("curl printed no status: {}", cmd::combined(&out)));
        let headers = std::fs::read_to_string(&head)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_owned(), v.trim().to_owned()))
            })
            .collect();
        Reply {
            code,
            headers,
            body: std::fs::read_to_string(&body).unwrap_or_default(),
        }
    }
}

/// The value of cookie `name` in curl cookie jar `jar` (Netscape format).
pub fn jar_cookie(jar: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(jar)
        .ok()?
        .lines()
        .map(|l| l.strip_prefix("#HttpOnly_").unwrap_or(l))
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 7 && f[5] == name).then(|| f[6].to_owned())
        })
}

/// How the client announces itself on the XML login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// openconnect-sso: no STRAP keys, capability `single-sign-on-v2` only.
    OpenconnectSso,
    /// A client with STRAP keys (as AnyConnect 4.10 and openconnect send them) that
    /// does not list `single-sign-on-external-browser`: still the cookie flow.
    StrapEmbedded,
    /// The same client listing `single-sign-on-external-browser` too: the sealed token
    /// goes to `http://localhost:29786/api/sso/...`.
    StrapExternal,
}

/// A base64 P-256 SubjectPublicKeyInfo, as in the `X-AnyConnect-STRAP-*` headers.
fn p256_spki_b64() -> String {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("PKey");
    openssl::base64::encode_block(&key.public_key_to_der().expect("SPKI DER"))
}

/// The aggregate-auth side of an embedded-browser client logging in to one tunnel
/// group of the headend at `https://198.18.0.1/`.
pub struct XmlClient<'a> {
    pub curl: Curl<'a>,
    flavour: Flavour,
    tunnel_group: String,
    /// (`X-AnyConnect-STRAP-Pubkey`, `X-AnyConnect-STRAP-DH-Pubkey`), generated once per
    /// client like openconnect's (sent on every auth request).
    strap: Option<(String, String)>,
}

impl<'a> XmlClient<'a> {
    /// `name`: the directory of its request and answer files under the lab's.
    pub fn new(lab: &'a Lab, name: &str, flavour: Flavour, tunnel_group: &str) -> XmlClient<'a> {
        XmlClient {
            curl: Curl::new(lab, name),
            flavour,
            tunnel_group: tunnel_group.to_owned(),
            strap: (flavour != Flavour::OpenconnectSso).then(|| (p256_spki_b64(), p256_spki_b64())),
        }
    }

    fn capabilities(&self) -> String {
        let mut caps = String::from("    <auth-method>single-sign-on-v2</auth-method>\n");
        if self.flavour == Flavour::StrapExternal {
            caps.push_str("    <auth-method>single-sign-on-external-browser</auth-method>\n");
        }
        caps
    }

    /// POSTs `xml` (kept as `NAME.xml`) to the headend with this client's headers.
    pub fn post(&self, name: &str, xml: &str) -> Reply {
        let file = self.curl.path(&format!("{name}.xml"));
        std::fs::write(&file, xml).expect("write request");
        let data = format!("@{}", file.display());
        let mut headers = vec![
            format!("User-Agent: {AC_USER_AGENT}"),
            "Accept: */*".to_owned(),
            "Accept-Encoding: identity".to_owned(),
            "X-Transcend-Version: 1".to_owned(),
            "X-Aggregate-Auth: 1".to_owned(),
        ];
        match &self.strap {
            None => {
                // openconnect-sso's: "I know, it is invalid but that's what Anyconnect sends".
                headers.push("X-Support-HTTP-Auth: true".to_owned());
                headers.push("Content-Type: application/x-www-form-urlencoded".to_owned());
            }
            Some((key, dh)) => {
                headers.push("Content-Type: application/xml; charset=utf-8".to_owned());
                headers.push(format!("X-AnyConnect-STRAP-Pubkey: {key}"));
                headers.push(format!("X-AnyConnect-STRAP-DH-Pubkey: {dh}"));
            }
        }
        let mut args: Vec<&str> = Vec::new();
        for h in &headers {
            args.extend_from_slice(&["-H", h]);
        }
        args.extend_from_slice(&["--data-binary", &data]);
        self.curl.request(&args, &format!("https://{OUTSIDE_IP}/"))
    }

    /// The init with `<group-select>` of this client's tunnel group.
    pub fn init(&self) -> Reply {
        let xml = format!(
            "<?xml version='1.0' encoding='UTF-8'?>\n\
             <config-auth client=\"vpn\" type=\"init\" aggregate-auth-version=\"2\">\n  \
             <version who=\"vpn\">{AC_VERSION}</version>\n  <device-id>linux-64</device-id>\n  \
             <group-select>{tg}</group-select>\n  <group-access>https://{OUTSIDE_IP}/</group-access>\n  \
             <capabilities>\n{caps}  </capabilities>\n</config-auth>\n",
            tg = self.tunnel_group,
            caps = self.capabilities()
        );
        self.post("init", &xml)
    }

    /// The auth-reply carrying `token`, with the server's `opaque` element copied back.
    pub fn reply(&self, name: &str, opaque: &str, token: &str) -> Reply {
        let xml = format!(
            "<?xml version='1.0' encoding='UTF-8'?>\n\
             <config-auth client=\"vpn\" type=\"auth-reply\" aggregate-auth-version=\"2\">\n  \
             <version who=\"vpn\">{AC_VERSION}</version>\n  <device-id>linux-64</device-id>\n  \
             <session-token/>\n  <session-id/>\n  {opaque}\n  <auth>\n    \
             <sso-token>{token}</sso-token>\n  </auth>\n</config-auth>\n"
        );
        self.post(name, &xml)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_and_cookies_of_an_answer() {
        let r = Reply {
            code: 200,
            headers: vec![
                ("Set-Cookie".into(), "webvpncontext=abc; Secure".into()),
                ("set-cookie".into(), "acSamlv2Token=T0K; path=/".into()),
            ],
            body: "<auth><sso-v2-login>https://i/x?a=1&amp;b=2</sso-v2-login>\
                   <opaque is-for=\"sg\"><tunnel-group>t</tunnel-group></opaque></auth>"
                .into(),
        };
        assert_eq!(r.set_cookie("acSamlv2Token").as_deref(), Some("T0K"));
        assert_eq!(r.set_cookie("nope"), None);
        assert_eq!(
            r.element("sso-v2-login").as_deref(),
            Some("https://i/x?a=1&b=2")
        );
        assert_eq!(
            opaque_element(&r.body),
            Some("<opaque is-for=\"sg\"><tunnel-group>t</tunnel-group></opaque>")
        );
    }
}
