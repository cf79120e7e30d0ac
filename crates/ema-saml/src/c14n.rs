//! Exclusive XML Canonicalization 1.0 without comments
//! (<http://www.w3.org/2001/10/xml-exc-c14n#>), over a whole element subtree, with the
//! `InclusiveNamespaces PrefixList` parameter and an optional excluded element (the enveloped
//! signature transform).
//!
//! The document subset is always "an element and all its descendants, minus one subtree", which
//! is what every SAML signature uses. Comments and processing instructions are left out (the
//! validator refuses documents containing them anyway). Attribute values and line endings are
//! those of the XPath data model, which `roxmltree` already normalizes.

use std::collections::HashMap;

use roxmltree::{Namespace, Node, NodeId};

use crate::error::SamlError;

/// The namespace of the `xml` prefix, which is never declared in canonical output.
pub(crate) const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// The most prefixes an `InclusiveNamespaces PrefixList` may list.
pub const MAX_INCLUSIVE_PREFIXES: usize = 16;

/// The canonical form may be at most this many times the canonicalized element's source, plus
/// [`EXPANSION_SLACK`]: exclusive C14N re-declares a namespace on every sibling that uses it,
/// which a hostile document could otherwise turn into megabytes to hash.
const EXPANSION_FACTOR: usize = 8;
const EXPANSION_SLACK: usize = 64 * 1024;

/// The namespaces in scope at one element, sorted by prefix (`""` for the default namespace),
/// built once per element whose scope differs from its parent's.
struct Scope<'a, 'i> {
    /// The parser's namespace nodes, to recognize an unchanged scope by identity.
    nodes: Vec<&'a Namespace<'i>>,
    /// (prefix, URI), sorted by prefix.
    map: Vec<(&'a str, &'a str)>,
}

impl<'a, 'i> Scope<'a, 'i> {
    fn of(node: Node<'a, 'i>) -> Self {
        let nodes: Vec<&'a Namespace<'i>> = node.namespaces().collect();
        let mut map: Vec<(&'a str, &'a str)> = nodes
            .iter()
            .map(|ns| (ns.name().unwrap_or(""), ns.uri()))
            .collect();
        map.sort_unstable_by(|a, b| a.0.cmp(b.0));
        Self { nodes, map }
    }

    /// Whether `node` has exactly this scope (the parser shares the namespace nodes of an
    /// element that declares nothing with its parent).
    fn is_scope_of(&self, node: Node<'a, 'i>) -> bool {
        let mut theirs = node.namespaces();
        theirs.len() == self.nodes.len()
            && self
                .nodes
                .iter()
                .all(|ours| theirs.next().is_some_and(|t| std::ptr::eq(*ours, t)))
    }

    fn uri(&self, prefix: &str) -> Option<&'a str> {
        self.map
            .binary_search_by(|(p, _)| (*p).cmp(prefix))
            .ok()
            .and_then(|i| self.map.get(i))
            .map(|(_, uri)| *uri)
    }
}

/// One open element of the walk.
struct Open<'a> {
    qname: &'a str,
    /// Index of its scope in the scope stack.
    scope: usize,
    /// Whether it pushed that scope (and pops it when closed).
    own_scope: bool,
    /// How many namespace declarations it rendered (popped from `rendered` when closed).
    rendered: Vec<&'a str>,
}

/// Canonicalizes `apex` and its descendants, leaving out the subtree `exclude` (if any).
/// `inclusive` lists the prefixes of the `InclusiveNamespaces PrefixList`, with `""` for
/// `#default`; at most [`MAX_INCLUSIVE_PREFIXES`], each in scope at some element of the output
/// (or `#default`).
///
/// The walk is iterative (no recursion however deep the document), resolves prefixes through
/// a per-element map, and refuses output beyond a multiple of the apex's source size.
pub(crate) fn canonicalize<'a, 'i: 'a>(
    apex: Node<'a, 'i>,
    exclude: Option<NodeId>,
    inclusive: &'a [String],
) -> Result<Vec<u8>, SamlError> {
    if inclusive.len() > MAX_INCLUSIVE_PREFIXES {
        return Err(SamlError::PrefixListTooLong {
            count: inclusive.len(),
            max: MAX_INCLUSIVE_PREFIXES,
        });
    }
    let source_len = apex.range().len();
    let max_out = source_len
        .saturating_mul(EXPANSION_FACTOR)
        .saturating_add(EXPANSION_SLACK);
    let mut out = Vec::with_capacity(source_len);
    // An inclusive prefix must resolve somewhere; `#default` and `xml` always do.
    let mut found: Vec<bool> = inclusive
        .iter()
        .map(|p| p.is_empty() || p == "xml")
        .collect();
    let mut scopes: Vec<Scope<'a, 'i>> = Vec::new();
    let mut open: Vec<Open<'a>> = Vec::new();
    // Namespace declarations in effect in the output: prefix -> stack of URIs.
    let mut rendered: HashMap<&'a str, Vec<&'a str>> = HashMap::new();
    // Depth first without recursion: `node` is opened, then its first child, else its next
    // sibling, else the nearest ancestor's next sibling after closing the ancestors.
    let mut node = apex;
    'walk: loop {
        let mut descend = false;
        if Some(node.id()) == exclude {
            // The enveloped signature: left out with its subtree.
        } else if node.is_element() {
            let reuse = scopes.last().is_some_and(|s| s.is_scope_of(node));
            if !reuse {
                scopes.push(Scope::of(node));
            }
            let scope_index = scopes.len().saturating_sub(1);
            let scope = scopes.get(scope_index).ok_or_else(|| SamlError::Xml {
                reason: "namespace scope missing".into(),
            })?;
            let (qname, pushed) =
                start_tag(node, scope, inclusive, &mut found, &mut rendered, &mut out)?;
            open.push(Open {
                qname,
                scope: scope_index,
                own_scope: !reuse,
                rendered: pushed,
            });
            descend = true;
        } else if node.is_text() {
            escape_text(node.text().unwrap_or(""), &mut out);
        }
        // Comments and processing instructions: not in the "without comments" output.
        if out.len() > max_out {
            return Err(SamlError::CanonicalTooLarge { max: max_out });
        }
        if descend {
            if let Some(child) = node.first_child() {
                node = child;
                continue 'walk;
            }
            close(&mut open, &mut scopes, &mut rendered, &mut out)?;
        }
        loop {
            if node == apex {
                break 'walk;
            }
            if let Some(sibling) = node.next_sibling() {
                node = sibling;
                continue 'walk;
            }
            node = node.parent().ok_or_else(|| SamlError::Xml {
                reason: "unbalanced element".into(),
            })?;
            close(&mut open, &mut scopes, &mut rendered, &mut out)?;
        }
    }
    if found.iter().any(|f| !f) {
        return Err(SamlError::PrefixNotInScope);
    }
    Ok(out)
}

/// Writes the end tag of the innermost open element and forgets what it declared.
fn close<'a>(
    open: &mut Vec<Open<'a>>,
    scopes: &mut Vec<Scope<'a, '_>>,
    rendered: &mut HashMap<&'a str, Vec<&'a str>>,
    out: &mut Vec<u8>,
) -> Result<(), SamlError> {
    let element = open.pop().ok_or_else(|| SamlError::Xml {
        reason: "unbalanced element".into(),
    })?;
    out.extend_from_slice(b"</");
    out.extend_from_slice(element.qname.as_bytes());
    out.push(b'>');
    for prefix in element.rendered {
        if let Some(stack) = rendered.get_mut(prefix) {
            stack.pop();
        }
    }
    if element.own_scope && scopes.len() == element.scope.saturating_add(1) {
        scopes.pop();
    }
    Ok(())
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

/// Writes the start tag of `node`; returns its qualified name and the prefixes whose
/// declarations it rendered.
fn start_tag<'a, 'i: 'a>(
    node: Node<'a, 'i>,
    scope: &Scope<'a, 'i>,
    inclusive: &'a [String],
    found: &mut [bool],
    rendered: &mut HashMap<&'a str, Vec<&'a str>>,
    out: &mut Vec<u8>,
) -> Result<(&'a str, Vec<&'a str>), SamlError> {
    let text = node.document().input_text();
    let qname = element_qname(node)?;

    // The prefixes this element visibly utilizes: its own (`""` when unprefixed) and those of
    // its prefixed attributes; plus the inclusive prefixes, treated as in inclusive C14N.
    let mut attrs = Vec::new();
    let mut prefixes: Vec<&'a str> = vec![prefix_of(qname)];
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
    for (listed, seen) in inclusive.iter().zip(found.iter_mut()) {
        if !*seen && scope.uri(listed).is_some() {
            *seen = true;
        }
        prefixes.push(listed.as_str());
    }
    prefixes.sort_unstable();
    prefixes.dedup();

    // A namespace node is rendered when it is used (or inclusive) and not already in effect
    // with the same value in the nearest output ancestor. `xmlns=""` is emitted only to undo a
    // default namespace rendered above.
    let mut decls: Vec<(&'a str, &'a str)> = Vec::new();
    for prefix in prefixes {
        if prefix == "xml" {
            continue;
        }
        let uri = if prefix.is_empty() {
            scope.uri("").unwrap_or("")
        } else {
            match scope.uri(prefix) {
                Some(uri) => uri,
                // An inclusive prefix not in scope here renders nothing.
                None => continue,
            }
        };
        let in_effect = rendered.get(prefix).and_then(|s| s.last()).copied();
        let unchanged = if prefix.is_empty() {
            in_effect.unwrap_or("") == uri
        } else {
            in_effect == Some(uri)
        };
        if !unchanged {
            decls.push((prefix, uri));
        }
    }
    // `prefixes` was sorted, so `decls` is too.
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

    let mut pushed = Vec::with_capacity(decls.len());
    for (prefix, uri) in decls {
        rendered.entry(prefix).or_default().push(uri);
        pushed.push(prefix);
    }
    Ok((qname, pushed))
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
