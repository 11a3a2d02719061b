//! A small XML writer: just what OAI-PMH responses need (elements, attributes, text), with
//! every value escaped in one place. Built by hand rather than with an XML crate because the
//! documents are flat and fixed in shape; the escaping is what matters, and it is tested.

/// Escapes text for element content and for attribute values (in double quotes).
/// Characters that XML 1.0 forbids outright (most C0 controls, U+FFFE, U+FFFF) cannot be
/// escaped at all, so they become U+FFFD: a harvester's parser would otherwise reject the
/// whole response because of one odd title.
pub fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Kept as character references so that attribute-value normalisation does not
            // turn them into spaces.
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape(s, &mut out);
    out
}

/// Writes a document into a string. Element names and attribute names are constants of
/// this module's callers; only values and text come from data, and both are escaped.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
    open: Vec<&'static str>,
}

impl Writer {
    pub fn new() -> Self {
        let mut w = Writer::default();
        w.out
            .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        w
    }

    /// A piece of a document, without the XML declaration, to be placed with [`Writer::raw`].
    pub fn fragment() -> Self {
        Writer::default()
    }

    /// Appends a fragment made by another writer of this module (already escaped).
    pub fn raw(&mut self, fragment: &str) -> &mut Self {
        self.out.push_str(fragment);
        self
    }

    /// Closes whatever is still open and returns the fragment.
    pub fn finish_fragment(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }

    fn start_tag(&mut self, name: &'static str, attrs: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attrs {
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape(v, &mut self.out);
            self.out.push('"');
        }
    }

    /// Opens an element; [`Writer::close`] ends it.
    pub fn open(&mut self, name: &'static str, attrs: &[(&str, &str)]) -> &mut Self {
        self.start_tag(name, attrs);
        self.out.push('>');
        self.open.push(name);
        self
    }

    pub fn close(&mut self) -> &mut Self {
        if let Some(name) = self.open.pop() {
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push('>');
        }
        self
    }

    /// An element holding only text.
    pub fn text(&mut self, name: &'static str, attrs: &[(&str, &str)], text: &str) -> &mut Self {
        self.start_tag(name, attrs);
        self.out.push('>');
        escape(text, &mut self.out);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// An element with no content.
    pub fn empty(&mut self, name: &'static str, attrs: &[(&str, &str)]) -> &mut Self {
        self.start_tag(name, attrs);
        self.out.push_str("/>");
        self
    }

    /// Closes whatever is still open and returns the document.
    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out.push('\n');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_controls() {
        assert_eq!(
            escaped(r#"<a href="x">Tom & Jerry's</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&apos;s&lt;/a&gt;"
        );
        assert_eq!(escaped("a\tb\nc\rd"), "a&#9;b&#10;c&#13;d");
        assert_eq!(escaped("nul\0bell\u{7}"), "nul\u{fffd}bell\u{fffd}");
        assert_eq!(escaped("\u{fffe}\u{ffff}"), "\u{fffd}\u{fffd}");
        assert_eq!(
            escaped("Délibérations — 1998 ]]>"),
            "Délibérations — 1998 ]]&gt;"
        );
        assert_eq!(escaped(""), "");
    }

    #[test]
    fn writes_nested_elements() {
        let mut w = Writer::new();
        w.open("a", &[("k", "v\"<")])
            .text("b", &[], "1 < 2")
            .empty("c", &[("x", "&")]);
        let doc = w.finish();
        assert_eq!(
            doc,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a k=\"v&quot;&lt;\"><b>1 &lt; 2</b><c x=\"&amp;\"/></a>\n"
        );
    }
}
