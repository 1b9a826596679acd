//! The contact attributes a template names (`contact.attributes.KEY`, or
//! `contact.attributes["KEY"]`), each with its line and column, so that
//! `campaign check` can say which of them no contact has, and suggest the
//! nearest name that exists. A plain scan of the template's tags (`{{ }}`,
//! `{% %}`), not a parse: it also sees names inside `| default(...)` and in
//! branches that a render for the present contacts never takes. It must
//! not decide whether a template renders; the renderer does.

/// An attribute named in a text, and where (1-based line and column of the
/// name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeRef {
    pub name: String,
    pub line: usize,
    pub col: usize,
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Line and column (1-based, in characters) of byte `at` in `text`.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |n| n + 1);
    (line, before[start..].chars().count() + 1)
}

/// Every `contact.attributes.KEY` and `contact.attributes["KEY"]` inside
/// the template's tags, in order (repeats included).
pub fn template_refs(source: &str) -> Vec<AttributeRef> {
    const NEEDLE: &str = "contact.attributes";
    let mut out = Vec::new();
    let mut rest = 0;
    while let Some(open) = source[rest..].find(['{']).map(|i| rest + i) {
        let close = match source[open..].get(..2) {
            Some("{{") => "}}",
            Some("{%") => "%}",
            _ => {
                rest = open + 1;
                continue;
            }
        };
        let end = source[open + 2..]
            .find(close)
            .map_or(source.len(), |i| open + 2 + i);
        let tag = &source[open..end];
        let mut from = 0;
        while let Some(i) = tag[from..].find(NEEDLE).map(|i| from + i) {
            from = i + NEEDLE.len();
            if tag[..i].chars().next_back().is_some_and(is_ident) {
                continue;
            }
            let after = &tag[from..];
            let (name, offset) = if let Some(a) = after.strip_prefix('.') {
                let n: String = a.chars().take_while(|c| is_ident(*c)).collect();
                (n, from + 1)
            } else if let Some(a) = after
                .strip_prefix("[\"")
                .or_else(|| after.strip_prefix("['"))
            {
                let n: String = a.chars().take_while(|c| *c != '"' && *c != '\'').collect();
                (n, from + 2)
            } else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            let (line, col) = line_col(source, open + offset);
            out.push(AttributeRef { name, line, col });
        }
        rest = end;
    }
    out
}

/// Every `attributes.KEY` a segment filter names, outside its string
/// literals, with its place in the filter's text. (The segment language's
/// syntax; here beside the template scan so `campaign check` and `segment`
/// ask the same way.)
pub fn filter_refs(source: &str) -> Vec<AttributeRef> {
    const NEEDLE: &str = "attributes.";
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut prev: Option<char> = None;
    for (i, c) in source.char_indices() {
        match quote {
            Some(q) if c == q && prev != Some('\\') => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if source[i..].starts_with(NEEDLE) && !prev.is_some_and(is_ident) => {
                let at = i + NEEDLE.len();
                let name: String = source[at..].chars().take_while(|c| is_ident(*c)).collect();
                if !name.is_empty() {
                    let (line, col) = line_col(source, at);
                    out.push(AttributeRef { name, line, col });
                }
            }
            None => {}
        }
        prev = Some(c);
    }
    out
}

/// The existing name nearest to `name`, if one is near enough to be a
/// likely typo (Jaro-Winkler similarity 0.8 or more, or one edit apart).
pub fn nearest<'a>(name: &str, existing: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    existing
        .into_iter()
        .map(|e| {
            let el = e.to_lowercase();
            let score = if strsim::levenshtein(&lower, &el) <= 1 {
                1.0
            } else {
                strsim::jaro_winkler(&lower, &el)
            };
            (e, score)
        })
        .filter(|(_, s)| *s >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(e, _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_attributes_in_tags_with_their_place() {
        let t = "<p>Hi</p>\n<p>{{ contact.attributes.city }} and\n  {{ contact.attributes.contry | default(value=\"ES\") }}</p>\n\
                 {% if contact.attributes['plan'] == \"pro\" %}x{% endif %} contact.attributes.prose";
        let refs = template_refs(t);
        let names: Vec<(&str, usize, usize)> = refs
            .iter()
            .map(|r| (r.name.as_str(), r.line, r.col))
            .collect();
        assert_eq!(
            names,
            vec![("city", 2, 26), ("contry", 3, 25), ("plan", 4, 27)]
        );
    }

    #[test]
    fn finds_attributes_in_filters_outside_strings() {
        let f = "attributes.contry == \"ES\" and \"attributes.x\" in tags or not attributes.vip";
        let names: Vec<(String, usize)> = filter_refs(f)
            .into_iter()
            .map(|r| (r.name, r.col))
            .collect();
        assert_eq!(names, vec![("contry".into(), 12), ("vip".into(), 72)]);
    }

    #[test]
    fn suggests_only_near_names() {
        let have = ["country", "city", "plan"];
        assert_eq!(nearest("contry", have), Some("country"));
        assert_eq!(nearest("Country", have), Some("country"));
        assert_eq!(nearest("citty", have), Some("city"));
        assert_eq!(nearest("birthday", have), None);
    }
}
