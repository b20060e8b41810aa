//! The lab seed config (`tests/data/seed-asa.cfg`, a verbatim copy of the shared
//! `examples/seed-asa.cfg`) must load once its placeholders are filled with real
//! certificates made here, and must mean what the integration guides say.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use base64::Engine as _;
use headend::config::*;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509Builder, X509NameBuilder};

const P12_PASS: &str = "lab-p12-pass";
const RADIUS_SECRET: &str = "lab-radius-secret";
const SXP_PASSWORD: &str = "lab-sxp-secret";
const LOCAL_PASSWORD: &str = "lab-alice-pass";
const IDP: &str = "https://idp.lab.example/saml2/idp/metadata.php";

fn seed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed-asa.cfg")
}

fn seed() -> String {
    std::fs::read_to_string(seed_path()).expect("seed config")
}

fn self_signed(cn: &str) -> (PKey<openssl::pkey::Private>, X509) {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(365).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (key, b.build())
}

struct Filled {
    text: String,
    idp_cert_der: Vec<u8>,
    p12_der: Vec<u8>,
}

/// Values for every placeholder; each goes on the placeholder's own line so the
/// filled file keeps the seed's line numbers.
fn values() -> (Vec<(&'static str, String)>, Vec<u8>, Vec<u8>) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let (_, idp_cert) = self_signed("idp.lab.example");
    let (key, sp_cert) = self_signed("vpn.lab.example");
    let idp_cert_der = idp_cert.to_der().unwrap();
    let p12_der = Pkcs12::builder()
        .name("my-public-cert")
        .pkey(&key)
        .cert(&sp_cert)
        .build2(P12_PASS)
        .unwrap()
        .to_der()
        .unwrap();
    let v = vec![
        ("@IDP_SIGNING_CERT@", b64.encode(&idp_cert_der)),
        ("@P12_PASS@", P12_PASS.to_string()),
        ("@IDENTITY_P12_BASE64@", b64.encode(&p12_der)),
        ("@RADIUS_SECRET@", RADIUS_SECRET.to_string()),
        ("@SXP_PASSWORD@", SXP_PASSWORD.to_string()),
        ("@LOCAL_PASSWORD@", LOCAL_PASSWORD.to_string()),
    ];
    (v, idp_cert_der, p12_der)
}

fn filled() -> Filled {
    let (vals, idp_cert_der, p12_der) = values();
    let mut text = seed();
    for (k, v) in &vals {
        assert!(text.contains(k), "seed lacks {k}");
        text = text.replace(k, v);
    }
    Filled {
        text,
        idp_cert_der,
        p12_der,
    }
}

fn load() -> (Config, Filled) {
    let f = filled();
    let c = parse_str(&f.text, "seed-asa.cfg").unwrap_or_else(|e| panic!("{e}"));
    (c, f)
}

#[test]
fn config_seed_pools_trustpoints_aaa() {
    let (c, f) = load();
    assert_eq!(c.hostname.as_deref(), Some("vpn-gw"));
    assert_eq!(
        c.ip_local_pools["VPN-POOL"],
        Ipv4Pool {
            name: "VPN-POOL".into(),
            first: Ipv4Addr::new(198, 18, 100, 10),
            last: Ipv4Addr::new(198, 18, 100, 250),
            mask: Ipv4Addr::new(255, 255, 255, 0),
            line: 7,
        }
    );

    let idp_tp = &c.trustpoints["Azure-saml"];
    assert!(idp_tp.revocation_check_none && idp_tp.no_id_usage && idp_tp.no_ca_check);
    assert!(idp_tp.enrollment_terminal);
    assert_eq!(idp_tp.ca_certs_der, vec![f.idp_cert_der.clone()]);
    assert!(idp_tp.pkcs12.is_none());
    let sp_tp = &c.trustpoints["my-public-cert"];
    let blob = sp_tp.pkcs12.as_ref().expect("identity");
    assert_eq!(blob.der, f.p12_der);
    assert_eq!(blob.password, P12_PASS);
    assert_eq!(
        c.ssl_trust_points,
        vec![SslTrustPoint {
            trustpoint: "my-public-cert".into(),
            interface: Some("outside".into()),
            line: 25,
        }]
    );

    let g = &c.aaa_server_groups["ISE"];
    assert_eq!(g.protocol, AaaProtocol::Radius);
    assert!(g.authorize_only);
    assert_eq!(g.interim_accounting_update_hours, Some(1));
    assert_eq!(g.dynamic_authorization, Some(1700));
    assert_eq!((g.max_failed_attempts, g.deadtime_minutes), (3, 10));
    assert_eq!(g.hosts.len(), 1);
    let h = &g.hosts[0];
    assert_eq!(h.interface.as_deref(), Some("inside"));
    assert_eq!(h.address, "198.18.1.20".parse::<IpAddr>().unwrap());
    assert_eq!(h.key.as_deref(), Some(RADIUS_SECRET));
    assert_eq!((h.authentication_port, h.accounting_port), (1812, 1813));
    assert_eq!(
        (h.timeout_secs, h.retry_interval_secs, h.line),
        (10, 10, 31)
    );

    assert_eq!(c.usernames["alice"].password, LOCAL_PASSWORD);
    assert_eq!(c.usernames["alice"].password_form, PasswordForm::Plain);
}

#[test]
fn config_seed_webvpn_saml() {
    let (c, _) = load();
    let w = &c.webvpn;
    assert_eq!(w.enable_interfaces, vec!["outside".to_string()]);
    assert!(w.anyconnect_enable && w.tunnel_group_list_enable);
    assert_eq!(w.saml_idps.len(), 1);
    let idp = &w.saml_idps[IDP];
    assert_eq!(idp.entity_id, IDP);
    assert_eq!(
        idp.sign_in_url.as_deref(),
        Some("https://idp.lab.example/saml2/idp/SSOService.php")
    );
    assert_eq!(
        idp.sign_out_url.as_deref(),
        Some("https://idp.lab.example/saml2/idp/SingleLogoutService.php")
    );
    assert_eq!(idp.base_url.as_deref(), Some("https://vpn.lab.example"));
    assert_eq!(idp.trustpoint_idp.as_deref(), Some("Azure-saml"));
    assert_eq!(idp.trustpoint_sp.as_deref(), Some("my-public-cert"));
    assert_eq!(idp.signature, None);
    assert!(idp.force_reauthentication);
    assert_eq!(idp.timeout_assertion_secs, None);
    assert_eq!(idp.line, 41);

    // The only line the headend does not know is `error-recovery disable`.
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert_eq!(c.warnings[0].line, 40);
    assert!(c.warnings[0].message.contains("error-recovery"));
}

#[test]
fn config_seed_access_lists_and_cts() {
    let (c, _) = load();
    let split = &c.access_lists["SPLIT"];
    assert_eq!(split.entries.len(), 1);
    assert_eq!(split.entries[0].action, AclAction::Permit);
    assert_eq!(
        split.entries[0].kind,
        AclEntryKind::Standard {
            network: AddrMatch::Prefix("198.18.1.0".parse().unwrap(), 24)
        }
    );

    let f = &c.access_lists["VPN-FILTER"];
    assert_eq!(f.entries.len(), 3);
    let ace = |i: usize| match &f.entries[i].kind {
        AclEntryKind::Extended(a) => a.clone(),
        k => panic!("entry {i} is {k:?}"),
    };
    let tagged = |proto, dst_port| ExtendedAce {
        protocol: proto,
        src_sg: Some(SecurityGroupMatch::Tag(10)),
        src: AddrMatch::Any,
        src_port: None,
        dst_sg: Some(SecurityGroupMatch::Tag(20)),
        dst: AddrMatch::Any,
        dst_port,
        icmp_type: None,
        log: None,
        inactive: false,
    };
    assert_eq!(f.entries[0].action, AclAction::Permit);
    assert_eq!(ace(0), tagged(AclProtocol::Icmp, None));
    assert_eq!(f.entries[1].action, AclAction::Permit);
    assert_eq!(ace(1), tagged(AclProtocol::Tcp, Some(PortMatch::Eq(443))));
    assert_eq!(f.entries[2].action, AclAction::Deny);
    assert_eq!(
        ace(2),
        ExtendedAce {
            protocol: AclProtocol::Ip,
            src_sg: None,
            src: AddrMatch::Any,
            src_port: None,
            dst_sg: None,
            dst: AddrMatch::Any,
            dst_port: None,
            icmp_type: None,
            log: Some(AceLog::default()),
            inactive: false,
        }
    );
    assert_eq!(
        f.entries.iter().map(|e| e.line).collect::<Vec<_>>(),
        vec![51, 52, 53]
    );
    assert_eq!(
        f.entries[2].text,
        "access-list VPN-FILTER extended deny ip any any log"
    );

    assert_eq!(
        c.cts.sgt_map,
        vec![SgtMapEntry {
            address: "198.18.1.0".parse().unwrap(),
            prefix_len: 28,
            sgt: 20,
            line: 55,
        }]
    );
    assert!(c.cts.sxp_enable);
    assert_eq!(c.cts.sxp_default_password.as_deref(), Some(SXP_PASSWORD));
    assert_eq!(
        c.cts.sxp_connections,
        vec![SxpConnection {
            peer: "198.18.1.20".parse().unwrap(),
            source: None,
            password: SxpPassword::Default,
            mode: SxpMode::Listener,
            line: 58,
        }]
    );
}

#[test]
fn config_seed_group_policy_and_tunnel_groups() {
    let (c, _) = load();
    let gp = &c.group_policies["GP-EMPLOYEES"];
    assert_eq!(gp.line, 60);
    assert_eq!(
        gp.vpn_tunnel_protocols,
        Some(vec!["ssl-client".to_string()])
    );
    assert_eq!(
        gp.split_tunnel_policy,
        Some(SplitTunnelPolicy::TunnelSpecified)
    );
    assert_eq!(gp.split_tunnel_network_list.as_deref(), Some("SPLIT"));
    assert_eq!(
        gp.dns_servers,
        Some(vec!["198.18.1.53".parse::<IpAddr>().unwrap()])
    );
    assert_eq!(gp.default_domain.as_deref(), Some("corp.example"));
    assert_eq!(gp.vpn_filter.as_deref(), Some("VPN-FILTER"));
    assert_eq!(gp.vpn_idle_timeout_min, Some(30));
    assert_eq!(gp.address_pools, Some(vec!["VPN-POOL".to_string()]));
    assert_eq!(gp.vpn_session_timeout_min, None);

    let p = c.effective_policy("GP-EMPLOYEES");
    assert!(p.defined && p.allows_ssl_client());
    assert_eq!(p.split_tunnel_policy, SplitTunnelPolicy::TunnelSpecified);
    assert_eq!(p.split_tunnel_network_list.as_deref(), Some("SPLIT"));
    assert_eq!(
        p.dns_servers,
        vec!["198.18.1.53".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(p.default_domain.as_deref(), Some("corp.example"));
    assert_eq!(p.vpn_filter.as_deref(), Some("VPN-FILTER"));
    assert_eq!(p.vpn_idle_timeout_min, Some(30));
    assert_eq!(p.vpn_session_timeout_min, None);
    assert_eq!(p.vpn_simultaneous_logins, 3);
    assert_eq!(p.address_pools, vec!["VPN-POOL".to_string()]);
    assert_eq!(
        (
            p.anyconnect_dpd_client_secs,
            p.anyconnect_dpd_gateway_secs,
            p.anyconnect_keepalive_secs
        ),
        (Some(30), Some(30), Some(20))
    );
    assert_eq!((p.anyconnect_mtu, p.anyconnect_dtls), (1406, true));
    assert_eq!(p.banner, None);
    assert_eq!(
        c.split_include_routes(&p),
        vec![(
            Ipv4Addr::new(198, 18, 1, 0),
            Ipv4Addr::new(255, 255, 255, 0)
        )]
    );

    let tg = &c.tunnel_groups["company-vpn"];
    assert!(tg.remote_access);
    assert_eq!(tg.line, 71);
    assert_eq!(tg.address_pools, vec!["VPN-POOL".to_string()]);
    assert_eq!(tg.authentication_server_group, None);
    assert_eq!(tg.authorization_server_group.as_deref(), Some("ISE"));
    assert_eq!(tg.accounting_server_group.as_deref(), Some("ISE"));
    assert_eq!(tg.default_group_policy.as_deref(), Some("GP-EMPLOYEES"));
    assert_eq!(tg.authentication, TunnelAuthentication::Saml);
    assert_eq!(tg.group_aliases, vec![("company-vpn".to_string(), true)]);
    assert_eq!(tg.saml_identity_provider.as_deref(), Some(IDP));

    let pw = &c.tunnel_groups["LOCAL-PW"];
    assert_eq!(pw.authentication, TunnelAuthentication::Aaa);
    assert_eq!(pw.authentication_server_group, None);
    assert_eq!(pw.default_group_policy.as_deref(), Some("GP-EMPLOYEES"));
    assert_eq!(pw.saml_identity_provider, None);

    assert_eq!(
        c.group_list(),
        vec![
            ("company-vpn".to_string(), "company-vpn".to_string()),
            ("LOCAL-PW".to_string(), "LOCAL-PW".to_string()),
        ]
    );
    assert_eq!(
        c.tunnel_group_for_alias("LOCAL-PW")
            .map(|t| t.name.as_str()),
        Some("LOCAL-PW")
    );
}

#[test]
fn config_seed_summary_and_load_file() {
    let f = filled();
    let dir = std::env::temp_dir().join(format!("headend-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("seed-asa.cfg");
    std::fs::write(&path, &f.text).unwrap();
    let c = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let s = c.summary();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(s.contains("hostname: vpn-gw"), "{s}");
    assert!(s.contains("tunnel groups: 2"), "{s}");
    assert!(s.contains("VPN-POOL: 198.18.100.10-198.18.100.250 mask 255.255.255.0"));
    assert!(s.contains("VPN-FILTER: 3 entries"), "{s}");
    assert!(s.contains("sxp peers [198.18.1.20]"), "{s}");
    assert!(
        s.contains(&format!(
            "{}:40: warning: unknown command `error-recovery disable`",
            path.display()
        )),
        "{s}"
    );
    for secret in [RADIUS_SECRET, SXP_PASSWORD, LOCAL_PASSWORD, P12_PASS] {
        assert!(!s.contains(secret), "summary leaks a secret");
    }
}

#[test]
fn config_seed_unfilled_is_a_placeholder_error() {
    let e = parse_str(&seed(), "seed-asa.cfg").unwrap_err();
    assert_eq!(e.line, 16, "{e}");
    assert!(
        e.message
            .contains("unfilled placeholder @IDP_SIGNING_CERT@"),
        "{e}"
    );
    assert!(e.to_string().starts_with("seed-asa.cfg:16: "), "{e}");

    // Each placeholder alone left in place is reported at its own line.
    let (vals, _, _) = values();
    for (name, line) in [
        ("@P12_PASS@", 22),
        ("@IDENTITY_P12_BASE64@", 23),
        ("@RADIUS_SECRET@", 32),
        ("@SXP_PASSWORD@", 57),
        ("@LOCAL_PASSWORD@", 82),
    ] {
        let mut text = seed();
        for (k, v) in &vals {
            if *k != name {
                text = text.replace(k, v);
            }
        }
        let e = parse_str(&text, "seed-asa.cfg").unwrap_err();
        assert_eq!(e.line, line, "{e}");
        assert!(e.message.contains(name), "{e}");
    }
}
