//! Exclusive XML Canonicalization 1.0 without comments
//! (<http://www.w3.org/2001/10/xml-exc-c14n#>), over a whole element subtree, with the
//! `InclusiveNamespaces PrefixList` parameter and an optional excluded element (the enveloped
//! signature transform).
//!
//! The document subset is always "an element and all its descendants, minus one subtree", which
//! is what every SAML signature uses. Comments and processing instructions are left out (the
//! validator refuses documents containing them anyway). Attribute values and line endings are
//! those of the XPath data model, which `roxmltree` already normalizes.

use std::collections::BTreeMap;

use roxmltree::{Node, NodeId};

use crate::error::SamlError;

/// The namespace of the `xml` prefix, which is never declared in canonical output.
pub(crate) const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Canonicalizes `apex` and its descendants, leaving out the subtree `exclude` (if any).
/// `inclusive` lists the prefixes of the `InclusiveNamespaces PrefixList`, with `""` for
/// `#default`.
pub(crate) fn canonicalize(
    apex: Node<'_, '_>,
    exclude: Option<NodeId>,
    inclusive: &[String],
) -> Result<Vec<u8>, SamlError> {
    let mut out = Vec::with_capacity(apex.range().len());
    let rendered = BTreeMap::new();
    element(apex, exclude, inclusive, &rendered, &mut out)?;
    Ok(out)
}

/// An element's qualified name as written in the source.
pub(crate) fn element_qname<'i>(node: Node<'_, 'i>) -> Result<&'i str, SamlError> {
    let malformed = || SamlError::Xml {
        reason: "element name out of range".into(),
    };
    let text = node.document().input_text();
    let rest = text
        .get(node.range().start.saturating_add(1)..)
        .ok_or_else(malformed)?;
    let end = rest
        .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .ok_or_else(malformed)?;
    let qname = rest.get(..end).ok_or_else(malformed)?;
    // The source name must agree with what the parser resolved.
    if local_part(qname) != node.tag_name().name() {
        return Err(malformed());
    }
    Ok(qname)
}

fn local_part(qname: &str) -> &str {
    qname.split_once(':').map_or(qname, |(_, local)| local)
}

fn prefix_of(qname: &str) -> &str {
    qname.split_once(':').map_or("", |(prefix, _)| prefix)
}

fn element<'i>(
    node: Node<'_, 'i>,
    exclude: Option<NodeId>,
    inclusive: &[String],
    rendered: &BTreeMap<String, String>,
    out: &mut Vec<u8>,
) -> Result<(), SamlError> {
    let text = node.document().input_text();
    let qname = element_qname(node)?;

    // The prefixes this element visibly utilizes: its own (`""` when unprefixed) and those of
    // its prefixed attributes; plus the inclusive prefixes, treated as in inclusive C14N.
    let mut attrs = Vec::new();
    let mut prefixes: Vec<&str> = vec![prefix_of(qname)];
    for attr in node.attributes() {
        let attr_qname = text.get(attr.range_qname()).ok_or_else(|| SamlError::Xml {
            reason: "attribute name out of range".into(),
        })?;
        let prefix = prefix_of(attr_qname);
        if !prefix.is_empty() {
            prefixes.push(prefix);
        }
        attrs.push((
            attr.namespace().unwrap_or(""),
            attr.name(),
            attr_qname,
            attr.value(),
        ));
    }
    prefixes.extend(inclusive.iter().map(String::as_str));
    prefixes.sort_unstable();
    prefixes.dedup();

    // A namespace node is rendered when it is used (or inclusive) and not already in effect
    // with the same value in the nearest output ancestor. `xmlns=""` is emitted only to undo a
    // default namespace rendered above.
    let mut decls: Vec<(&str, &str)> = Vec::new();
    for prefix in prefixes {
        if prefix == "xml" {
            continue;
        }
        let uri = if prefix.is_empty() {
            node.default_namespace().unwrap_or("")
        } else {
            match node.lookup_namespace_uri(Some(prefix)) {
                Some(uri) => uri,
                // An inclusive prefix not in scope here renders nothing.
                None => continue,
            }
        };
        let in_effect = rendered.get(prefix).map_or("", String::as_str);
        let unchanged = if prefix.is_empty() {
            in_effect == uri
        } else {
            rendered.get(prefix).is_some_and(|u| u == uri)
        };
        if !unchanged {
            decls.push((prefix, uri));
        }
    }
    decls.sort_unstable_by(|a, b| a.0.cmp(b.0));
    attrs.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));

    out.push(b'<');
    out.extend_from_slice(qname.as_bytes());
    for (prefix, uri) in &decls {
        if prefix.is_empty() {
            out.extend_from_slice(b" xmlns=\"");
        } else {
            out.extend_from_slice(b" xmlns:");
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(b"=\"");
        }
        escape_attr(uri, out);
        out.push(b'"');
    }
    for (_, _, attr_qname, value) in &attrs {
        out.push(b' ');
        out.extend_from_slice(attr_qname.as_bytes());
        out.extend_from_slice(b"=\"");
        escape_attr(value, out);
        out.push(b'"');
    }
    out.push(b'>');

    let mut inner;
    let for_children = if decls.is_empty() {
        rendered
    } else {
        inner = rendered.clone();
        for (prefix, uri) in decls {
            inner.insert(prefix.to_owned(), uri.to_owned());
        }
        &inner
    };
    for child in node.children() {
        if Some(child.id()) == exclude {
            continue;
        }
        if child.is_element() {
            element(child, exclude, inclusive, for_children, out)?;
        } else if child.is_text() {
            escape_text(child.text().unwrap_or(""), out);
        }
        // Comments and processing instructions: not in the "without comments" output.
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(qname.as_bytes());
    out.push(b'>');
    Ok(())
}

fn escape_text(s: &str, out: &mut Vec<u8>) {
    for b in s.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'\r' => out.extend_from_slice(b"&#xD;"),
            _ => out.push(b),
        }
    }
}

fn escape_attr(s: &str, out: &mut Vec<u8>) {
    for b in s.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\t' => out.extend_from_slice(b"&#x9;"),
            b'\n' => out.extend_from_slice(b"&#xA;"),
            b'\r' => out.extend_from_slice(b"&#xD;"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c14n(xml: &str, inclusive: &[&str]) -> String {
        let doc = roxmltree::Document::parse(xml).unwrap();
        let inclusive: Vec<String> = inclusive.iter().map(|s| (*s).to_owned()).collect();
        String::from_utf8(canonicalize(doc.root_element(), None, &inclusive).unwrap()).unwrap()
    }

    fn c14n_of(xml: &str, local: &str, inclusive: &[&str]) -> String {
        let doc = roxmltree::Document::parse(xml).unwrap();
        let node = doc
            .descendants()
            .find(|n| n.tag_name().name() == local)
            .unwrap();
        let inclusive: Vec<String> = inclusive.iter().map(|s| (*s).to_owned()).collect();
        String::from_utf8(canonicalize(node, None, &inclusive).unwrap()).unwrap()
    }

    #[test]
    fn empty_elements_attribute_order_and_escaping() {
        assert_eq!(
            c14n(
                "<a  z='1' b=\"x&amp;&lt;&gt;&quot;&#9;&#10;&#13;\" xmlns:q='urn:q' q:c='2'><b/>t&amp;&lt;&gt;&#13;<![CDATA[<c>]]></a >",
                &[]
            ),
            "<a xmlns:q=\"urn:q\" b=\"x&amp;&lt;>&quot;&#x9;&#xA;&#xD;\" z=\"1\" q:c=\"2\"><b></b>t&amp;&lt;&gt;&#xD;&lt;c&gt;</a>"
        );
    }

    #[test]
    fn only_visibly_used_namespaces_are_rendered() {
        let xml = "<r xmlns='urn:d' xmlns:a='urn:a' xmlns:b='urn:b'><a:x b:y='1'><z/></a:x></r>";
        assert_eq!(
            c14n_of(xml, "x", &[]),
            "<a:x xmlns:a=\"urn:a\" xmlns:b=\"urn:b\" b:y=\"1\"><z xmlns=\"urn:d\"></z></a:x>"
        );
        // The inclusive prefix list renders `#default` on the apex too.
        assert_eq!(
            c14n_of(xml, "x", &[""]),
            "<a:x xmlns=\"urn:d\" xmlns:a=\"urn:a\" xmlns:b=\"urn:b\" b:y=\"1\"><z></z></a:x>"
        );
    }

    #[test]
    fn redeclarations_and_empty_default() {
        let xml =
            "<a:r xmlns:a='urn:a' xmlns='urn:d'><a:s xmlns:a='urn:a'><t xmlns=''/></a:s></a:r>";
        assert_eq!(
            c14n(xml, &[]),
            "<a:r xmlns:a=\"urn:a\"><a:s><t></t></a:s></a:r>"
        );
        let xml = "<r xmlns='urn:d'><t xmlns=''/></r>";
        assert_eq!(c14n(xml, &[]), "<r xmlns=\"urn:d\"><t xmlns=\"\"></t></r>");
    }

    #[test]
    fn xml_attributes_are_not_declared() {
        assert_eq!(
            c14n("<r xml:lang='en'><s/></r>", &[]),
            "<r xml:lang=\"en\"><s></s></r>"
        );
    }
}
