//! The browser side of SAML login (asa-aaa.md section 2, protocol.md "SAML"):
//! SP metadata, the AuthnRequest redirect, the ACS that validates the IdP's
//! Response and hands the one-time token back to openconnect — sealed for its
//! STRAP key and sent to `http://localhost:29786/api/sso/...` (external
//! browser), and as the `acSamlv2Token` cookie (embedded browsers).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow};
use auth::saml::{SamlLogin, SamlSp, SpConfig, SpCredentials, SsoTokenStore};

use crate::config::{Config, TunnelAuthentication};
use crate::proto::http::{Request, Response};

/// What the login URL's one-time `ctx` stands for: the tunnel group and the
/// STRAP key of the auth request that produced it.
#[derive(Debug, Clone)]
pub struct SsoContext {
    pub tunnel_group: String,
    /// The client's STRAP DH key, when it asked for the external-browser flow
    /// (capability `single-sign-on-external-browser`); embedded browsers
    /// (AnyConnect, openconnect-sso) read the token cookie instead.
    pub strap_dh: Option<String>,
}

/// A validated SAML login waiting for openconnect's `<sso-token>`.
#[derive(Debug, Clone)]
pub struct SsoGrant {
    pub tunnel_group: String,
    pub login: SamlLogin,
}

pub struct SamlState {
    /// One SP per tunnel group with `authentication saml` and a known base URL.
    pub sps: BTreeMap<String, Arc<SamlSp>>,
    /// Tunnel groups whose base URL is the request's Host (no `base-url`, no
    /// `hostname` + `domain-name`): their SP settings and one SP per Host seen.
    host_sps: BTreeMap<String, HostSps>,
    /// Shared with the state a reload replaces this one with, so logins in
    /// progress at the IdP finish across a reload.
    pub contexts: Arc<SsoTokenStore<SsoContext>>,
    pub tokens: Arc<SsoTokenStore<SsoGrant>>,
}

/// Login contexts live as long as a user may take at the IdP (MFA included).
pub const CONTEXT_TTL: Duration = Duration::from_secs(600);
/// The token travels from the browser back to openconnect at once.
const TOKEN_TTL: Duration = Duration::from_secs(120);

impl SamlState {
    /// The service providers of a re-read config, keeping `old`'s login
    /// contexts and tokens (a user half-way through the IdP still gets in).
    pub fn reloaded(cfg: &Config, old: &SamlState) -> Result<Self> {
        let mut s = Self::from_config(cfg)?;
        s.contexts = old.contexts.clone();
        s.tokens = old.tokens.clone();
        Ok(s)
    }

    pub fn from_config(cfg: &Config) -> Result<Self> {
        let mut sps = BTreeMap::new();
        let mut host_sps = BTreeMap::new();
        for tg in cfg
            .tunnel_groups
            .values()
            .filter(|t| t.authentication == TunnelAuthentication::Saml)
        {
            let idp_id = tg.saml_identity_provider.as_deref().ok_or_else(|| {
                anyhow!(
                    "{}:{}: tunnel-group {} has authentication saml but no saml identity-provider",
                    cfg.source,
                    tg.line,
                    tg.name
                )
            })?;
            let idp = cfg.webvpn.saml_idps.get(idp_id).ok_or_else(|| {
                anyhow!(
                    "{}:{}: saml idp {idp_id} is not configured",
                    cfg.source,
                    tg.line
                )
            })?;
            let certs = idp
                .trustpoint_idp
                .as_ref()
                .and_then(|t| cfg.trustpoints.get(t))
                .map(|t| t.ca_certs_der.clone())
                .unwrap_or_default();
            let (base, from) = saml_base_url(cfg, idp)
                .unwrap_or_else(|| (HOST_PLACEHOLDER.to_string(), "the request's Host"));
            let host_derived = base == HOST_PLACEHOLDER;
            if host_derived {
                tracing::info!(
                    "SAML tunnel-group {}: no base-url and no hostname + domain-name: the base URL is https://<the request's Host>",
                    tg.name
                );
            } else {
                tracing::info!("SAML tunnel-group {}: base URL {base} ({from})", tg.name);
            }
            let sign_in = idp.sign_in_url.clone().ok_or_else(|| {
                anyhow!(
                    "{}:{}: saml idp {idp_id} has no url sign-in",
                    cfg.source,
                    idp.line
                )
            })?;
            let mut sp = SpConfig::new(&tg.name, base, &idp.entity_id, sign_in, certs);
            sp.force_reauthentication = idp.force_reauthentication;
            sp.timeout_assertion = idp
                .timeout_assertion_secs
                .map(|s| Duration::from_secs(u64::from(s)));
            if let Some(alg) = &idp.signature {
                sp.request_signature = auth::saml::RequestSignature::from_asa(alg);
                if alg.contains("sha1") {
                    // `signature rsa-sha1` means the IdP may sign with SHA-1 too.
                    sp.allowed_signature_algorithms
                        .push(auth::saml::XmlSignatureAlgorithm::RsaSha1);
                }
                sp.sp_credentials = idp
                    .trustpoint_sp
                    .as_ref()
                    .and_then(|t| cfg.trustpoints.get(t))
                    .and_then(|t| t.pkcs12.as_ref())
                    .map(sp_credentials)
                    .transpose()?;
            }
            let built = SamlSp::new(sp.clone()).map_err(|e| {
                anyhow!(
                    "{}:{}: SAML for tunnel-group {}: {e}",
                    cfg.source,
                    tg.line,
                    tg.name
                )
            })?;
            if host_derived {
                host_sps.insert(
                    tg.name.clone(),
                    HostSps {
                        config: sp,
                        by_host: Mutex::new(BTreeMap::new()),
                    },
                );
            } else {
                sps.insert(tg.name.clone(), Arc::new(built));
            }
        }
        Ok(Self {
            sps,
            host_sps,
            contexts: Arc::new(SsoTokenStore::new(CONTEXT_TTL, 100_000)),
            tokens: Arc::new(SsoTokenStore::new(TOKEN_TTL, 100_000)),
        })
    }
}

/// Stands for the request's Host while checking a host-derived SP's settings.
const HOST_PLACEHOLDER: &str = "https://headend.invalid";
/// Hosts one host-derived tunnel group keeps an SP for (a bound against Host
/// headers made up by clients).
const MAX_HOSTS: usize = 16;

struct HostSps {
    config: SpConfig,
    by_host: Mutex<BTreeMap<String, Arc<SamlSp>>>,
}

impl SamlState {
    /// Whether `tg` has SAML configured at all.
    pub fn has(&self, tg: &str) -> bool {
        self.sps.contains_key(tg) || self.host_sps.contains_key(tg)
    }

    /// The SP of tunnel group `tg`; for one whose base URL is the request's
    /// Host, the SP for `host` (made on first use; a malformed Host or one past
    /// [`MAX_HOSTS`] gets none).
    pub fn sp(&self, tg: &str, host: Option<&str>) -> Option<Arc<SamlSp>> {
        if let Some(sp) = self.sps.get(tg) {
            return Some(sp.clone());
        }
        let h = self.host_sps.get(tg)?;
        let host = host.filter(|h| plausible_host(h))?.to_ascii_lowercase();
        let mut by_host = h.by_host.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sp) = by_host.get(&host) {
            return Some(sp.clone());
        }
        if by_host.len() >= MAX_HOSTS {
            tracing::warn!(tunnel_group = %tg, %host, "SAML: too many Host names for a host-derived base URL; set base-url");
            return None;
        }
        let mut config = h.config.clone();
        config.base_url = format!("https://{host}");
        let sp = Arc::new(SamlSp::new(config).ok()?);
        tracing::info!(tunnel_group = %tg, "SAML: base URL https://{host} (from the request's Host)");
        by_host.insert(host, sp.clone());
        Some(sp)
    }
}

/// A Host header value usable in a URL: a DNS name or address, optional port.
fn plausible_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 260
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// The URL the SP's entity ID and ACS hang off, and where it came from: the
/// IdP's `base-url`, else `https://HOSTNAME.DOMAIN-NAME` as ASA derives it.
pub fn saml_base_url(cfg: &Config, idp: &crate::config::SamlIdp) -> Option<(String, &'static str)> {
    if let Some(b) = &idp.base_url {
        return Some((b.clone(), "base-url"));
    }
    match (&cfg.hostname, &cfg.domain_name) {
        (Some(h), Some(d)) => Some((format!("https://{h}.{d}"), "hostname and domain-name")),
        _ => None,
    }
}

fn sp_credentials(p12: &crate::config::Pkcs12Blob) -> Result<SpCredentials> {
    let parsed = openssl::pkcs12::Pkcs12::from_der(&p12.der)
        .and_then(|p| p.parse2(&p12.password))
        .context("trustpoint sp PKCS#12")?;
    let (Some(key), Some(cert)) = (parsed.pkey, parsed.cert) else {
        return Err(anyhow!("trustpoint sp PKCS#12 lacks a key or certificate"));
    };
    Ok(SpCredentials {
        key,
        cert_der: cert.to_der()?,
    })
}

fn query(path: &str) -> BTreeMap<String, String> {
    path.split_once('?')
        .map(|(_, q)| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn page(status: u16, reason: &str, title: &str, body_html: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1>{body_html}</body></html>\n",
        t = auth::saml::html_escape(title)
    );
    Response::new(status, reason)
        .header("Content-Type", "text/html; charset=utf-8")
        .header("Cache-Control", "no-store")
        .header("Content-Security-Policy", "default-src 'none'")
        .body(body.into_bytes())
}

/// Routes the SAML URLs; `None` if the request is not one of them.
/// `cluster`: the SAML state shared with the other headends (cluster/saml.rs).
pub async fn route(
    req: &Request,
    saml: &SamlState,
    cluster: Option<&crate::cluster::Cluster>,
) -> Option<Response> {
    let path = req.path.split('?').next().unwrap_or_default();
    if req.method == "GET"
        && let Some(tg) = path.strip_prefix("/saml/sp/metadata/")
    {
        return Some(match saml.sp(tg, req.header("Host")) {
            Some(sp) => Response::new(200, "OK")
                .header("Content-Type", "application/samlmetadata+xml")
                .body(sp.metadata_xml().into_bytes()),
            None => page(404, "Not Found", "Unknown tunnel group", ""),
        });
    }
    match (req.method.as_str(), path) {
        ("GET", "/+CSCOE+/saml/sp/login") => Some(login_redirect(req, saml, cluster).await),
        ("POST", "/+CSCOE+/saml/sp/acs") => Some(acs(req, saml, cluster).await),
        ("GET", "/+CSCOE+/saml_ac_login.html") => Some(page(
            200,
            "OK",
            "Login complete",
            "<p>You may close this window and return to your VPN client.</p>",
        )),
        // Where the IdP sends the browser after its sign-out. SAML single
        // logout messages are not processed (see README).
        ("GET" | "POST", "/+CSCOE+/saml/sp/logout") => Some(page(
            200,
            "OK",
            "Logged out",
            "<p>You have been logged out of the identity provider.</p>",
        )),
        _ => None,
    }
}

/// The answer when the cluster's store cannot be reached during a SAML step.
fn store_unreachable(tg: &str, e: &redis::RedisError) -> Response {
    tracing::warn!(tunnel_group = %tg, "SAML login refused: the cluster's session store (Redis) is unreachable: {e}");
    page(
        503,
        "Service Unavailable",
        "Login unavailable",
        "<p>The cluster's session store is unreachable. Try again later.</p>",
    )
}

async fn login_redirect(
    req: &Request,
    saml: &SamlState,
    cluster: Option<&crate::cluster::Cluster>,
) -> Response {
    let q = query(&req.path);
    let (Some(tg), Some(ctx)) = (q.get("tgname"), q.get("ctx")) else {
        return page(
            400,
            "Bad Request",
            "Login link incomplete",
            "<p>Start the login from your VPN client.</p>",
        );
    };
    let Some(sp) = saml.sp(tg, req.header("Host")) else {
        return page(404, "Not Found", "Unknown tunnel group", "");
    };
    match sp.authn_request(SystemTime::now(), Some(ctx)) {
        Ok(r) => {
            // Any node's ACS may get the answer (DNS load balancing).
            if let Some(c) = cluster
                && let Err(e) = c
                    .saml_publish_request(&r.request_id, Some(ctx), r.expires)
                    .await
            {
                return store_unreachable(tg, &e);
            }
            tracing::info!(tunnel_group = %tg, request = %r.request_id, "SAML AuthnRequest sent to the IdP");
            Response::new(302, "Found")
                .header("Location", &r.url)
                .header("Cache-Control", "no-store")
                .body(Vec::new())
        }
        Err(e) => {
            tracing::warn!(tunnel_group = %tg, "SAML AuthnRequest failed: {e}");
            page(500, "Internal Server Error", "Login could not start", "")
        }
    }
}

async fn acs(
    req: &Request,
    saml: &SamlState,
    cluster: Option<&crate::cluster::Cluster>,
) -> Response {
    let q = query(&req.path);
    let Some(tg) = q.get("tgname").cloned() else {
        return page(
            400,
            "Bad Request",
            "SAML login refused",
            "<p>No tunnel group.</p>",
        );
    };
    let Some(sp) = saml.sp(&tg, req.header("Host")) else {
        return page(404, "Not Found", "Unknown tunnel group", "");
    };
    let form: BTreeMap<String, String> = form_urlencoded::parse(&req.body).into_owned().collect();
    let Some(response) = form.get("SAMLResponse").cloned() else {
        return page(
            400,
            "Bad Request",
            "SAML login refused",
            "<p>No SAMLResponse.</p>",
        );
    };
    let relay = form.get("RelayState").cloned();
    // In a cluster the request may have been sent by another node, and the
    // assertion may have been accepted by one: the shared store decides, before
    // the local checks (which then see the request as sent, or as answered).
    if let Some(c) = cluster
        && let Some((request_id, assertion_id)) = sp.response_ids(&response)
    {
        let now = SystemTime::now();
        match c
            .saml_claim_request(&request_id, assertion_id.as_deref())
            .await
        {
            Ok(crate::cluster::saml::RequestClaim::Sent { relay, expires }) => {
                sp.import_request(now, &request_id, relay, expires)
            }
            Ok(crate::cluster::saml::RequestClaim::Unknown) => sp.forget_request(now, &request_id),
            Ok(crate::cluster::saml::RequestClaim::Replayed) => {
                return refused(&tg, &auth::saml::SamlReject::Replayed);
            }
            Err(e) => return store_unreachable(&tg, &e),
        }
    }
    // Signature checks are blocking FFI (libxmlsec1).
    let relay2 = relay.clone();
    let verdict = crate::blocking::LOGIN
        .run(move || {
            sp.validate_response(SystemTime::now(), &response, relay2.as_deref())
                .map_err(|r| (r.to_string(), r.error_page()))
        })
        .await;
    let login = match verdict {
        Ok(Ok(l)) => l,
        Ok(Err((why, html))) => return refused_page(&tg, &why, html),
        Err(e) => {
            tracing::warn!(tunnel_group = %tg, "SAML validation task failed: {e}");
            return page(500, "Internal Server Error", "SAML login failed", "");
        }
    };
    if let Some(c) = cluster {
        match c
            .saml_accept_assertion(&login.assertion_id, login.replay_until)
            .await
        {
            Ok(true) => {}
            Ok(false) => return refused(&tg, &auth::saml::SamlReject::Replayed),
            Err(e) => return store_unreachable(&tg, &e),
        }
    }
    let now = Instant::now();
    let ctx = match relay.as_deref() {
        Some(r) => match saml.contexts.redeem(now, r) {
            Ok(ctx) => {
                if let Some(c) = cluster {
                    c.saml_drop_context(r).await;
                }
                Some(ctx)
            }
            // Minted by another node (the login started there).
            Err(_) => match cluster {
                Some(c) => c.saml_take_context(r).await.ok().flatten(),
                None => None,
            },
        },
        None => None,
    };
    let ctx = match ctx {
        Some(c) if c.tunnel_group == tg => c,
        _ => {
            tracing::warn!(tunnel_group = %tg, user = %login.name_id, "SAML login valid but its login context is unknown or expired");
            return page(
                400,
                "Bad Request",
                "Login expired",
                "<p>Start the login again from your VPN client.</p>",
            );
        }
    };
    tracing::info!(tunnel_group = %tg, user = %login.name_id, attributes = login.attributes.len(), "SAML assertion accepted");
    let grant = SsoGrant {
        tunnel_group: tg.clone(),
        login,
    };
    if let Some(c) = cluster {
        // The `<sso-token>` may reach another node; locally it works anyway.
        let token = saml.tokens.mint(now, grant.clone());
        if let Err(e) = c.saml_publish_token(&token, &grant, TOKEN_TTL).await {
            tracing::warn!(tunnel_group = %tg, "cluster: SSO token not shared (only this node redeems it): {e}");
        }
        return token_answer(&tg, &ctx, &token);
    }
    let token = saml.tokens.mint(now, grant);
    token_answer(&tg, &ctx, &token)
}

/// The ACS's answer with the one-time token: to the client's SSO listener
/// (sealed for its STRAP key) or as a cookie for embedded browsers.
fn token_answer(tg: &str, ctx: &SsoContext, token: &str) -> Response {
    let cookie = format!("acSamlv2Token={token}; Secure; path=/");
    match ctx
        .strap_dh
        .as_deref()
        .map(|k| auth::saml::seal_token(k.as_bytes(), token))
    {
        Some(Ok(sealed)) => Response::new(302, "Found")
            .header("Location", &auth::saml::sso_listener_url(&sealed, None))
            .header("Set-Cookie", &cookie)
            .header("Cache-Control", "no-store")
            .body(Vec::new()),
        Some(Err(e)) => {
            tracing::warn!(tunnel_group = %tg, "cannot seal the SSO token for the client's STRAP key: {e}");
            page(
                400,
                "Bad Request",
                "SAML login failed",
                "<p>The VPN client's key is not usable.</p>",
            )
        }
        // Embedded browsers read the token from the cookie at the final URL.
        None => Response::new(302, "Found")
            .header("Location", "/+CSCOE+/saml_ac_login.html")
            .header("Set-Cookie", &cookie)
            .header("Cache-Control", "no-store")
            .body(Vec::new()),
    }
}

fn refused(tg: &str, why: &auth::saml::SamlReject) -> Response {
    refused_page(tg, &why.to_string(), why.error_page())
}

fn refused_page(tg: &str, why: &str, html: String) -> Response {
    tracing::warn!(tunnel_group = %tg, "SAML response refused: {why}");
    Response::new(403, "Forbidden")
        .header("Content-Type", "text/html; charset=utf-8")
        .header("Cache-Control", "no-store")
        .header("Content-Security-Policy", "default-src 'none'")
        .body(html.into_bytes())
}

/// Redeems a one-time SSO token: minted here, or by another node of the cluster
/// (single use either way).
pub async fn redeem_token(
    saml: &SamlState,
    cluster: Option<&crate::cluster::Cluster>,
    token: &str,
) -> Result<SsoGrant, String> {
    match saml.tokens.redeem(Instant::now(), token) {
        Ok(g) => {
            if let Some(c) = cluster {
                c.saml_drop_token(token).await;
            }
            Ok(g)
        }
        Err(e) => match cluster {
            Some(c) => match c.saml_take_token(token).await {
                Ok(Some(g)) => Ok(g),
                Ok(None) => Err(e.to_string()),
                Err(re) => Err(format!("{e}; the cluster's store is unreachable: {re}")),
            },
            None => Err(e.to_string()),
        },
    }
}

#[cfg(test)]
mod base_url_tests {
    use super::*;

    #[test]
    fn saml_base_url_from_base_url_else_hostname_and_domain() {
        let idp_cfg = |extra: &str| {
            crate::config::parse_str(
                &format!("{extra}webvpn\n saml idp https://idp.example/md\n"),
                "b.cfg",
            )
            .unwrap()
        };
        let c = idp_cfg("hostname vpn-edge\ndomain-name corp.example\n");
        let idp = &c.webvpn.saml_idps["https://idp.example/md"];
        assert_eq!(
            saml_base_url(&c, idp),
            Some((
                "https://vpn-edge.corp.example".to_string(),
                "hostname and domain-name"
            ))
        );
        let mut with_base = idp.clone();
        with_base.base_url = Some("https://vpn.example".into());
        assert_eq!(
            saml_base_url(&c, &with_base),
            Some(("https://vpn.example".to_string(), "base-url"))
        );
        let c = idp_cfg("hostname vpn-edge\n");
        let idp = &c.webvpn.saml_idps["https://idp.example/md"];
        assert_eq!(saml_base_url(&c, idp), None);
    }
}

#[cfg(test)]
mod host_base_tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509Builder, X509NameBuilder};

    fn idp_pem() -> String {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "idp.example").unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        String::from_utf8(b.build().to_pem().unwrap()).unwrap()
    }

    fn cfg(top: &str) -> Config {
        let text = format!(
            "{top}crypto ca trustpoint IDP\ncrypto ca authenticate IDP\n{}quit\nwebvpn\n saml idp https://idp.example/md\n  url sign-in https://idp.example/sso\n  trustpoint idp IDP\ntunnel-group TG type remote-access\ntunnel-group TG webvpn-attributes\n authentication saml\n saml identity-provider https://idp.example/md\n",
            idp_pem()
        );
        crate::config::parse_str(&text, "h.cfg").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn base_url_from_the_request_host_when_nothing_else_names_it() {
        let s = SamlState::from_config(&cfg("hostname gw\n")).unwrap();
        assert!(s.sps.is_empty() && s.has("TG"));
        let a = s.sp("TG", Some("VPN.Example.com")).expect("SP for a Host");
        assert_eq!(a.entity_id(), "https://vpn.example.com/saml/sp/metadata/TG");
        let again = s.sp("TG", Some("vpn.example.com")).unwrap();
        assert!(Arc::ptr_eq(&a, &again), "one SP per Host");
        assert!(s.sp("TG", None).is_none());
        assert!(s.sp("TG", Some("evil/path")).is_none());
        assert!(s.sp("OTHER", Some("vpn.example.com")).is_none());
        for i in 0..MAX_HOSTS {
            let _ = s.sp("TG", Some(&format!("h{i}.example")));
        }
        assert!(s.sp("TG", Some("one-too-many.example")).is_none());
        // hostname + domain-name: fixed, whatever the Host.
        let s = SamlState::from_config(&cfg("hostname gw\ndomain-name corp.example\n")).unwrap();
        let sp = s.sp("TG", Some("other.example")).unwrap();
        assert_eq!(
            sp.entity_id(),
            "https://gw.corp.example/saml/sp/metadata/TG"
        );
    }
}
