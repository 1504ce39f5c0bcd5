//! A YAML tree that keeps where every key and value was written (saphyr-parser events).
//!
//! Plain scalars are typed by the YAML 1.2 core schema (null, bool, int, float, else string);
//! quoted and block scalars are strings. Anchors and aliases are expanded.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A position in the file: 1-based line and column (in characters), and the character index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
    pub index: usize,
}

impl Pos {
    fn start(span: &Span) -> Pos {
        Pos { line: span.start.line(), column: span.start.col() + 1, index: span.start.index() }
    }
    fn end(span: &Span) -> Pos {
        Pos { line: span.end.line(), column: span.end.col() + 1, index: span.end.index() }
    }
}

/// A scalar after core-schema resolution.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// The resolved value, and the text as written (for messages and coercion to strings).
    Scalar(Scalar, String),
    Seq(Vec<Node>),
    /// Keys in file order; a key is a node too, so it has a position.
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub start: Pos,
    pub end: Pos,
}

/// A YAML syntax error.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub at: Pos,
    pub message: String,
}

impl Node {
    /// The child at one path segment: a mapping key, or a sequence index.
    pub fn get(&self, seg: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(seg)).map(|(_, v)| v),
            Kind::Seq(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            Kind::Scalar(..) => None,
        }
    }

    /// The key node of a mapping entry.
    pub fn key(&self, seg: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(seg)).map(|(k, _)| k),
            _ => None,
        }
    }

    /// A string scalar's value (a key, a name).
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(Scalar::Str(s), _) => Some(s),
            Kind::Scalar(_, t) => Some(t),
            _ => None,
        }
    }

    /// A short description of what was written, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Scalar(Scalar::Null, _) => "nothing (null)".into(),
            Kind::Scalar(Scalar::Str(s), _) => format!("the string `{s}`"),
            Kind::Scalar(Scalar::Bool(_), t) => format!("the boolean `{t}`"),
            Kind::Scalar(Scalar::Int(_) | Scalar::Float(_), t) => format!("the number `{t}`"),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
        }
    }

    /// The plain JSON value of this node (no schema).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Scalar(s, _) => match s {
                Scalar::Null => Value::Null,
                Scalar::Bool(b) => Value::Bool(*b),
                Scalar::Int(i) => Value::from(*i),
                Scalar::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
                Scalar::Str(s) => Value::String(s.clone()),
            },
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries.iter().map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.to_json())).collect(),
            ),
        }
    }
}

/// Parse every document of a YAML stream. An empty stream has no documents.
pub fn parse(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut docs = Vec::new();
    let mut stack: Vec<(Node, Option<usize>, Option<Node>)> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.map_err(|e| SyntaxError {
            at: Pos { line: e.marker().line(), column: e.marker().col() + 1, index: e.marker().index() },
            message: e.info().to_string(),
        })?;
        let done = match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let scalar = if style == ScalarStyle::Plain && !is_str_tag {
                    resolve_plain(&value)
                } else {
                    Scalar::Str(value.to_string())
                };
                let node = Node {
                    kind: Kind::Scalar(scalar, value.to_string()),
                    start: Pos::start(&span),
                    end: Pos::end(&span),
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            Event::Alias(id) => {
                let mut node = anchors.get(&id).cloned().ok_or_else(|| SyntaxError {
                    at: Pos::start(&span),
                    message: "alias to an unknown anchor".into(),
                })?;
                node.start = Pos::start(&span);
                node.end = Pos::end(&span);
                Some(node)
            }
            Event::SequenceStart(anchor, _) => {
                let n = Node { kind: Kind::Seq(Vec::new()), start: Pos::start(&span), end: Pos::end(&span) };
                stack.push((n, (anchor > 0).then_some(anchor), None));
                None
            }
            Event::MappingStart(anchor, _) => {
                let n = Node { kind: Kind::Map(Vec::new()), start: Pos::start(&span), end: Pos::end(&span) };
                stack.push((n, (anchor > 0).then_some(anchor), None));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (mut node, anchor, _) = stack.pop().expect("balanced events");
                node.end = Pos::end(&span);
                if let Some(a) = anchor {
                    anchors.insert(a, node.clone());
                }
                Some(node)
            }
            _ => None,
        };
        if let Some(node) = done {
            match stack.last_mut() {
                None => docs.push(node),
                Some((parent, _, pending_key)) => match &mut parent.kind {
                    Kind::Seq(items) => items.push(node),
                    Kind::Map(entries) => match pending_key.take() {
                        None => *pending_key = Some(node),
                        Some(k) => entries.push((k, node)),
                    },
                    Kind::Scalar(..) => unreachable!("scalars have no children"),
                },
            }
        }
    }
    Ok(docs)
}

/// YAML 1.2 core schema for plain scalars.
fn resolve_plain(s: &str) -> Scalar {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Scalar::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = s.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Scalar::Int(i);
    }
    if let Some(oct) = s.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Scalar::Int(i);
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && let Ok(i) = s.parse::<i64>()
    {
        return Scalar::Int(i);
    }
    let numeric = !digits.is_empty()
        && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && digits.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        && digits.chars().any(|c| c.is_ascii_digit());
    if numeric && let Ok(f) = s.parse::<f64>() {
        return Scalar::Float(f);
    }
    Scalar::Str(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_and_types() {
        let docs = parse("a: 1\nb:\n  - x\n  - 'y'\nc: {d: true, e: 2.5}\n---\nz: null\n").unwrap();
        assert_eq!(docs.len(), 2);
        let a = &docs[0];
        assert_eq!(a.get("a").unwrap().kind, Kind::Scalar(Scalar::Int(1), "1".into()));
        let b1 = a.get("b").unwrap().get("1").unwrap();
        assert_eq!((b1.start.line, b1.start.column), (4, 5));
        assert_eq!(b1.as_str(), Some("y"));
        let e = a.get("c").unwrap().get("e").unwrap();
        assert_eq!((e.start.line, e.start.column), (5, 17));
        assert_eq!(a.key("c").unwrap().start.line, 5);
        assert_eq!(docs[1].get("z").unwrap().kind, Kind::Scalar(Scalar::Null, "null".into()));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.at.line >= 1, "{e:?}");
    }
}
