//! [`SamlAssertionSigner`]: signed SAML 2.0 assertions for a reference IdP and for tests.

use std::sync::Arc;

use base64::Engine as _;
use ema_jose::{SigningKey, UnixTime};
use roxmltree::Document;

use crate::c14n::canonicalize;
use crate::dsig::{self, DSIG_NS, ENVELOPED_SIGNATURE, EXC_C14N, SHA256};
use crate::error::SamlError;
use crate::time;
use crate::validator::{BEARER, SAML_NS};

/// The content of an assertion to sign.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AssertionTemplate {
    /// `ID`; a fresh random one when `None`.
    pub id: Option<String>,
    /// The `NameID` value.
    pub name_id: String,
    /// The `NameID Format`, when set.
    pub name_id_format: Option<String>,
    /// The SP entity ids of the one `AudienceRestriction`.
    pub audiences: Vec<String>,
    /// `IssueInstant`, also `Conditions NotBefore`.
    pub issue_instant: UnixTime,
    /// Seconds until `Conditions NotOnOrAfter`.
    pub lifetime: u64,
    /// `Conditions NotBefore`; the issue instant when `None`.
    pub not_before: Option<UnixTime>,
    /// Seconds until the bearer confirmation's `NotOnOrAfter`; `lifetime` when `None`.
    pub confirmation_lifetime: Option<u64>,
    /// `AuthnInstant`; the issue instant when `None`.
    pub authn_instant: Option<UnixTime>,
    /// `AuthnContextClassRef`.
    pub authn_context_class_ref: String,
    /// `SessionIndex`, when set.
    pub session_index: Option<String>,
    /// The bearer confirmation's `Recipient`, when set.
    pub recipient: Option<String>,
    /// Attributes by name, each with its values.
    pub attributes: Vec<(String, Vec<String>)>,
}

impl std::fmt::Debug for AssertionTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionTemplate")
            .field("id", &self.id)
            .field("audiences", &self.audiences)
            .field("issue_instant", &self.issue_instant)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl AssertionTemplate {
    /// An assertion about `name_id` for the SP `audience`, issued at `issue_instant`, valid
    /// 300 s, authenticated by password-protected transport.
    pub fn new(
        name_id: impl Into<String>,
        audience: impl Into<String>,
        issue_instant: UnixTime,
    ) -> Self {
        Self {
            id: None,
            name_id: name_id.into(),
            name_id_format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified".into()),
            audiences: vec![audience.into()],
            issue_instant,
            lifetime: 300,
            not_before: None,
            confirmation_lifetime: None,
            authn_instant: None,
            authn_context_class_ref:
                "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport".into(),
            session_index: None,
            recipient: None,
            attributes: Vec::new(),
        }
    }

    /// Adds an attribute.
    #[must_use]
    pub fn with_attribute<S: Into<String>>(
        mut self,
        name: impl Into<String>,
        values: impl IntoIterator<Item = S>,
    ) -> Self {
        self.attributes
            .push((name.into(), values.into_iter().map(Into::into).collect()));
        self
    }

    /// Sets the lifetime in seconds.
    #[must_use]
    pub fn with_lifetime(mut self, secs: u64) -> Self {
        self.lifetime = secs;
        self
    }

    /// Sets `Conditions NotBefore`.
    #[must_use]
    pub fn with_not_before(mut self, at: UnixTime) -> Self {
        self.not_before = Some(at);
        self
    }

    /// Sets the bearer confirmation's lifetime in seconds.
    #[must_use]
    pub fn with_confirmation_lifetime(mut self, secs: u64) -> Self {
        self.confirmation_lifetime = Some(secs);
        self
    }

    /// Sets the `NameID Format` (`None` to leave it out).
    #[must_use]
    pub fn with_name_id_format(mut self, format: Option<String>) -> Self {
        self.name_id_format = format;
        self
    }

    /// Sets `SessionIndex`.
    #[must_use]
    pub fn with_session_index(mut self, index: impl Into<String>) -> Self {
        self.session_index = Some(index.into());
        self
    }

    /// Replaces the audiences.
    #[must_use]
    pub fn with_audiences<S: Into<String>>(
        mut self,
        audiences: impl IntoIterator<Item = S>,
    ) -> Self {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `AuthnInstant`.
    #[must_use]
    pub fn with_authn_instant(mut self, at: UnixTime) -> Self {
        self.authn_instant = Some(at);
        self
    }

    /// Sets `AuthnContextClassRef`.
    #[must_use]
    pub fn with_authn_context_class_ref(mut self, class_ref: impl Into<String>) -> Self {
        self.authn_context_class_ref = class_ref.into();
        self
    }

    /// Sets the `ID`.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the bearer confirmation's `Recipient`: the token endpoint the assertion is for
    /// (validators require it, RFC 7522 §3).
    #[must_use]
    pub fn with_recipient(mut self, recipient: impl Into<String>) -> Self {
        self.recipient = Some(recipient.into());
        self
    }
}

/// Signs assertions as one IdP: enveloped signature, exclusive C14N, SHA-256 digest, and
/// `rsa-sha256`, `rsa-sha512`, `ecdsa-sha256` or `ecdsa-sha384` after the key's algorithm
/// (RS256, RS512, ES256, ES384).
#[derive(Debug, Clone)]
pub struct SamlAssertionSigner {
    issuer: String,
    key: Arc<SigningKey>,
}

impl SamlAssertionSigner {
    /// A signer for the IdP entity id `issuer`.
    pub fn new(issuer: impl Into<String>, key: Arc<SigningKey>) -> Self {
        Self {
            issuer: issuer.into(),
            key,
        }
    }

    /// The signed assertion as XML.
    pub fn sign(&self, template: &AssertionTemplate) -> Result<String, SamlError> {
        let id = match &template.id {
            Some(id) => id.clone(),
            None => format!(
                "_{}",
                ema_jose::random_id().map_err(|_| SamlError::Signing)?
            ),
        };
        self.sign_xml(&self.render(template, &id)?)
    }

    /// Signs an unsigned assertion written elsewhere: the enveloped signature goes right after
    /// its `Issuer` (or first, without one), referencing the root's `ID`. The XML must parse
    /// without a DTD; nothing else about it is checked here.
    pub fn sign_xml(&self, unsigned: &str) -> Result<String, SamlError> {
        let sig_uri = dsig::signature_uri(self.key.algorithm()).ok_or(SamlError::Signing)?;
        let doc = Document::parse(unsigned).map_err(|_| SamlError::Signing)?;
        let root = doc.root_element();
        let id = root.attribute("ID").ok_or(SamlError::Signing)?;
        let canonical = canonicalize(root, None, &[])?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical);
        // Where the signature goes: after `Issuer`, else right after the root's start tag.
        let at = match root
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == "Issuer")
        {
            Some(issuer) => issuer.range().end,
            None => match root.first_child() {
                Some(first) => first.range().start,
                None => return Err(SamlError::Signing),
            },
        };
        let b64 = &base64::engine::general_purpose::STANDARD;
        let signed_info = format!(
            "<ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"/>\
             <ds:SignatureMethod Algorithm=\"{sig_uri}\"/><ds:Reference URI=\"#{}\">\
             <ds:Transforms><ds:Transform Algorithm=\"{ENVELOPED_SIGNATURE}\"/>\
             <ds:Transform Algorithm=\"{EXC_C14N}\"/></ds:Transforms>\
             <ds:DigestMethod Algorithm=\"{SHA256}\"/><ds:DigestValue>{}</ds:DigestValue>\
             </ds:Reference></ds:SignedInfo>",
            escape(id),
            b64.encode(digest.as_ref())
        );
        // Canonicalize SignedInfo exactly as the verifier will, inside its Signature element.
        let wrapper = format!("<ds:Signature xmlns:ds=\"{DSIG_NS}\">{signed_info}</ds:Signature>");
        let to_sign = {
            let wrapped = Document::parse(&wrapper).map_err(|_| SamlError::Signing)?;
            let info = wrapped
                .root_element()
                .first_element_child()
                .ok_or(SamlError::Signing)?;
            canonicalize(info, None, &[])?
        };
        let value = self
            .key
            .sign_bytes(&to_sign)
            .map_err(|_| SamlError::Signing)?;
        let signature = format!(
            "<ds:Signature xmlns:ds=\"{DSIG_NS}\">{signed_info}<ds:SignatureValue>{}</ds:SignatureValue></ds:Signature>",
            b64.encode(value)
        );
        let (head, tail) = (
            unsigned.get(..at).ok_or(SamlError::Signing)?,
            unsigned.get(at..).ok_or(SamlError::Signing)?,
        );
        Ok(format!("{head}{signature}{tail}"))
    }

    /// The signed assertion as a `subject_token` of type
    /// `urn:ietf:params:oauth:token-type:saml2` (unpadded base64url, RFC 8693 §3).
    pub fn sign_base64url(&self, template: &AssertionTemplate) -> Result<String, SamlError> {
        self.sign(template)
            .map(|xml| ema_jose::base64url::encode(xml.as_bytes()))
    }

    /// The unsigned assertion; a time after [`UnixTime::MAX`] (a huge lifetime) is refused.
    fn render(&self, t: &AssertionTemplate, id: &str) -> Result<String, SamlError> {
        let issued = time::format(t.issue_instant)?;
        let until = time::format(t.issue_instant.plus(t.lifetime))?;
        let not_before = time::format(t.not_before.unwrap_or(t.issue_instant))?;
        let confirmed_until = time::format(
            t.issue_instant
                .plus(t.confirmation_lifetime.unwrap_or(t.lifetime)),
        )?;
        let authn = time::format(t.authn_instant.unwrap_or(t.issue_instant))?;
        let mut x = String::with_capacity(2048);
        x.push_str(&format!(
            "<saml:Assertion xmlns:saml=\"{SAML_NS}\" ID=\"{}\" IssueInstant=\"{issued}\" Version=\"2.0\">",
            escape(id)
        ));
        x.push_str(&format!(
            "<saml:Issuer>{}</saml:Issuer>",
            escape(&self.issuer)
        ));
        x.push_str("<saml:Subject><saml:NameID");
        if let Some(format) = &t.name_id_format {
            x.push_str(&format!(" Format=\"{}\"", escape(format)));
        }
        x.push_str(&format!(">{}</saml:NameID>", escape(&t.name_id)));
        x.push_str(&format!(
            "<saml:SubjectConfirmation Method=\"{BEARER}\"><saml:SubjectConfirmationData NotOnOrAfter=\"{confirmed_until}\""
        ));
        if let Some(recipient) = &t.recipient {
            x.push_str(&format!(" Recipient=\"{}\"", escape(recipient)));
        }
        x.push_str("/></saml:SubjectConfirmation></saml:Subject>");
        x.push_str(&format!(
            "<saml:Conditions NotBefore=\"{not_before}\" NotOnOrAfter=\"{until}\"><saml:AudienceRestriction>"
        ));
        for audience in &t.audiences {
            x.push_str(&format!(
                "<saml:Audience>{}</saml:Audience>",
                escape(audience)
            ));
        }
        x.push_str("</saml:AudienceRestriction></saml:Conditions>");
        x.push_str(&format!("<saml:AuthnStatement AuthnInstant=\"{authn}\""));
        if let Some(index) = &t.session_index {
            x.push_str(&format!(" SessionIndex=\"{}\"", escape(index)));
        }
        x.push_str(&format!(
            "><saml:AuthnContext><saml:AuthnContextClassRef>{}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>",
            escape(&t.authn_context_class_ref)
        ));
        if !t.attributes.is_empty() {
            x.push_str("<saml:AttributeStatement>");
            for (name, values) in &t.attributes {
                x.push_str(&format!("<saml:Attribute Name=\"{}\">", escape(name)));
                for value in values {
                    x.push_str(&format!(
                        "<saml:AttributeValue>{}</saml:AttributeValue>",
                        escape(value)
                    ));
                }
                x.push_str("</saml:Attribute>");
            }
            x.push_str("</saml:AttributeStatement>");
        }
        x.push_str("</saml:Assertion>");
        Ok(x)
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            '\n' => out.push_str("&#xA;"),
            '\t' => out.push_str("&#x9;"),
            c => out.push(c),
        }
    }
    out
}
