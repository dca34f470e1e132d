//! Listing renderings, byte-compatible with Swift: JSON as Python's `json.dumps` writes it
//! (`", "` / `": "` separators, non-ASCII escaped as `\uXXXX`, Swift's key order), XML as
//! ElementTree's `tostring` (listing_formats.py), plain as one name per line.

use std::fmt::Write;

use crate::account::ContainerEntry;
use crate::container::ObjectEntry;
use crate::list::Listed;

/// A JSON string literal as Python's `json.dumps` (ensure_ascii) writes it.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7f => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn xml_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

fn xml_attr(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#09;"),
            c => out.push(c),
        }
    }
}

/// `<tag>text</tag>`, or `<tag />` for empty text (ElementTree's short empty elements).
fn xml_elem(out: &mut String, tag: &str, text: &str) {
    if text.is_empty() {
        let _ = write!(out, "<{tag} />");
    } else {
        let _ = write!(out, "<{tag}>");
        xml_text(out, text);
        let _ = write!(out, "</{tag}>");
    }
}

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Container listing as JSON:
/// `[{"bytes": 1, "hash": "…", "name": "…", "content_type": "…", "last_modified": "…"}, {"subdir": "p/"}]`.
pub fn container_json(entries: &[Listed<ObjectEntry>]) -> String {
    let mut out = String::with_capacity(entries.len() * 160 + 2);
    out.push('[');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match e {
            Listed::Subdir(s) => {
                out.push_str("{\"subdir\": ");
                json_str(&mut out, s);
                out.push('}');
            }
            Listed::Item(o) => {
                let _ = write!(out, "{{\"bytes\": {}, \"hash\": ", o.bytes);
                json_str(&mut out, &o.hash);
                out.push_str(", \"name\": ");
                json_str(&mut out, &o.name);
                out.push_str(", \"content_type\": ");
                json_str(&mut out, &o.content_type);
                let _ = write!(
                    out,
                    ", \"last_modified\": \"{}\"}}",
                    o.last_modified.iso_listing()
                );
            }
        }
    }
    out.push(']');
    out
}

/// Container listing as XML (`container_to_xml`).
pub fn container_xml(container: &str, entries: &[Listed<ObjectEntry>]) -> String {
    let mut out = String::with_capacity(entries.len() * 200 + 80);
    out.push_str(XML_DECL);
    out.push_str("<container name=\"");
    xml_attr(&mut out, container);
    out.push('"');
    if entries.is_empty() {
        out.push_str(" />");
        return out;
    }
    out.push('>');
    for e in entries {
        match e {
            Listed::Subdir(s) => {
                out.push_str("<subdir name=\"");
                xml_attr(&mut out, s);
                out.push_str("\">");
                xml_elem(&mut out, "name", s);
                out.push_str("</subdir>");
            }
            Listed::Item(o) => {
                out.push_str("<object>");
                xml_elem(&mut out, "name", &o.name);
                xml_elem(&mut out, "hash", &o.hash);
                xml_elem(&mut out, "bytes", &o.bytes.to_string());
                xml_elem(&mut out, "content_type", &o.content_type);
                xml_elem(&mut out, "last_modified", &o.last_modified.iso_listing());
                out.push_str("</object>");
            }
        }
    }
    out.push_str("</container>");
    out
}

/// Account listing as JSON:
/// `[{"name": "c", "count": 3, "bytes": 1024, "last_modified": "…"}, {"subdir": "p/"}]`.
pub fn account_json(entries: &[Listed<ContainerEntry>]) -> String {
    let mut out = String::with_capacity(entries.len() * 100 + 2);
    out.push('[');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match e {
            Listed::Subdir(s) => {
                out.push_str("{\"subdir\": ");
                json_str(&mut out, s);
                out.push('}');
            }
            Listed::Item(c) => {
                out.push_str("{\"name\": ");
                json_str(&mut out, &c.name);
                let _ = write!(
                    out,
                    ", \"count\": {}, \"bytes\": {}, \"last_modified\": \"{}\"}}",
                    c.count,
                    c.bytes,
                    c.last_modified.iso_listing()
                );
            }
        }
    }
    out.push(']');
    out
}

/// Account listing as XML (`account_to_xml`: a newline after the root tag and after
/// every entry).
pub fn account_xml(account: &str, entries: &[Listed<ContainerEntry>]) -> String {
    let mut out = String::with_capacity(entries.len() * 150 + 80);
    out.push_str(XML_DECL);
    out.push_str("<account name=\"");
    xml_attr(&mut out, account);
    out.push_str("\">\n");
    for e in entries {
        match e {
            Listed::Subdir(s) => {
                out.push_str("<subdir name=\"");
                xml_attr(&mut out, s);
                out.push_str("\" />");
            }
            Listed::Item(c) => {
                out.push_str("<container>");
                xml_elem(&mut out, "name", &c.name);
                xml_elem(&mut out, "count", &c.count.to_string());
                xml_elem(&mut out, "bytes", &c.bytes.to_string());
                xml_elem(&mut out, "last_modified", &c.last_modified.iso_listing());
                out.push_str("</container>");
            }
        }
        out.push('\n');
    }
    out.push_str("</account>");
    out
}

/// Plain listing: one name (or subdir) per line, `\n` terminated.
pub fn plain<T>(entries: &[Listed<T>], item_name: impl Fn(&T) -> &str) -> String {
    let mut out = String::new();
    for e in entries {
        match e {
            Listed::Subdir(s) => out.push_str(s),
            Listed::Item(t) => out.push_str(item_name(t)),
        }
        out.push('\n');
    }
    out
}

/// Plain container listing.
pub fn container_plain(entries: &[Listed<ObjectEntry>]) -> String {
    plain(entries, |o| &o.name)
}

/// Plain account listing.
pub fn account_plain(entries: &[Listed<ContainerEntry>]) -> String {
    plain(entries, |c| &c.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_common::Timestamp;

    fn obj(name: &str) -> Listed<ObjectEntry> {
        Listed::Item(ObjectEntry {
            name: name.into(),
            hash: "d41d8cd98f00b204e9800998ecf8427e".into(),
            bytes: 3,
            content_type: "text/plain".into(),
            last_modified: Timestamp::parse("1700000000.12345").unwrap(),
        })
    }

    #[test]
    fn json_like_python() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\n\u{1}é😀\u{7f}/");
        assert_eq!(
            s,
            r#""a\"b\\c\n\u0001\u00e9\ud83d\ude00/""#.replace("/\"", "\u{7f}/\"")
        );
        let j = container_json(&[obj("x"), Listed::Subdir("p/".into())]);
        assert_eq!(
            j,
            "[{\"bytes\": 3, \"hash\": \"d41d8cd98f00b204e9800998ecf8427e\", \"name\": \"x\", \
             \"content_type\": \"text/plain\", \"last_modified\": \"2023-11-14T22:13:20.123450\"}, \
             {\"subdir\": \"p/\"}]"
        );
        assert_eq!(container_json(&[]), "[]");
    }

    #[test]
    fn xml_like_elementtree() {
        let x = container_xml("c&<", &[obj("a<b"), Listed::Subdir("p/".into())]);
        assert_eq!(
            x,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<container name=\"c&amp;&lt;\">\
             <object><name>a&lt;b</name><hash>d41d8cd98f00b204e9800998ecf8427e</hash>\
             <bytes>3</bytes><content_type>text/plain</content_type>\
             <last_modified>2023-11-14T22:13:20.123450</last_modified></object>\
             <subdir name=\"p/\"><name>p/</name></subdir></container>"
        );
        assert_eq!(
            container_xml("c", &[]),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<container name=\"c\" />"
        );
        let a = account_xml(
            "AUTH_x",
            &[
                Listed::Item(ContainerEntry {
                    name: "c1".into(),
                    count: 3,
                    bytes: 1024,
                    last_modified: Timestamp::parse("1700000000").unwrap(),
                }),
                Listed::Subdir("pre/".into()),
            ],
        );
        assert_eq!(
            a,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<account name=\"AUTH_x\">\n\
             <container><name>c1</name><count>3</count><bytes>1024</bytes>\
             <last_modified>2023-11-14T22:13:20.000000</last_modified></container>\n\
             <subdir name=\"pre/\" />\n</account>"
        );
    }

    #[test]
    fn plain_lines() {
        assert_eq!(
            container_plain(&[obj("a"), Listed::Subdir("p/".into())]),
            "a\np/\n"
        );
        assert_eq!(container_plain(&[]), "");
    }
}
