//! The structural check: walks a YAML tree against the JSON Schema generated from the raw types,
//! collecting every problem (unknown key, wrong type, bad value, missing key) with its position,
//! and builds the JSON value that the raw types then deserialize from.

use serde_json::{Map, Value};

use crate::yaml::{Kind, Node, Pos, Scalar};

/// One structural problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The path of keys to the offending value.
    pub path: Vec<String>,
    pub at: Pos,
    pub message: String,
    pub hint: Option<String>,
}

pub struct Checker<'a> {
    defs: &'a Map<String, Value>,
    pub problems: Vec<Problem>,
}

/// A dotted path for messages: `sources.klines.format`, `steps[1].on_error`.
pub fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if seg.parse::<usize>().is_ok() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

fn within(path: &[String]) -> String {
    if path.is_empty() { "at the top level".into() } else { format!("in `{}`", display_path(path)) }
}

fn subject(path: &[String]) -> String {
    if path.is_empty() { "the document".into() } else { format!("`{}`", display_path(path)) }
}

impl<'a> Checker<'a> {
    pub fn new(root_schema: &'a Value) -> Self {
        let defs = root_schema.get("$defs").and_then(Value::as_object).unwrap_or_else(|| empty_map());
        Checker { defs, problems: Vec::new() }
    }

    fn problem(&mut self, path: &[String], at: Pos, message: String, hint: Option<String>) {
        self.problems.push(Problem { path: path.to_vec(), at, message, hint });
    }

    fn deref(&self, schema: &'a Value) -> &'a Value {
        let mut s = schema;
        while let Some(r) = s.get("$ref").and_then(Value::as_str) {
            match r.strip_prefix("#/$defs/").and_then(|n| self.defs.get(n)) {
                Some(d) => s = d,
                None => break,
            }
        }
        s
    }

    /// Check `node` against `schema`; returns the JSON value (best effort when there are problems).
    pub fn check(&mut self, node: &Node, schema: &'a Value, path: &mut Vec<String>) -> Value {
        let schema = self.deref(schema);
        if schema.as_bool() == Some(true) || schema.as_object().is_some_and(|o| o.is_empty()) {
            return node.to_json();
        }
        if let Some(branches) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
            return self.check_alternatives(node, branches, path);
        }
        if let Some(c) = schema.get("const") {
            return self.check_enum(node, std::slice::from_ref(c), path);
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            return self.check_enum(node, values, path);
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return node.to_json(),
        };
        match (&node.kind, types.as_slice()) {
            (Kind::Scalar(Scalar::Null, _), ts) if ts.contains(&"null") => Value::Null,
            (Kind::Map(_), ts) if ts.contains(&"object") => self.check_object(node, schema, path),
            (Kind::Seq(items), ts) if ts.contains(&"array") => {
                let items_schema = schema.get("items").unwrap_or(&Value::Bool(true));
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.push(i.to_string());
                    out.push(self.check(item, items_schema, path));
                    path.pop();
                }
                Value::Array(out)
            }
            (Kind::Scalar(Scalar::Bool(b), _), ts) if ts.contains(&"boolean") => Value::Bool(*b),
            (Kind::Scalar(Scalar::Int(i), _), ts) if ts.contains(&"integer") || ts.contains(&"number") => {
                let min = schema.get("minimum").and_then(Value::as_f64);
                let max = schema.get("maximum").and_then(Value::as_f64);
                if min.is_some_and(|m| (*i as f64) < m) || max.is_some_and(|m| (*i as f64) > m) {
                    let range = match (min, max) {
                        (Some(a), Some(b)) => format!("between {a} and {b}"),
                        (Some(a), None) => format!("at least {a}"),
                        (None, Some(b)) => format!("at most {b}"),
                        (None, None) => unreachable!(),
                    };
                    self.problem(path, node.start, format!("{} must be {range}, found {i}", subject(path)), None);
                }
                Value::from(*i)
            }
            (Kind::Scalar(Scalar::Float(f), _), ts) if ts.contains(&"number") => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            (Kind::Scalar(Scalar::Str(s), _), ts) if ts.contains(&"string") => Value::String(s.clone()),
            // A plain `5` or `true` where text is expected is the text as written.
            (Kind::Scalar(Scalar::Int(_) | Scalar::Float(_) | Scalar::Bool(_), text), ts) if ts.contains(&"string") => {
                Value::String(text.clone())
            }
            _ => {
                let wanted: Vec<String> =
                    types.iter().filter(|t| **t != "null").map(|t| describe_type(t, schema)).collect();
                self.problem(
                    path,
                    node.start,
                    format!("{}: expected {}, found {}", subject(path), wanted.join(" or "), node.describe()),
                    None,
                );
                Value::Null
            }
        }
    }

    fn check_enum(&mut self, node: &Node, values: &[Value], path: &[String]) -> Value {
        let v = node.to_json();
        if values.contains(&v) {
            return v;
        }
        let names: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
        let list = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        let hint = node.as_str().and_then(|s| closest(s, &names)).map(|c| format!("did you mean `{c}`?"));
        let found = match &node.kind {
            Kind::Scalar(_, t) => format!("`{t}`"),
            _ => node.describe(),
        };
        self.problem(path, node.start, format!("{}: {found} is not one of {list}", subject(path)), hint);
        Value::Null
    }

    fn check_alternatives(&mut self, node: &Node, branches: &'a [Value], path: &mut Vec<String>) -> Value {
        let mut tried = Vec::new();
        for b in branches {
            let mut sub = Checker { defs: self.defs, problems: Vec::new() };
            let v = sub.check(node, b, path);
            if sub.problems.is_empty() {
                return v;
            }
            tried.push((b, sub.problems));
        }
        // All enum-like: one message listing every allowed value.
        let non_null: Vec<&Value> =
            branches.iter().filter(|b| self.deref(b).get("type") != Some(&"null".into())).collect();
        let enums: Option<Vec<Vec<Value>>> = non_null.iter().map(|b| self.enum_values(b)).collect();
        if let Some(values) = enums {
            return self.check_enum(node, &values.concat(), path);
        }
        // The branch whose type matches what was written explains the problem best.
        let kind = json_kind(node);
        if let Some((_, problems)) = tried.iter().find(|(b, _)| schema_accepts_kind(self.deref(b), kind, self.defs)) {
            self.problems.extend(problems.iter().cloned());
            return Value::Null;
        }
        let wanted: Vec<String> = non_null
            .iter()
            .map(|b| {
                let b = self.deref(b);
                let t = b.get("type").and_then(Value::as_str).unwrap_or("value");
                describe_type(t, b)
            })
            .collect();
        self.problem(
            path,
            node.start,
            format!("{}: expected {}, found {}", subject(path), wanted.join(" or "), node.describe()),
            None,
        );
        Value::Null
    }

    /// The allowed values of an enum-like schema (`const`, `enum`, or alternatives of those).
    fn enum_values(&self, schema: &Value) -> Option<Vec<Value>> {
        let schema = self.deref(schema);
        if let Some(c) = schema.get("const") {
            return Some(vec![c.clone()]);
        }
        if let Some(Value::Array(values)) = schema.get("enum") {
            return Some(values.clone());
        }
        let branches = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array)?;
        let all: Option<Vec<Vec<Value>>> = branches.iter().map(|b| self.enum_values(b)).collect();
        all.map(|v| v.concat())
    }

    fn check_object(&mut self, node: &Node, schema: &'a Value, path: &mut Vec<String>) -> Value {
        let Kind::Map(entries) = &node.kind else { unreachable!() };
        let props = schema.get("properties").and_then(Value::as_object).unwrap_or_else(|| empty_map());
        let additional = schema.get("additionalProperties");
        let mut out = Map::new();
        for (k, v) in entries {
            let Some(key) = k.as_str().map(str::to_string) else {
                self.problem(
                    path,
                    k.start,
                    format!("{}: keys must be text, found {}", subject(path), k.describe()),
                    None,
                );
                continue;
            };
            if out.contains_key(&key) {
                self.problem(&child(path, &key), k.start, format!("duplicate key `{key}` {}", within(path)), None);
                continue;
            }
            let child_schema = match (props.get(&key), additional) {
                (Some(s), _) => s,
                (None, Some(Value::Bool(false))) => {
                    let names: Vec<&str> = props.keys().map(String::as_str).collect();
                    let hint = match closest(&key, &names) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!("valid keys here: {}", names.join(", ")),
                    };
                    self.problem(
                        &child(path, &key),
                        k.start,
                        format!("unknown key `{key}` {}", within(path)),
                        Some(hint),
                    );
                    continue;
                }
                (None, Some(s)) => s,
                (None, None) => &Value::Bool(true),
            };
            path.push(key.clone());
            let value = self.check(v, child_schema, path);
            path.pop();
            out.insert(key, value);
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for r in required.iter().filter_map(Value::as_str) {
                if !out.contains_key(r) && !entries.iter().any(|(k, _)| k.as_str() == Some(r)) {
                    let hint = props
                        .get(r)
                        .and_then(|s| s.get("description").or_else(|| self.deref(s).get("description")))
                        .and_then(Value::as_str)
                        .map(|d| format!("`{r}`: {}", d.lines().next().unwrap_or(d)));
                    self.problem(path, node.start, format!("missing required key `{r}` {}", within(path)), hint);
                }
            }
        }
        Value::Object(out)
    }
}

fn child(path: &[String], key: &str) -> Vec<String> {
    path.iter().cloned().chain([key.to_string()]).collect()
}

fn empty_map() -> &'static Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

fn json_kind(node: &Node) -> &'static str {
    match &node.kind {
        Kind::Map(_) => "object",
        Kind::Seq(_) => "array",
        Kind::Scalar(Scalar::Null, _) => "null",
        Kind::Scalar(Scalar::Bool(_), _) => "boolean",
        Kind::Scalar(Scalar::Int(_), _) => "integer",
        Kind::Scalar(Scalar::Float(_), _) => "number",
        Kind::Scalar(Scalar::Str(_), _) => "string",
    }
}

fn schema_accepts_kind(schema: &Value, kind: &str, defs: &Map<String, Value>) -> bool {
    let schema = match schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(n) => defs.get(n).unwrap_or(schema),
        None => schema,
    };
    // Nested alternatives (an untagged enum): any branch that takes this kind.
    if let Some(branches) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
        return branches.iter().any(|b| schema_accepts_kind(b, kind, defs));
    }
    let matches = |t: &str| t == kind || (t == "number" && kind == "integer");
    match schema.get("type") {
        Some(Value::String(t)) => matches(t),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).any(matches),
        _ => false,
    }
}

fn describe_type(t: &str, schema: &Value) -> String {
    match t {
        "object" => "a mapping".into(),
        "array" => "a list".into(),
        "string" => "text".into(),
        "boolean" => "`true` or `false`".into(),
        "integer" if schema.get("minimum").and_then(Value::as_f64) == Some(0.0) => "a whole number (0 or more)".into(),
        "integer" => "a whole number".into(),
        "number" => "a number".into(),
        other => other.to_string(),
    }
}

pub(crate) use sluice_core::hint::closest;
