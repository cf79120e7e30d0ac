//! XML-DSig, restricted to what a signed SAML assertion needs: one enveloped signature over the
//! root element, exclusive C14N, SHA-256 digests, RSA or ECDSA with SHA-2.

use std::sync::Arc;

use base64::Engine as _;
use ema_jose::{Algorithm, VerifyingKey};
use roxmltree::Node;

use crate::c14n::{MAX_INCLUSIVE_PREFIXES, canonicalize};
use crate::error::SamlError;

/// The XML-DSig namespace.
pub const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// Exclusive C14N 1.0 without comments, the only canonicalization accepted.
pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// The enveloped-signature transform.
pub const ENVELOPED_SIGNATURE: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
/// SHA-256, the only digest accepted.
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
/// RSASSA-PKCS1-v1_5 with SHA-256.
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// RSASSA-PKCS1-v1_5 with SHA-512.
pub const RSA_SHA512: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512";
/// ECDSA with SHA-256 (signature value is `r || s`).
pub const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
/// ECDSA with SHA-384 (signature value is `r || s`).
pub const ECDSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";

/// The signature algorithm URI for a JOSE algorithm, for those with an allowed XML-DSig form.
pub(crate) fn signature_uri(alg: Algorithm) -> Option<&'static str> {
    match alg {
        Algorithm::RS256 => Some(RSA_SHA256),
        Algorithm::RS512 => Some(RSA_SHA512),
        Algorithm::ES256 => Some(ECDSA_SHA256),
        Algorithm::ES384 => Some(ECDSA_SHA384),
        _ => None,
    }
}

fn signature_alg(uri: &str) -> Option<Algorithm> {
    match uri {
        RSA_SHA256 => Some(Algorithm::RS256),
        RSA_SHA512 => Some(Algorithm::RS512),
        ECDSA_SHA256 => Some(Algorithm::ES256),
        ECDSA_SHA384 => Some(Algorithm::ES384),
        _ => None,
    }
}

pub(crate) fn is_ds(node: Node<'_, '_>, local: &str) -> bool {
    node.is_element()
        && node.tag_name().namespace() == Some(DSIG_NS)
        && node.tag_name().name() == local
}

/// The element children of `node`; any non-whitespace text or a foreign node is refused.
fn element_children<'a, 'i>(
    node: Node<'a, 'i>,
    reason: &'static str,
) -> Result<Vec<Node<'a, 'i>>, SamlError> {
    let mut out = Vec::new();
    for child in node.children() {
        if child.is_element() {
            out.push(child);
        } else if child.is_text() {
            if !child.text().unwrap_or("").trim_ascii().is_empty() {
                return Err(SamlError::MalformedSignature { reason });
            }
        } else {
            return Err(SamlError::MalformedSignature { reason });
        }
    }
    Ok(out)
}

fn algorithm_attr<'a>(node: Node<'a, '_>) -> Result<&'a str, SamlError> {
    node.attribute("Algorithm")
        .ok_or(SamlError::MalformedSignature {
            reason: "an algorithm element has no `Algorithm`",
        })
}

/// Reads the exclusive C14N method of `node` (a `CanonicalizationMethod` or `Transform`):
/// the prefixes of an optional `InclusiveNamespaces PrefixList`, `""` for `#default`.
fn exc_c14n_prefixes(node: Node<'_, '_>, kind: &'static str) -> Result<Vec<String>, SamlError> {
    let uri = algorithm_attr(node)?;
    if uri != EXC_C14N {
        return Err(SamlError::UnsupportedAlgorithm {
            kind,
            uri: uri.to_owned(),
        });
    }
    let children = element_children(node, "unexpected content in a canonicalization method")?;
    match children.as_slice() {
        [] => Ok(Vec::new()),
        [inc]
            if inc.tag_name().namespace() == Some(EXC_C14N)
                && inc.tag_name().name() == "InclusiveNamespaces"
                && !inc.has_children() =>
        {
            // The list is chosen by the sender and drives canonicalization, the signed
            // `SignedInfo`'s included: bounded here, each prefix checked to be in scope there.
            let list = inc.attribute("PrefixList").unwrap_or("");
            let count = list.split_ascii_whitespace().count();
            if count > MAX_INCLUSIVE_PREFIXES {
                return Err(SamlError::PrefixListTooLong {
                    count,
                    max: MAX_INCLUSIVE_PREFIXES,
                });
            }
            let mut prefixes: Vec<String> = list
                .split_ascii_whitespace()
                .map(|p| {
                    if p == "#default" {
                        String::new()
                    } else {
                        p.to_owned()
                    }
                })
                .collect();
            prefixes.sort_unstable();
            prefixes.dedup();
            Ok(prefixes)
        }
        _ => Err(SamlError::MalformedSignature {
            reason: "unexpected content in a canonicalization method",
        }),
    }
}

fn base64_value(node: Node<'_, '_>, reason: &'static str) -> Result<Vec<u8>, SamlError> {
    let mut text = String::new();
    for child in node.children() {
        if !child.is_text() {
            return Err(SamlError::MalformedSignature { reason });
        }
        text.extend(
            child
                .text()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_ascii_whitespace()),
        );
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|_| SamlError::MalformedSignature { reason })
}

/// TX-4 (the signature of the identity assertion): verifies `signature`, a direct child of
/// `root`, as an enveloped signature over `root`
/// whose single reference is `"#" + root_id`, with one of `keys`.
///
/// Steps: (1) the structure `SignedInfo, SignatureValue, KeyInfo?` and nothing else (no
/// `ds:Object`); (2) `SignedInfo` = exclusive C14N, an allowed signature method, exactly one
/// `Reference`; (3) the reference URI names the root; (4) transforms are exactly
/// enveloped-signature then exclusive C14N, the digest method is SHA-256; (5) the signature
/// over canonical `SignedInfo` verifies with a configured key (never a key from `KeyInfo`);
/// (6) only then is the root canonicalized (without the signature) and its digest compared.
///
/// `SignedInfo` is small and its shape fixed by steps 1-4, so an unsigned or forged assertion
/// costs one small canonicalization and one signature check, however its body is built: the
/// sender-chosen reference `PrefixList` and the body's size never drive work before the
/// signature is known to come from the IdP.
pub(crate) fn verify_enveloped(
    root: Node<'_, '_>,
    signature: Node<'_, '_>,
    root_id: &str,
    keys: &[Arc<VerifyingKey>],
) -> Result<(), SamlError> {
    // (1)
    let parts = element_children(signature, "unexpected content in `Signature`")?;
    let (signed_info, signature_value) = match parts.as_slice() {
        [si, sv] => (*si, *sv),
        [si, sv, ki] if is_ds(*ki, "KeyInfo") => (*si, *sv),
        _ => {
            return Err(SamlError::MalformedSignature {
                reason: "`Signature` must hold `SignedInfo`, `SignatureValue` and `KeyInfo` only",
            });
        }
    };
    if !is_ds(signed_info, "SignedInfo") || !is_ds(signature_value, "SignatureValue") {
        return Err(SamlError::MalformedSignature {
            reason: "`Signature` must hold `SignedInfo`, `SignatureValue` and `KeyInfo` only",
        });
    }
    // (2)
    let info = element_children(signed_info, "unexpected content in `SignedInfo`")?;
    let (c14n_method, sig_method, references) = match info.as_slice() {
        [c, s, refs @ ..]
            if is_ds(*c, "CanonicalizationMethod") && is_ds(*s, "SignatureMethod") =>
        {
            (*c, *s, refs)
        }
        _ => {
            return Err(SamlError::MalformedSignature {
                reason: "`SignedInfo` must start with the canonicalization and signature methods",
            });
        }
    };
    let si_prefixes = exc_c14n_prefixes(c14n_method, "canonicalization")?;
    let sig_uri = algorithm_attr(sig_method)?;
    let alg = signature_alg(sig_uri).ok_or_else(|| SamlError::UnsupportedAlgorithm {
        kind: "signature",
        uri: sig_uri.to_owned(),
    })?;
    if sig_method.has_children() {
        return Err(SamlError::MalformedSignature {
            reason: "unexpected content in `SignatureMethod`",
        });
    }
    if references.iter().any(|r| !is_ds(*r, "Reference")) {
        return Err(SamlError::MalformedSignature {
            reason: "unexpected content in `SignedInfo`",
        });
    }
    let reference = match references {
        [one] => *one,
        many => return Err(SamlError::ReferenceCount { count: many.len() }),
    };
    // (3)
    let uri = reference.attribute("URI").unwrap_or("");
    if uri.strip_prefix('#') != Some(root_id) {
        return Err(SamlError::ReferenceMismatch);
    }
    // (4)
    let ref_parts = element_children(reference, "unexpected content in `Reference`")?;
    let (transforms, digest_method, digest_value) = match ref_parts.as_slice() {
        [t, m, v]
            if is_ds(*t, "Transforms") && is_ds(*m, "DigestMethod") && is_ds(*v, "DigestValue") =>
        {
            (*t, *m, *v)
        }
        _ => {
            return Err(SamlError::MalformedSignature {
                reason: "`Reference` must hold `Transforms`, `DigestMethod`, `DigestValue`",
            });
        }
    };
    let steps = element_children(transforms, "unexpected content in `Transforms`")?;
    if steps.iter().any(|t| !is_ds(*t, "Transform")) {
        return Err(SamlError::MalformedSignature {
            reason: "unexpected content in `Transforms`",
        });
    }
    for step in &steps {
        let uri = algorithm_attr(*step)?;
        if uri != ENVELOPED_SIGNATURE && uri != EXC_C14N {
            return Err(SamlError::UnsupportedAlgorithm {
                kind: "transform",
                uri: uri.to_owned(),
            });
        }
    }
    let ref_prefixes = match steps.as_slice() {
        [env, exc] if algorithm_attr(*env)? == ENVELOPED_SIGNATURE && !env.has_children() => {
            exc_c14n_prefixes(*exc, "transform")?
        }
        _ => {
            return Err(SamlError::MalformedSignature {
                reason: "transforms must be enveloped-signature then exclusive C14N",
            });
        }
    };
    let digest_uri = algorithm_attr(digest_method)?;
    if digest_uri != SHA256 {
        return Err(SamlError::UnsupportedAlgorithm {
            kind: "digest",
            uri: digest_uri.to_owned(),
        });
    }
    let expected = base64_value(digest_value, "`DigestValue` is not base64")?;
    // (5) TX-4; as SEC-3 for JWTs, keys come from configuration only: `KeyInfo` is never read.
    let sig_bytes = base64_value(signature_value, "`SignatureValue` is not base64")?;
    let signed = canonicalize(signed_info, None, &si_prefixes)?;
    let verified = keys
        .iter()
        .filter(|k| k.accepts(alg))
        .any(|k| k.verify(alg, &signed, &sig_bytes).is_ok());
    if !verified {
        return Err(SamlError::BadSignature);
    }
    // (6) The signed `SignedInfo` vouches for the reference, its transforms and digest.
    let canonical = canonicalize(root, Some(signature.id()), &ref_prefixes)?;
    let actual = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical);
    if aws_lc_rs::constant_time::verify_slices_are_equal(actual.as_ref(), &expected).is_err() {
        return Err(SamlError::DigestMismatch);
    }
    Ok(())
}
