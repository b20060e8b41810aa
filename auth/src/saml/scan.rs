//! Our own pass over the Response before (and after) samael sees it.
//!
//! samael verifies signatures and strips what they do not cover; this pass adds
//! the structural rules that make "the signature covers the very assertion we
//! use" checkable by a reader: no DTD, no comments, no PIs, exactly one Assertion,
//! unique IDs, signatures only enveloped in the Response or the Assertion with a
//! single Reference to their parent, only the allowed algorithms and transforms.
//! It also reads the fields samael does not check (Destination when only the
//! Assertion is signed, the top-level StatusCode) and the NameID / attribute
//! text as the concatenation of every text, CDATA and reference piece (a parser
//! that stops at the first piece is what the `<!---->` truncation attack needs).

use std::collections::BTreeMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;

use super::config::XmlSignatureAlgorithm;
use super::reject::SamlReject;

pub(crate) const NS_PROTOCOL: &[u8] = b"urn:oasis:names:tc:SAML:2.0:protocol";
pub(crate) const NS_ASSERTION: &[u8] = b"urn:oasis:names:tc:SAML:2.0:assertion";
pub(crate) const NS_DSIG: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";
const NS_XML: &[u8] = b"http://www.w3.org/XML/1998/namespace";

const MAX_DEPTH: usize = 64;
const MAX_ELEMENTS: usize = 20_000;

/// Transforms a SAML signature may use (enveloped + canonicalization). XPath,
/// XSLT, base64 and friends are refused: no IdP needs them and they widen what a
/// signature can be made to "cover".
const ALLOWED_TRANSFORMS: &[&str] = &[
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/2006/12/xml-c14n11",
];
const ALLOWED_C14N: &[&str] = &[
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/2006/12/xml-c14n11",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    Protocol,
    Assertion,
    Dsig,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signed {
    Response,
    Assertion,
}

#[derive(Debug, Default)]
struct SigBuilder {
    c14n: Vec<String>,
    method: Vec<String>,
    references: Vec<String>,
    digests: Vec<String>,
    transforms: Vec<String>,
    signed_info: usize,
}

#[derive(Debug)]
pub(crate) struct ScannedSignature {
    pub parent: Signed,
}

#[derive(Debug, Default)]
pub(crate) struct ScannedAssertion {
    pub id: String,
    pub issuer: Option<String>,
    pub name_id: Option<String>,
    pub name_id_format: Option<String>,
    pub attributes: BTreeMap<String, Vec<String>>,
    pub subject_confirmation_in_response_to: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Scanned {
    pub response_id: String,
    pub destination: Option<String>,
    pub in_response_to: Option<String>,
    pub issuer: Option<String>,
    pub status: Option<String>,
    pub assertion_count: usize,
    pub encrypted_assertion: bool,
    pub assertion: Option<ScannedAssertion>,
    pub signatures: Vec<ScannedSignature>,
}

impl Scanned {
    /// The request this Response answers: Response@InResponseTo, else the
    /// (single) SubjectConfirmationData@InResponseTo.
    pub fn request_id(&self) -> Result<&str, SamlReject> {
        let scd = self
            .assertion
            .as_ref()
            .map(|a| a.subject_confirmation_in_response_to.as_slice())
            .unwrap_or_default();
        if let Some(first) = scd.first()
            && scd.iter().any(|x| x != first)
        {
            return Err(SamlReject::InResponseToMismatch);
        }
        match (self.in_response_to.as_deref(), scd.first()) {
            (Some(r), Some(a)) if r != a => Err(SamlReject::InResponseToMismatch),
            (Some(r), _) => Ok(r),
            (None, Some(a)) => Ok(a),
            (None, None) => Err(SamlReject::Unsolicited),
        }
    }
}

/// What text is being collected, and where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    ResponseIssuer,
    AssertionIssuer,
    NameId,
    AttributeValue,
}

struct Frame {
    ns: Ns,
    local: String,
}

struct Scanner<'a> {
    allowed: &'a [XmlSignatureAlgorithm],
    stack: Vec<Frame>,
    out: Scanned,
    ids: std::collections::HashSet<String>,
    elements: usize,
    capture: Option<(Capture, usize)>,
    text: String,
    current_attribute: Option<String>,
    sig: Option<(usize, Signed, String, SigBuilder)>,
    root_closed: bool,
    status_seen: bool,
}

/// Refuses a DTD or entity declaration by looking at the bytes, before any
/// parser (ours or libxml2) gets the document.
pub(crate) fn reject_dtd(xml: &str) -> Result<(), SamlReject> {
    let lower = xml.as_bytes();
    let has = |needle: &[u8]| {
        lower
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    if has(b"<!DOCTYPE") || has(b"<!ENTITY") || has(b"<!ELEMENT") || has(b"<!ATTLIST") {
        return Err(SamlReject::Dtd);
    }
    Ok(())
}

pub(crate) fn scan(xml: &str, allowed: &[XmlSignatureAlgorithm]) -> Result<Scanned, SamlReject> {
    let mut reader = NsReader::from_str(xml);
    {
        let cfg = reader.config_mut();
        cfg.check_end_names = true;
        cfg.check_comments = true;
        cfg.expand_empty_elements = false;
        cfg.trim_text(false);
    }
    let mut s = Scanner {
        allowed,
        stack: Vec::new(),
        out: Scanned::default(),
        ids: Default::default(),
        elements: 0,
        capture: None,
        text: String::new(),
        current_attribute: None,
        sig: None,
        root_closed: false,
        status_seen: false,
    };
    let mut first_event = true;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| SamlReject::Malformed(e.to_string()))?;
        let ns = classify(&ns);
        match event {
            Event::Decl(decl) => {
                if !first_event {
                    return Err(SamlReject::Malformed("misplaced XML declaration".into()));
                }
                if let Some(enc) = decl.encoding() {
                    let enc = enc.map_err(|e| SamlReject::Malformed(e.to_string()))?;
                    let enc = enc.as_ref();
                    if !enc.eq_ignore_ascii_case(b"utf-8") && !enc.eq_ignore_ascii_case(b"utf8") {
                        // libxml2 would honour it and read other characters than we do.
                        return Err(SamlReject::Malformed("encoding is not UTF-8".into()));
                    }
                }
            }
            Event::DocType(_) => return Err(SamlReject::Dtd),
            Event::Comment(_) => return Err(SamlReject::XmlComment),
            Event::PI(_) => return Err(SamlReject::ProcessingInstruction),
            Event::Start(start) => {
                s.start(&reader, ns, &start)?;
            }
            Event::Empty(start) => {
                s.start(&reader, ns, &start)?;
                s.end()?;
            }
            Event::End(_) => s.end()?,
            Event::Text(t) => {
                let t = t
                    .xml10_content()
                    .map_err(|e| SamlReject::Malformed(e.to_string()))?;
                s.text_piece(&t)?;
            }
            Event::CData(c) => {
                let c = c
                    .xml10_content()
                    .map_err(|e| SamlReject::Malformed(e.to_string()))?;
                s.text_piece(&c)?;
            }
            Event::GeneralRef(r) => {
                let ch = match r
                    .resolve_char_ref()
                    .map_err(|e| SamlReject::Malformed(e.to_string()))?
                {
                    Some(ch) => ch,
                    None => match r.as_ref() {
                        b"amp" => '&',
                        b"lt" => '<',
                        b"gt" => '>',
                        b"quot" => '"',
                        b"apos" => '\'',
                        _ => return Err(SamlReject::Dtd),
                    },
                };
                let mut buf = [0u8; 4];
                s.text_piece(ch.encode_utf8(&mut buf))?;
            }
            Event::Eof => break,
        }
        first_event = false;
    }
    if !s.root_closed {
        return Err(SamlReject::Malformed(
            "document has no complete root".into(),
        ));
    }
    Ok(s.out)
}

fn classify(ns: &ResolveResult<'_>) -> Ns {
    match ns {
        ResolveResult::Bound(Namespace(n)) if *n == NS_PROTOCOL => Ns::Protocol,
        ResolveResult::Bound(Namespace(n)) if *n == NS_ASSERTION => Ns::Assertion,
        ResolveResult::Bound(Namespace(n)) if *n == NS_DSIG => Ns::Dsig,
        _ => Ns::Other,
    }
}

impl Scanner<'_> {
    fn at(&self, path: &[(Ns, &str)]) -> bool {
        self.stack.len() == path.len()
            && self
                .stack
                .iter()
                .zip(path)
                .all(|(f, (ns, local))| f.ns == *ns && f.local == *local)
    }

    fn start(
        &mut self,
        reader: &NsReader<&[u8]>,
        ns: Ns,
        start: &BytesStart<'_>,
    ) -> Result<(), SamlReject> {
        if self.root_closed {
            return Err(SamlReject::Malformed(
                "content after the root element".into(),
            ));
        }
        self.elements += 1;
        if self.elements > MAX_ELEMENTS || self.stack.len() >= MAX_DEPTH {
            return Err(SamlReject::Malformed(
                "document too deep or too large".into(),
            ));
        }
        if self
            .capture
            .is_some_and(|(c, _)| c != Capture::AttributeValue)
        {
            // NameID and Issuer are simple text; a child element is a trick.
            return Err(match self.capture {
                Some((Capture::NameId, _)) => SamlReject::BadNameId,
                _ => SamlReject::Malformed("element inside Issuer".into()),
            });
        }
        let local = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();

        // Attributes: unescaped, no control characters, ID bookkeeping.
        let mut attrs: Vec<(Option<Vec<u8>>, String, String)> = Vec::new();
        let mut id_like = 0usize;
        for attr in start.attributes() {
            let attr = attr.map_err(|e| SamlReject::Malformed(e.to_string()))?;
            let (ans, alocal) = reader.resolve_attribute(attr.key);
            let ans = match ans {
                ResolveResult::Bound(Namespace(n)) => Some(n.to_vec()),
                ResolveResult::Unbound => None,
                ResolveResult::Unknown(p) => {
                    return Err(SamlReject::Malformed(format!(
                        "unknown namespace prefix {}",
                        String::from_utf8_lossy(&p)
                    )));
                }
            };
            let alocal = String::from_utf8_lossy(alocal.as_ref()).into_owned();
            let value = attr
                .unescape_value()
                .map_err(|_| SamlReject::Malformed("bad attribute value".into()))?
                .into_owned();
            if value.chars().any(|c| c.is_control()) {
                return Err(SamlReject::Malformed(
                    "control character in an attribute".into(),
                ));
            }
            if ans.as_deref() == Some(NS_XML) && alocal == "id" {
                return Err(SamlReject::DuplicateId { id: value });
            }
            if alocal == "ID" {
                id_like += 1;
                if id_like > 1 || !self.ids.insert(value.clone()) {
                    return Err(SamlReject::DuplicateId { id: value });
                }
            }
            attrs.push((ans, alocal, value));
        }
        let get = |name: &str| {
            attrs
                .iter()
                .find(|(ans, l, _)| ans.is_none() && l == name)
                .map(|(_, _, v)| v.clone())
        };

        let depth = self.stack.len();
        if depth == 0 {
            if !(ns == Ns::Protocol && local == "Response") {
                return Err(SamlReject::NotAResponse);
            }
            self.out.response_id = get("ID").unwrap_or_default();
            self.out.destination = get("Destination");
            self.out.in_response_to = get("InResponseTo");
        }
        if local == "Assertion" {
            // Any second Assertion, wherever and in whatever namespace: signature
            // wrapping needs two (the signed one and the one meant to be read).
            self.out.assertion_count += 1;
            if self.out.assertion_count > 1 {
                return Err(SamlReject::AssertionCount {
                    found: self.out.assertion_count,
                });
            }
        }
        if local == "EncryptedAssertion" {
            self.out.encrypted_assertion = true;
        }
        self.stack.push(Frame {
            ns,
            local: local.clone(),
        });

        use Ns::*;
        const RESP: (Ns, &str) = (Protocol, "Response");
        const ASRT: (Ns, &str) = (Assertion, "Assertion");

        // Inside a Signature: collect SignedInfo, refuse Object / Manifest.
        if let Some((sig_depth, _, _, b)) = self.sig.as_mut() {
            let rel = self.stack.len() - 1 - *sig_depth;
            match (ns, local.as_str(), rel) {
                (Dsig, "SignedInfo", 1) => b.signed_info += 1,
                (Dsig, "CanonicalizationMethod", 2) => {
                    b.c14n.push(get("Algorithm").unwrap_or_default())
                }
                (Dsig, "SignatureMethod", 2) => b.method.push(get("Algorithm").unwrap_or_default()),
                (Dsig, "Reference", 2) => b.references.push(get("URI").unwrap_or_default()),
                (Dsig, "DigestMethod", 3) => b.digests.push(get("Algorithm").unwrap_or_default()),
                (Dsig, "Transform", 4) => b.transforms.push(get("Algorithm").unwrap_or_default()),
                (Dsig, "Object" | "Manifest", _) => {
                    return Err(SamlReject::SignatureStructure(
                        "ds:Object or ds:Manifest in a signature",
                    ));
                }
                // KeyInfo is never used (only configured certificates are), and a
                // RetrievalMethod would be a fetch instruction.
                (Dsig, "RetrievalMethod", _) => {
                    return Err(SamlReject::SignatureStructure(
                        "ds:RetrievalMethod in a signature",
                    ));
                }
                (Dsig, "Signature", _) => {
                    return Err(SamlReject::SignatureStructure("nested signature"));
                }
                _ => {}
            }
            return Ok(());
        }

        if ns == Dsig && local == "Signature" {
            let parent = if self.at(&[RESP, (Dsig, "Signature")]) {
                Signed::Response
            } else if self.at(&[RESP, ASRT, (Dsig, "Signature")]) {
                Signed::Assertion
            } else {
                return Err(SamlReject::SignatureStructure(
                    "signature outside the Response or its Assertion",
                ));
            };
            let parent_id = match parent {
                Signed::Response => self.out.response_id.clone(),
                Signed::Assertion => self
                    .out
                    .assertion
                    .as_ref()
                    .map(|a| a.id.clone())
                    .unwrap_or_default(),
            };
            if self.out.signatures.iter().any(|s| s.parent == parent) {
                return Err(SamlReject::SignatureStructure(
                    "two signatures on one element",
                ));
            }
            self.sig = Some((
                self.stack.len() - 1,
                parent,
                parent_id,
                SigBuilder::default(),
            ));
            return Ok(());
        }

        if self.at(&[RESP, ASRT]) && self.out.assertion.is_none() {
            self.out.assertion = Some(ScannedAssertion {
                id: get("ID").unwrap_or_default(),
                ..Default::default()
            });
        }
        if self.at(&[RESP, (Assertion, "Issuer")]) {
            self.begin_capture(Capture::ResponseIssuer);
        } else if self.at(&[RESP, ASRT, (Assertion, "Issuer")]) {
            self.begin_capture(Capture::AssertionIssuer);
        } else if self.at(&[RESP, ASRT, (Assertion, "Subject"), (Assertion, "NameID")]) {
            if let Some(a) = self.out.assertion.as_mut() {
                if a.name_id.is_some() {
                    return Err(SamlReject::BadNameId);
                }
                a.name_id_format = get("Format");
            }
            self.begin_capture(Capture::NameId);
        } else if self.at(&[
            RESP,
            ASRT,
            (Assertion, "Subject"),
            (Assertion, "SubjectConfirmation"),
            (Assertion, "SubjectConfirmationData"),
        ]) {
            if let (Some(a), Some(irt)) = (self.out.assertion.as_mut(), get("InResponseTo")) {
                a.subject_confirmation_in_response_to.push(irt);
            }
        } else if self.at(&[
            RESP,
            ASRT,
            (Assertion, "AttributeStatement"),
            (Assertion, "Attribute"),
        ]) {
            self.current_attribute = get("Name");
            if let (Some(a), Some(name)) = (self.out.assertion.as_mut(), &self.current_attribute) {
                a.attributes.entry(name.clone()).or_default();
            }
        } else if self.at(&[
            RESP,
            ASRT,
            (Assertion, "AttributeStatement"),
            (Assertion, "Attribute"),
            (Assertion, "AttributeValue"),
        ]) {
            self.begin_capture(Capture::AttributeValue);
        } else if self.at(&[RESP, (Protocol, "Status"), (Protocol, "StatusCode")]) {
            if self.status_seen {
                return Err(SamlReject::Malformed("two top-level status codes".into()));
            }
            self.status_seen = true;
            self.out.status = get("Value");
        }
        Ok(())
    }

    fn begin_capture(&mut self, c: Capture) {
        self.capture = Some((c, self.stack.len()));
        self.text.clear();
    }

    fn text_piece(&mut self, t: &str) -> Result<(), SamlReject> {
        if self.capture.is_some() {
            self.text.push_str(t);
        } else if self.stack.is_empty() && !t.trim().is_empty() {
            return Err(SamlReject::Malformed(
                "text outside the root element".into(),
            ));
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), SamlReject> {
        let depth = self.stack.len();
        if let Some((c, at)) = self.capture
            && at == depth
        {
            self.capture = None;
            let text = std::mem::take(&mut self.text);
            match c {
                Capture::ResponseIssuer => self.out.issuer = Some(text.trim().to_string()),
                Capture::AssertionIssuer => {
                    if let Some(a) = self.out.assertion.as_mut() {
                        a.issuer = Some(text.trim().to_string());
                    }
                }
                Capture::NameId => {
                    if let Some(a) = self.out.assertion.as_mut() {
                        a.name_id = Some(text.trim().to_string());
                    }
                }
                Capture::AttributeValue => {
                    if let (Some(a), Some(name)) =
                        (self.out.assertion.as_mut(), &self.current_attribute)
                    {
                        a.attributes.entry(name.clone()).or_default().push(text);
                    }
                }
            }
        }
        if let Some((sig_depth, _, _, _)) = &self.sig
            && *sig_depth + 1 == depth
        {
            let (_, parent, parent_id, b) = self.sig.take().expect("checked above");
            self.finish_signature(parent, &parent_id, b)?;
        }
        if self.at(&[
            (Ns::Protocol, "Response"),
            (Ns::Assertion, "Assertion"),
            (Ns::Assertion, "AttributeStatement"),
            (Ns::Assertion, "Attribute"),
        ]) {
            self.current_attribute = None;
        }
        self.stack.pop();
        if self.stack.is_empty() {
            self.root_closed = true;
        }
        Ok(())
    }

    fn finish_signature(
        &mut self,
        parent: Signed,
        parent_id: &str,
        b: SigBuilder,
    ) -> Result<(), SamlReject> {
        if b.signed_info != 1 || b.method.len() != 1 || b.c14n.len() != 1 {
            return Err(SamlReject::SignatureStructure(
                "SignedInfo must have one method",
            ));
        }
        if b.references.len() != 1 || b.digests.len() != 1 {
            return Err(SamlReject::SignatureStructure("exactly one Reference"));
        }
        if parent_id.is_empty() || b.references[0] != format!("#{parent_id}") {
            return Err(SamlReject::SignatureStructure(
                "Reference does not point at the signed element",
            ));
        }
        let method = &b.method[0];
        let digest = &b.digests[0];
        let alg_ok = self.allowed.iter().any(|a| a.signature_uri() == method);
        if !alg_ok {
            return Err(SamlReject::DisallowedAlgorithm {
                algorithm: method.clone(),
            });
        }
        if !self.allowed.iter().any(|a| a.digest_uri() == digest) {
            return Err(SamlReject::DisallowedAlgorithm {
                algorithm: digest.clone(),
            });
        }
        if !ALLOWED_C14N.contains(&b.c14n[0].as_str()) {
            return Err(SamlReject::SignatureStructure(
                "unsupported canonicalization",
            ));
        }
        if b.transforms
            .iter()
            .any(|t| !ALLOWED_TRANSFORMS.contains(&t.as_str()))
        {
            return Err(SamlReject::SignatureStructure("unsupported transform"));
        }
        self.out.signatures.push(ScannedSignature { parent });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<XmlSignatureAlgorithm> {
        XmlSignatureAlgorithm::DEFAULT.to_vec()
    }

    const HEAD: &str = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r" Destination="https://d" InResponseTo="_q">"#;

    #[test]
    fn name_id_pieces_are_concatenated() {
        let xml = format!(
            "{HEAD}<saml:Issuer>idp</saml:Issuer><samlp:Status><samlp:StatusCode Value=\"ok\"/></samlp:Status>\
             <saml:Assertion ID=\"_a\"><saml:Subject><saml:NameID>alice@corp.example<![CDATA[.evil]]>&#46;com&amp;</saml:NameID>\
             </saml:Subject><saml:AttributeStatement><saml:Attribute Name=\"g\"><saml:AttributeValue>a<![CDATA[b]]>c</saml:AttributeValue>\
             <saml:AttributeValue>d</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion></samlp:Response>"
        );
        let s = scan(&xml, &allowed()).unwrap();
        let a = s.assertion.unwrap();
        assert_eq!(a.name_id.as_deref(), Some("alice@corp.example.evil.com&"));
        assert_eq!(a.attributes["g"], vec!["abc".to_string(), "d".to_string()]);
        assert_eq!(s.issuer.as_deref(), Some("idp"));
        assert_eq!(s.status.as_deref(), Some("ok"));
    }

    #[test]
    fn comment_doctype_pi_refused() {
        let c = format!("{HEAD}<!-- x --></samlp:Response>");
        assert_eq!(scan(&c, &allowed()).unwrap_err(), SamlReject::XmlComment);
        let pi = format!("{HEAD}<?evil x?></samlp:Response>");
        assert_eq!(
            scan(&pi, &allowed()).unwrap_err(),
            SamlReject::ProcessingInstruction
        );
        assert_eq!(reject_dtd("<!doctype x []>"), Err(SamlReject::Dtd));
        assert_eq!(reject_dtd("<x/>"), Ok(()));
        let undefined = format!("{HEAD}<saml:Issuer>&xxe;</saml:Issuer></samlp:Response>");
        assert_eq!(scan(&undefined, &allowed()).unwrap_err(), SamlReject::Dtd);
    }

    #[test]
    fn duplicate_and_xml_ids_refused() {
        let dup = format!("{HEAD}<saml:Assertion ID=\"_r\"></saml:Assertion></samlp:Response>");
        assert!(matches!(
            scan(&dup, &allowed()),
            Err(SamlReject::DuplicateId { .. })
        ));
        let xmlid =
            format!("{HEAD}<saml:Assertion xml:id=\"_x\"></saml:Assertion></samlp:Response>");
        assert!(matches!(
            scan(&xmlid, &allowed()),
            Err(SamlReject::DuplicateId { .. })
        ));
    }

    #[test]
    fn wrong_root_and_encoding() {
        assert_eq!(
            scan("<a/>", &allowed()).unwrap_err(),
            SamlReject::NotAResponse
        );
        let latin =
            format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>{HEAD}</samlp:Response>");
        assert!(matches!(
            scan(&latin, &allowed()),
            Err(SamlReject::Malformed(_))
        ));
        assert!(matches!(
            scan(HEAD, &allowed()),
            Err(SamlReject::Malformed(_))
        ));
    }
}
