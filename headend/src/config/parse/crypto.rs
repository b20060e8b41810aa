//! Certificates (`asa-syntax.md` section 1): `crypto ca trustpoint` and its
//! sub-mode, `crypto ca authenticate` (PEM + `quit`), `crypto ca import ... pkcs12`
//! (base64 + `quit`) and `crypto ca certificate chain` (hex + `quit`), the form a
//! saved ASA running-config carries certificates in. `ssl trust-point` is read by
//! the top-level dispatch; its tests are here.

use super::*;

impl<'a> Parser<'a> {
    pub(super) fn ensure_trustpoint(&mut self, name: &str, line: usize) {
        self.cfg
            .trustpoints
            .entry(name.to_string())
            .or_insert_with(|| Trustpoint {
                name: name.to_string(),
                line,
                ..Trustpoint::default()
            });
    }

    // ------------------------------------------------------------ certificates

    /// The next non-blank line of a `crypto ca authenticate|import` data block
    /// (trimmed, with its number), checked for placeholders; `None` at its
    /// `quit`. A file that ends first is an error at the command's `line`.
    fn block_line(
        &mut self,
        line: usize,
        unended: impl Fn() -> String,
    ) -> PResult<Option<(usize, &'a str)>> {
        loop {
            let Some((l, raw)) = self.next_line() else {
                return Err(Fail::At(line, unended()));
            };
            let t = raw.trim();
            if t.is_empty() {
                continue;
            }
            self.check_placeholder(l, t)
                .map_err(|e| Fail::At(e.line, e.message))?;
            return Ok((t != "quit").then_some((l, t)));
        }
    }

    /// `crypto ca authenticate NAME` + PEM certificate(s) + `quit`.
    pub(super) fn ca_authenticate(&mut self, name: &str, line: usize) -> PResult<()> {
        self.ensure_trustpoint(name, line);
        let mut certs = Vec::new();
        let unended = || {
            format!(
                "`crypto ca authenticate {name}` has no `quit` line ending its certificate block"
            )
        };
        while let Some((l, t)) = self.block_line(line, unended)? {
            if t != "-----BEGIN CERTIFICATE-----" {
                return Err(Fail::At(
                    l,
                    format!(
                        "expected -----BEGIN CERTIFICATE----- or `quit` in the certificate block of `crypto ca authenticate {name}` (line {line})"
                    ),
                ));
            }
            let begin = l;
            let mut body = String::new();
            loop {
                let Some((l2, raw2)) = self.next_line() else {
                    return Err(Fail::At(
                        begin,
                        "certificate has no -----END CERTIFICATE----- line".into(),
                    ));
                };
                let t2 = raw2.trim();
                self.check_placeholder(l2, t2)
                    .map_err(|e| Fail::At(e.line, e.message))?;
                if t2 == "-----END CERTIFICATE-----" {
                    break;
                }
                if t2 == "quit" || t2.starts_with("-----") {
                    return Err(Fail::At(
                        begin,
                        "certificate has no -----END CERTIFICATE----- line".into(),
                    ));
                }
                body.extend(t2.chars().filter(|ch| !ch.is_whitespace()));
            }
            let der = base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .map_err(|e| Fail::At(begin, format!("bad certificate: bad base64: {e}")))?;
            X509::from_der(&der)
                .map_err(|e| Fail::At(begin, format!("bad certificate: {}", ssl_msg(&e))))?;
            certs.push(der);
        }
        if certs.is_empty() {
            return Err(Fail::At(
                line,
                format!("`crypto ca authenticate {name}` has no certificate before `quit`"),
            ));
        }
        if let Some(tp) = self.cfg.trustpoints.get_mut(name) {
            tp.ca_certs_der = certs;
        }
        Ok(())
    }

    /// `crypto ca import NAME pkcs12 PASS` + base64 lines + `quit`.
    pub(super) fn ca_import(&mut self, name: &str, pass: &str, line: usize) -> PResult<()> {
        if is_masked(pass) {
            return fail("the PKCS#12 password is masked (`*****`); give the real password");
        }
        self.ensure_trustpoint(name, line);
        // (offset in `body`, line) of each data line, to point base64 errors at a line.
        let mut starts: Vec<(usize, usize)> = Vec::new();
        let mut body = String::new();
        let unended = || {
            format!("`crypto ca import {name} pkcs12` has no `quit` line ending its base64 block")
        };
        while let Some((l, t)) = self.block_line(line, unended)? {
            // ASA exports wrap the data in -----BEGIN/END PKCS12----- lines.
            if t.starts_with("-----BEGIN") || t.starts_with("-----END") {
                continue;
            }
            if !t
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '+' | '/' | '='))
            {
                return Err(Fail::At(
                    l,
                    format!(
                        "expected base64 PKCS#12 data or `quit` after `crypto ca import {name} pkcs12` (line {line})"
                    ),
                ));
            }
            starts.push((body.len(), l));
            body.push_str(t);
        }
        let first_data = starts.first().map_or(line, |s| s.1);
        if body.is_empty() {
            return Err(Fail::At(
                line,
                format!("`crypto ca import {name} pkcs12` has no data before `quit`"),
            ));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| {
                let off = match e {
                    base64::DecodeError::InvalidByte(o, _)
                    | base64::DecodeError::InvalidLastSymbol(o, _) => Some(o),
                    _ => None,
                };
                let l = off
                    .and_then(|o| starts.iter().rev().find(|s| s.0 <= o).map(|s| s.1))
                    .unwrap_or(first_data);
                Fail::At(l, format!("bad base64 in PKCS#12 data: {e}"))
            })?;
        let p12 = Pkcs12::from_der(&der)
            .map_err(|e| Fail::At(first_data, format!("not a PKCS#12 file: {}", ssl_msg(&e))))?;
        let parsed = p12.parse2(pass).map_err(|e| {
            Fail::At(
                line,
                format!(
                    "cannot open the PKCS#12 of trustpoint {name} (wrong password?): {}",
                    ssl_msg(&e)
                ),
            )
        })?;
        if parsed.pkey.is_none() || parsed.cert.is_none() {
            return Err(Fail::At(
                line,
                format!(
                    "the PKCS#12 of trustpoint {name} must hold a private key and its certificate"
                ),
            ));
        }
        if let Some(tp) = self.cfg.trustpoints.get_mut(name) {
            tp.pkcs12 = Some(Pkcs12Blob {
                der,
                password: pass.to_string(),
            });
        }
        Ok(())
    }

    /// `certificate [ca] SERIAL` inside `crypto ca certificate chain`: hex DER lines
    /// ending with `quit`, the form a saved ASA running-config carries certificates in.
    pub(super) fn cert_chain_entry(&mut self, tp: &str, ca: bool, line: usize) -> PResult<()> {
        let mut hex = String::new();
        loop {
            let Some((l, raw)) = self.next_line() else {
                return Err(Fail::At(
                    line,
                    "certificate has no `quit` line ending its hex block".into(),
                ));
            };
            let t = raw.trim();
            self.check_placeholder(l, t)
                .map_err(|e| Fail::At(e.line, e.message))?;
            if t == "quit" {
                break;
            }
            hex.extend(t.chars().filter(|ch| !ch.is_whitespace()));
        }
        if !ca {
            self.warn(
                line,
                format!("identity certificate in `crypto ca certificate chain {tp}` ignored: its key is not in the config (use `crypto ca import {tp} pkcs12`)"),
            );
            return Ok(());
        }
        let der = decode_hex(&hex).map_err(|m| Fail::At(line, format!("bad certificate: {m}")))?;
        X509::from_der(&der)
            .map_err(|e| Fail::At(line, format!("bad certificate: {}", ssl_msg(&e))))?;
        if let Some(t) = self.cfg.trustpoints.get_mut(tp)
            && !t.ca_certs_der.contains(&der)
        {
            t.ca_certs_der.push(der);
        }
        Ok(())
    }

    pub(super) fn sub_trustpoint(&mut self, name: &str, mode: &Mode, c: &Cmd) -> Step {
        let Some(tp) = self.cfg.trustpoints.get_mut(name) else {
            return Ok(None);
        };
        match c.toks.as_slice() {
            ["enrollment", "terminal"] => tp.enrollment_terminal = true,
            ["revocation-check", "none"] => tp.revocation_check_none = true,
            ["revocation-check", ..] => {
                tp.revocation_check_none = false;
                self.warn(
                    c.line,
                    format!("revocation checking is not implemented: certificates of trustpoint {name} are not checked for revocation"),
                );
            }
            ["no", "ca-check"] => tp.no_ca_check = true,
            ["ca-check"] => tp.no_ca_check = false,
            ["no", "id-usage"] => tp.no_id_usage = true,
            ["id-usage", ..] => tp.no_id_usage = false,
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::test_util::*;

    // ------------------------------------------------------------- certificates

    #[test]
    fn config_trustpoints_and_certs() {
        let (text, n) = with_tps(&["ssl trust-point ID outside"]);
        let text = text.replace(
            " enrollment terminal",
            " revocation-check none\n no ca-check\n no id-usage\n enrollment terminal",
        );
        let c = ok(&text);
        let idp = &c.trustpoints["IDP"];
        assert!(
            idp.enrollment_terminal
                && idp.revocation_check_none
                && idp.no_ca_check
                && idp.no_id_usage
        );
        assert_eq!(idp.ca_certs_der, vec![creds().cert_der.clone()]);
        assert!(idp.pkcs12.is_none());
        let id = &c.trustpoints["ID"];
        let blob = id.pkcs12.as_ref().unwrap();
        assert_eq!(blob.password, P12_PASS);
        assert!(
            Pkcs12::from_der(&blob.der)
                .unwrap()
                .parse2(P12_PASS)
                .is_ok()
        );
        assert_eq!(
            c.ssl_trust_points,
            vec![SslTrustPoint {
                trustpoint: "ID".into(),
                interface: Some("outside".into()),
                line: n + 3 + 1
            }]
        );
    }

    #[test]
    fn config_two_certs_in_one_authenticate() {
        let c = creds();
        let text = cfg(&[
            "crypto ca trustpoint T",
            "crypto ca authenticate T",
            "-----BEGIN CERTIFICATE-----",
            &c.cert_b64,
            "-----END CERTIFICATE-----",
            "-----BEGIN CERTIFICATE-----",
            &c.cert_b64,
            "-----END CERTIFICATE-----",
            "quit",
            "hostname h",
        ]);
        let cfg = ok(&text);
        assert_eq!(cfg.trustpoints["T"].ca_certs_der.len(), 2);
        assert_eq!(cfg.hostname.as_deref(), Some("h"));
    }

    #[test]
    fn config_authenticate_errors() {
        let c = creds();
        // missing quit: points at the authenticate line
        bad(
            &cfg(&[
                "crypto ca trustpoint T",
                "crypto ca authenticate T",
                "-----BEGIN CERTIFICATE-----",
                &c.cert_b64,
                "-----END CERTIFICATE-----",
            ]),
            2,
            "no `quit`",
        );
        // a command where quit should be
        bad(
            &cfg(&[
                "crypto ca authenticate T",
                "-----BEGIN CERTIFICATE-----",
                &c.cert_b64,
                "-----END CERTIFICATE-----",
                "hostname x",
            ]),
            5,
            "expected -----BEGIN CERTIFICATE----- or `quit`",
        );
        // valid base64 that is not a certificate: at the BEGIN line
        bad(
            &cfg(&[
                "!",
                "crypto ca authenticate T",
                "-----BEGIN CERTIFICATE-----",
                "aGVsbG8gd29ybGQ=",
                "-----END CERTIFICATE-----",
                "quit",
            ]),
            3,
            "bad certificate",
        );
        // not base64
        bad(
            &cfg(&[
                "crypto ca authenticate T",
                "-----BEGIN CERTIFICATE-----",
                "MII%%%",
                "-----END CERTIFICATE-----",
                "quit",
            ]),
            2,
            "bad base64",
        );
        // missing END
        bad(
            &cfg(&[
                "crypto ca authenticate T",
                "-----BEGIN CERTIFICATE-----",
                &c.cert_b64,
                "quit",
            ]),
            2,
            "no -----END CERTIFICATE-----",
        );
        // a private key is not a certificate
        bad(
            &cfg(&[
                "crypto ca authenticate T",
                "-----BEGIN PRIVATE KEY-----",
                "AAAA",
                "-----END PRIVATE KEY-----",
                "quit",
            ]),
            2,
            "expected -----BEGIN CERTIFICATE-----",
        );
        bad(
            &cfg(&["crypto ca authenticate T", "quit"]),
            1,
            "no certificate",
        );
    }

    #[test]
    fn config_pkcs12_errors() {
        let c = creds();
        let p12 = wrap64(&c.p12_b64);
        let mut wrong = vec![
            "crypto ca trustpoint ID".to_string(),
            "crypto ca import ID pkcs12 wrong-pass".into(),
        ];
        wrong.extend(p12.iter().cloned());
        wrong.push("quit".into());
        bad(&wrong.join("\n"), 2, "wrong password");

        bad(
            &cfg(&["crypto ca import ID pkcs12 x", "aGVsbG8gd29ybGQ=", "quit"]),
            2,
            "not a PKCS#12",
        );
        bad(
            &cfg(&["crypto ca import ID pkcs12 x", "AAAA", "AA*A", "quit"]),
            3,
            "expected base64",
        );
        bad(
            &cfg(&["crypto ca import ID pkcs12 x", "AAAA", "A=AA", "quit"]),
            3,
            "bad base64",
        );
        bad(
            &cfg(&["crypto ca import ID pkcs12 x", "AAAA"]),
            1,
            "no `quit`",
        );
        bad(
            &cfg(&["crypto ca import ID pkcs12 x", "quit"]),
            1,
            "no data",
        );
        bad(
            "crypto ca import ID pkcs12",
            1,
            "needs the PKCS#12 password",
        );
        bad(
            "crypto ca import ID certificate",
            1,
            "only `crypto ca import NAME pkcs12",
        );

        // ASA export framing is accepted
        let mut framed = vec![
            "crypto ca import ID pkcs12 p12-secret".to_string(),
            "-----BEGIN PKCS12-----".into(),
        ];
        framed.extend(p12);
        framed.push("-----END PKCS12-----".into());
        framed.push("quit".into());
        assert!(ok(&framed.join("\n")).trustpoints["ID"].pkcs12.is_some());
    }

    #[test]
    fn config_certificate_chain_hex() {
        let c = creds();
        let hex: String = c.cert_der.iter().map(|b| format!("{b:02x}")).collect();
        let text = cfg(&[
            "crypto ca certificate chain T",
            " certificate ca 07",
            &format!("    {}", hex.get(..40).unwrap()),
            &format!("    {}", hex.get(40..).unwrap()),
            "  quit",
            " certificate 1234",
            "    3082",
            "  quit",
            "hostname h",
        ]);
        let cfg = ok(&text);
        assert_eq!(cfg.trustpoints["T"].ca_certs_der, vec![c.cert_der.clone()]);
        assert_eq!(cfg.warnings.len(), 1);
        assert_eq!(cfg.warnings[0].line, 6);
        bad(&cfg_lines_hex_bad(), 2, "bad certificate");
    }

    fn cfg_lines_hex_bad() -> String {
        cfg(&[
            "crypto ca certificate chain T",
            " certificate ca 01",
            "   30zz",
            "  quit",
        ])
    }

    #[test]
    fn config_ssl_trust_point_needs_identity() {
        let (t, n) = with_tps(&["ssl trust-point IDP outside"]);
        bad(&t, n + 1, "has no identity certificate and key");
        bad(
            "ssl trust-point NOPE",
            1,
            "trustpoint `NOPE` is not defined",
        );
        bad("ssl trust-point", 1, "expected `ssl trust-point NAME");
    }
}
