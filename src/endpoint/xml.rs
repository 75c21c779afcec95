//! Writing EC2's responses: `<{Action}Response>` documents whose members
//! are the lowerCamel `locationName`s of botocore's `ec2` model, lists
//! as `<item>` elements.

use std::fmt::Display;

use crate::cloud::tags::Tags;

/// EC2's XML namespace for API version 2016-11-15.
pub const NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// `text` with `<`, `>`, `&`, `'` and `"` escaped.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// The body of a response, built element by element.
#[derive(Debug, Default)]
pub struct Xml(String);

impl Xml {
    pub fn new() -> Self {
        Self::default()
    }

    /// `<tag>value</tag>`.
    pub fn leaf(&mut self, tag: &str, value: impl Display) -> &mut Self {
        let value = value.to_string();
        self.0
            .push_str(&format!("<{tag}>{}</{tag}>", escape(&value)));
        self
    }

    /// `leaf` when there is a value.
    pub fn opt(&mut self, tag: &str, value: Option<impl Display>) -> &mut Self {
        if let Some(value) = value {
            self.leaf(tag, value);
        }
        self
    }

    /// `<tag>…</tag>` with what `inner` writes.
    pub fn node(&mut self, tag: &str, inner: impl FnOnce(&mut Xml)) -> &mut Self {
        self.0.push_str(&format!("<{tag}>"));
        inner(self);
        self.0.push_str(&format!("</{tag}>"));
        self
    }

    /// `<tag><item>…</item>…</tag>`, one item per element of `items`.
    pub fn list<T>(
        &mut self,
        tag: &str,
        items: impl IntoIterator<Item = T>,
        mut item: impl FnMut(&mut Xml, T),
    ) -> &mut Self {
        self.node(tag, |x| {
            for i in items {
                x.node("item", |x| item(x, i));
            }
        })
    }

    /// A resource's `tagSet`.
    pub fn tags(&mut self, tags: &Tags) -> &mut Self {
        self.list("tagSet", tags, |x, (k, v)| {
            x.leaf("key", k).leaf("value", v);
        })
    }

    /// The whole response document of `action`.
    pub fn document(&self, action: &str, request_id: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{NAMESPACE}\">\
             <requestId>{}</requestId>{}</{action}Response>",
            escape(request_id),
            self.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_items_and_text_is_escaped() {
        let mut x = Xml::new();
        let tags = Tags::from([("Name".to_owned(), "a<b>&c".to_owned())]);
        x.leaf("vpcId", "vpc-1")
            .tags(&tags)
            .opt("none", None::<&str>);
        let doc = x.document("DescribeVpcs", "req");
        assert_eq!(
            doc,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeVpcsResponse \
             xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>req</requestId>\
             <vpcId>vpc-1</vpcId><tagSet><item><key>Name</key><value>a&lt;b&gt;&amp;c</value>\
             </item></tagSet></DescribeVpcsResponse>"
        );
    }
}
