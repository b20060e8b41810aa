//! The TLS identity of the control channel: `--tls-cert/--tls-key` PEM files, or
//! the PKCS#12 of the `ssl trust-point` named in the config.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject};

use crate::config::Config;

pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self> {
        let chain = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("reading certificate {}", cert.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing certificate {}", cert.display()))?;
        if chain.is_empty() {
            bail!("{}: no certificate found", cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("reading private key {}", key.display()))?;
        Ok(Self { chain, key })
    }

    /// The identity of `ssl trust-point NAME [outside]` (its `crypto ca import ... pkcs12`).
    pub fn from_config(cfg: &Config) -> Result<Self> {
        let tp_ref = cfg
            .ssl_trust_points
            .first()
            .ok_or_else(|| anyhow!("no TLS identity: give --tls-cert/--tls-key or configure `ssl trust-point NAME outside` with `crypto ca import NAME pkcs12`"))?;
        let tp = cfg.trustpoints.get(&tp_ref.trustpoint).ok_or_else(|| {
            anyhow!(
                "{}:{}: trustpoint {} is not defined",
                cfg.source,
                tp_ref.line,
                tp_ref.trustpoint
            )
        })?;
        let p12 = tp.pkcs12.as_ref().ok_or_else(|| {
            anyhow!(
                "{}:{}: trustpoint {} has no `crypto ca import {} pkcs12` identity",
                cfg.source,
                tp_ref.line,
                tp.name,
                tp.name
            )
        })?;
        let parsed = openssl::pkcs12::Pkcs12::from_der(&p12.der)
            .and_then(|p| p.parse2(&p12.password))
            .map_err(|e| anyhow!("trustpoint {}: PKCS#12: {e}", tp.name))?;
        let cert = parsed
            .cert
            .ok_or_else(|| anyhow!("trustpoint {}: PKCS#12 has no certificate", tp.name))?;
        let pkey = parsed
            .pkey
            .ok_or_else(|| anyhow!("trustpoint {}: PKCS#12 has no private key", tp.name))?;
        let mut chain = vec![CertificateDer::from(cert.to_der()?)];
        if let Some(ca) = parsed.ca {
            for c in ca {
                chain.push(CertificateDer::from(c.to_der()?));
            }
        }
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkey.private_key_to_pkcs8()?));
        Ok(Self { chain, key })
    }

    pub fn server_config(self) -> Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(self.chain, self.key)
            .context("TLS certificate and key do not match or are unsupported")?;
        Ok(Arc::new(cfg))
    }
}
