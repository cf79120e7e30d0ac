//! A linear pass over the raw text before the XML parser sees it, refusing the shapes whose
//! parsing or canonicalization costs more than linear time: nesting deeper than the depth cap,
//! too many attributes on one element, too many namespace declarations in scope.
//!
//! The XML parser resolves every prefix by a linear search through the declarations in scope,
//! copies the declarations in scope onto every element that declares one more, and checks each
//! attribute against the others of its element; all of that stays linear in the input once
//! these counts are bounded by constants.
//!
//! The pass understands every well-formed document (start, end and empty-element tags with
//! quoted attributes, text, CDATA sections, comments, processing instructions); markup it
//! cannot read is refused here as malformed, so nothing reaches the parser uncounted.

use crate::error::SamlError;

fn malformed(at: usize) -> SamlError {
    SamlError::Xml {
        reason: format!("malformed markup at byte {at}"),
    }
}

/// The most attributes (namespace declarations not included) one element may carry.
pub const MAX_ATTRIBUTES: usize = 16;
/// The most namespace declarations that may be in scope at any element, counted along the
/// path from the root (a redeclaration counts again).
pub const MAX_NAMESPACES: usize = 16;

/// Checks the limits on `text`; `max_depth` is the element nesting cap (the root is level 1).
pub(crate) fn prescan(text: &str, max_depth: usize) -> Result<(), SamlError> {
    let b = text.as_bytes();
    // Namespace declarations made by each open element.
    let mut open: Vec<usize> = Vec::new();
    let mut in_scope = 0usize;
    let mut i = 0usize;
    while let Some(start) = find_byte(b, i, b'<') {
        let after = start.saturating_add(1);
        match b.get(after) {
            Some(b'/') => {
                if let Some(declared) = open.pop() {
                    in_scope = in_scope.saturating_sub(declared);
                }
                let end = find_byte(b, after, b'>').ok_or_else(|| malformed(start))?;
                i = end.saturating_add(1);
            }
            Some(b'!') => {
                let rest = b.get(after..).unwrap_or_default();
                let terminator: &[u8] = if rest.starts_with(b"![CDATA[") {
                    b"]]>"
                } else if rest.starts_with(b"!--") {
                    b"-->"
                } else if rest.starts_with(b"!DOCTYPE") {
                    return Err(SamlError::Dtd);
                } else {
                    return Err(malformed(start));
                };
                let end = find_seq(b, after, terminator).ok_or_else(|| malformed(start))?;
                i = end.saturating_add(terminator.len());
            }
            Some(b'?') => {
                let end = find_seq(b, after, b"?>").ok_or_else(|| malformed(start))?;
                i = end.saturating_add(2);
            }
            Some(_) => {
                let tag = start_tag(b, after).ok_or_else(|| malformed(start))?;
                // The root is level 1; `max_depth` levels are allowed.
                if open.len() >= max_depth {
                    return Err(SamlError::TooDeep { max: max_depth });
                }
                if tag.attributes > MAX_ATTRIBUTES {
                    return Err(SamlError::TooManyAttributes {
                        max: MAX_ATTRIBUTES,
                    });
                }
                let scope = in_scope.saturating_add(tag.declarations);
                if scope > MAX_NAMESPACES {
                    return Err(SamlError::TooManyNamespaces {
                        max: MAX_NAMESPACES,
                    });
                }
                if !tag.empty {
                    open.push(tag.declarations);
                    in_scope = scope;
                }
                i = tag.end;
            }
            None => return Err(malformed(start)),
        }
    }
    Ok(())
}

struct StartTag {
    attributes: usize,
    declarations: usize,
    empty: bool,
    /// Just past the closing `>`.
    end: usize,
}

/// Reads a start tag whose name begins at `i`; `None` when it is not well formed.
fn start_tag(b: &[u8], mut i: usize) -> Option<StartTag> {
    let is_space = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let name_end = |c: u8| is_space(c) || matches!(c, b'/' | b'>' | b'=');
    while b.get(i).is_some_and(|c| !name_end(*c)) {
        i = i.saturating_add(1);
    }
    let mut tag = StartTag {
        attributes: 0,
        declarations: 0,
        empty: false,
        end: 0,
    };
    loop {
        while b.get(i).copied().is_some_and(is_space) {
            i = i.saturating_add(1);
        }
        match b.get(i)? {
            b'>' => {
                tag.end = i.saturating_add(1);
                return Some(tag);
            }
            b'/' => {
                if b.get(i.saturating_add(1)) != Some(&b'>') {
                    return None;
                }
                tag.empty = true;
                tag.end = i.saturating_add(2);
                return Some(tag);
            }
            _ => {}
        }
        let name_start = i;
        while b.get(i).is_some_and(|c| !name_end(*c)) {
            i = i.saturating_add(1);
        }
        let name = b.get(name_start..i)?;
        if name.is_empty() {
            return None;
        }
        if name == b"xmlns" || name.starts_with(b"xmlns:") {
            tag.declarations = tag.declarations.saturating_add(1);
        } else {
            tag.attributes = tag.attributes.saturating_add(1);
        }
        while b.get(i).copied().is_some_and(is_space) {
            i = i.saturating_add(1);
        }
        if b.get(i) != Some(&b'=') {
            return None;
        }
        i = i.saturating_add(1);
        while b.get(i).copied().is_some_and(is_space) {
            i = i.saturating_add(1);
        }
        let quote = *b.get(i)?;
        if quote != b'"' && quote != b'\'' {
            return None;
        }
        let close = find_byte(b, i.saturating_add(1), quote)?;
        i = close.saturating_add(1);
    }
}

fn find_byte(b: &[u8], from: usize, needle: u8) -> Option<usize> {
    b.get(from..)?
        .iter()
        .position(|c| *c == needle)
        .map(|p| p.saturating_add(from))
}

fn find_seq(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p.saturating_add(from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_depth_attributes_and_namespaces() {
        let ok = "<?xml version='1.0'?><a xmlns='u' b='>' c=\"'\"><!-- <x> --><![CDATA[<y>]]><d/><e>t</e></a>";
        assert_eq!(prescan(ok, 2), Ok(()));
        assert_eq!(prescan(ok, 1), Err(SamlError::TooDeep { max: 1 }));
        assert_eq!(prescan("<a/>", 0), Err(SamlError::TooDeep { max: 0 }));
        let attrs = |n: usize| {
            let list: String = (0..n).map(|k| format!(" a{k}=''")).collect();
            format!("<r{list}/>")
        };
        assert_eq!(prescan(&attrs(MAX_ATTRIBUTES), 8), Ok(()));
        assert_eq!(
            prescan(&attrs(MAX_ATTRIBUTES + 1), 8),
            Err(SamlError::TooManyAttributes {
                max: MAX_ATTRIBUTES
            })
        );
        // Declarations add up along the path, and are released at the end tag.
        let half: String = (0..MAX_NAMESPACES / 2)
            .map(|k| format!(" xmlns:p{k}='u'"))
            .collect();
        let nested = format!("<a{half}><b{half}/><c{half}></c></a>");
        assert_eq!(prescan(&nested, 8), Ok(()));
        let deeper = format!("<a{half}><b{half}><c xmlns:z='u'/></b></a>");
        assert_eq!(
            prescan(&deeper, 8),
            Err(SamlError::TooManyNamespaces {
                max: MAX_NAMESPACES
            })
        );
        assert_eq!(prescan("<!DOCTYPE a><a/>", 8), Err(SamlError::Dtd));
        // Markup the pass cannot read is malformed.
        for bad in [
            "<a b></a>",
            "<a",
            "<a b=c/>",
            "<!x>",
            "<a><!-- </a>",
            "<",
            "<a/ >",
        ] {
            assert!(
                matches!(prescan(bad, 8), Err(SamlError::Xml { .. })),
                "{bad}"
            );
        }
    }
}
