//! A small expression language over columns, shared by `filter` and `derive`.
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | cmp
//! cmp     := sum (("=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=") sum
//!                | "is" ["not"] "null" | ["not"] "in" "(" literal ("," literal)* ")")?
//! sum     := product (("+" | "-") product)*
//! product := unary (("*" | "/" | "%") unary)*
//! unary   := "-" unary | primary
//! primary := number | 'string' | true | false | null | column | "quoted column"
//!          | function "(" [expr ("," expr)*] ")" | "(" expr ")"
//! ```
//!
//! Functions: `lower`, `upper`, `trim`, `length`, `concat` (skips nulls), `abs`,
//! `round` (one or two arguments), `coalesce`, and the date and time functions of
//! [`crate::temporal`]. Typed literals: `date '2024-01-31'`, `timestamp '2024-01-31 12:00'`,
//! `interval '90 minutes'` (also `interval 90 minutes`). Keywords are case-insensitive.
//!
//! Expressions are parsed at construction ([`parse`]; errors carry the byte
//! offset), type-checked against the input schema ([`Expr::check`]) and
//! evaluated column-wise with arrow-arith and arrow-ord kernels ([`Expr::eval`]).

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_arith::boolean;
use sluice_plugin::arrow_array::builder::StringBuilder;
use sluice_plugin::arrow_array::types::{Float64Type, Int64Type};
use sluice_plugin::arrow_array::{Datum, Float64Array, Int64Array, new_null_array};
use sluice_plugin::arrow_select;
use sluice_plugin::prelude::*;

use crate::cal::{Interval, Part};
use crate::num::{is_integer_like, to_f64, to_i64};
use crate::temporal;
use crate::time::Unit;

/// A syntax or type error at byte offset `pos` of the expression.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub pos: usize,
    pub msg: String,
}

impl ExprError {
    pub(crate) fn new(pos: usize, msg: impl Into<String>) -> Self {
        ExprError { pos, msg: msg.into() }
    }

    /// A config error on `key` whose message points into `src` (1-based column and a caret).
    pub fn config(&self, src: &str, key: &str) -> Error {
        let col = src[..self.pos.min(src.len())].chars().count();
        Error::config(format!(
            "{} at column {} of the expression\n    {src}\n    {}^",
            self.msg,
            col + 1,
            " ".repeat(col)
        ))
        .key(key)
    }
}

/// The language's types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Int,
    Float,
    Str,
    Bool,
    Null,
    /// Date32 (days).
    Date,
    /// A timestamp in its column's unit.
    Ts(Unit),
    /// Only as a literal (`interval '1 day'`).
    Interval,
}

impl Ty {
    /// The language type of an Arrow column type.
    pub fn of(t: &DataType) -> Option<Ty> {
        Some(match t {
            DataType::Boolean => Ty::Bool,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ty::Str,
            DataType::Dictionary(_, v) if Ty::of(v) == Some(Ty::Str) => Ty::Str,
            DataType::Null => Ty::Null,
            DataType::Date32 => Ty::Date,
            DataType::Date64 => Ty::Ts(Unit::Ms),
            DataType::Timestamp(u, _) => Ty::Ts(Unit::of(*u)),
            DataType::Interval(sluice_plugin::arrow_schema::IntervalUnit::MonthDayNano) => Ty::Interval,
            t if t.is_floating() || matches!(t, DataType::Decimal128(_, _)) => Ty::Float,
            t if is_integer_like(t) => Ty::Int,
            _ => return None,
        })
    }

    /// The Arrow type of values of this type.
    pub fn arrow(self) -> DataType {
        match self {
            Ty::Int => DataType::Int64,
            Ty::Float => DataType::Float64,
            Ty::Str => DataType::Utf8,
            Ty::Bool => DataType::Boolean,
            Ty::Null => DataType::Null,
            Ty::Date => DataType::Date32,
            Ty::Ts(u) => DataType::Timestamp(u.arrow(), None),
            Ty::Interval => DataType::Interval(sluice_plugin::arrow_schema::IntervalUnit::MonthDayNano),
        }
    }

    fn numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Float | Ty::Null)
    }

    /// The name with its article: `an integer`, `a date`.
    pub(crate) fn a(self) -> String {
        let n = self.name();
        if n.starts_with(['a', 'e', 'i', 'o', 'u']) { format!("an {n}") } else { format!("a {n}") }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Ty::Int => "integer",
            Ty::Float => "float",
            Ty::Str => "string",
            Ty::Bool => "boolean",
            Ty::Null => "null",
            Ty::Date => "date",
            Ty::Ts(_) => "timestamp",
            Ty::Interval => "interval",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Lower,
    Upper,
    Trim,
    Length,
    Concat,
    Abs,
    Round,
    Coalesce,
    /// `year(t)`, `month(t)`, ... (optionally in a time zone).
    Part(Part),
    DateTrunc,
    DateDiff,
    Strftime,
    Strptime,
    TryStrptime,
    Date,
    MakeDate,
    Epoch,
    EpochMs,
    ToTimestamp,
}

impl Func {
    /// A date and time function, checked and evaluated by [`crate::temporal`].
    pub fn is_temporal(self) -> bool {
        !matches!(
            self,
            Func::Lower
                | Func::Upper
                | Func::Trim
                | Func::Length
                | Func::Concat
                | Func::Abs
                | Func::Round
                | Func::Coalesce
        )
    }
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    Date(i32),
    /// Microseconds.
    Ts(i64),
    Interval(Interval),
}

impl Lit {
    fn ty(&self) -> Ty {
        match self {
            Lit::Int(_) => Ty::Int,
            Lit::Float(_) => Ty::Float,
            Lit::Str(_) => Ty::Str,
            Lit::Bool(_) => Ty::Bool,
            Lit::Null => Ty::Null,
            Lit::Date(_) => Ty::Date,
            Lit::Ts(_) => Ty::Ts(Unit::Us),
            Lit::Interval(_) => Ty::Interval,
        }
    }

    fn array(&self) -> ArrayRef {
        match self {
            Lit::Int(v) => Arc::new(Int64Array::from(vec![*v])),
            Lit::Float(v) => Arc::new(Float64Array::from(vec![*v])),
            Lit::Str(v) => Arc::new(StringArray::from(vec![v.as_str()])),
            Lit::Bool(v) => Arc::new(BooleanArray::from(vec![*v])),
            Lit::Null => new_null_array(&DataType::Null, 1),
            Lit::Date(d) => Arc::new(sluice_plugin::arrow_array::Date32Array::from(vec![*d])),
            Lit::Ts(v) => temporal::ts_array(vec![*v], None, Unit::Us),
            Lit::Interval(i) => temporal::interval_array(*i),
        }
    }
}

/// A parsed expression node; `pos` is the byte offset where it starts (for
/// operators: where the operator is).
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub pos: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Col(String),
    Lit(Lit),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    IsNull { e: Box<Expr>, negated: bool },
    In { e: Box<Expr>, list: Vec<(usize, Lit)>, negated: bool },
    Call(Func, Vec<Expr>),
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Quoted(String),
    Int(i64),
    Float(f64),
    Str(String),
    Op(&'static str),
    End,
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, ExprError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((start, Tok::Ident(src[start..i].to_string())));
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let mut float = false;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                float |= b[i] == b'.';
                i += 1;
            }
            if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                float = true;
                i += 1;
                if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                    i += 1;
                }
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text = &src[start..i];
            let tok = if float {
                Tok::Float(text.parse().map_err(|_| ExprError::new(start, format!("bad number `{text}`")))?)
            } else {
                match text.parse() {
                    Ok(v) => Tok::Int(v),
                    Err(_) => Tok::Float(text.parse().map_err(|_| ExprError::new(start, "bad number"))?),
                }
            };
            out.push((start, tok));
        } else if c == b'\'' || c == b'"' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(ch) = src[i..].chars().next() else {
                    return Err(ExprError::new(start, "unterminated quote"));
                };
                i += ch.len_utf8();
                if ch as u32 == c as u32 {
                    if b.get(i) == Some(&c) {
                        s.push(ch);
                        i += 1;
                        continue;
                    }
                    break;
                }
                s.push(ch);
            }
            out.push((start, if c == b'\'' { Tok::Str(s) } else { Tok::Quoted(s) }));
        } else {
            let two = src.get(i..i + 2).unwrap_or("");
            let op: &'static str = match two {
                "<=" => "<=",
                ">=" => ">=",
                "!=" => "!=",
                "<>" => "!=",
                "==" => "=",
                _ => match c {
                    b'(' => "(",
                    b')' => ")",
                    b',' => ",",
                    b'+' => "+",
                    b'-' => "-",
                    b'*' => "*",
                    b'/' => "/",
                    b'%' => "%",
                    b'=' => "=",
                    b'<' => "<",
                    b'>' => ">",
                    _ => {
                        let ch = src[i..].chars().next().unwrap_or('?');
                        return Err(ExprError::new(i, format!("unexpected character `{ch}`")));
                    }
                },
            };
            i += if matches!(two, "<=" | ">=" | "!=" | "<>" | "==") { 2 } else { 1 };
            out.push((start, Tok::Op(op)));
        }
    }
    out.push((src.len(), Tok::End));
    Ok(out)
}

// ---------------------------------------------------------------- parser

struct Parser {
    toks: Vec<(usize, Tok)>,
    i: usize,
}

/// Parses an expression.
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let mut p = Parser { toks: lex(src)?, i: 0 };
    let e = p.or()?;
    match p.peek() {
        Tok::End => Ok(e),
        t => Err(ExprError::new(p.pos(), format!("unexpected {} after the expression", describe(t)))),
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Quoted(s) => format!("\"{s}\""),
        Tok::Int(v) => format!("`{v}`"),
        Tok::Float(v) => format!("`{v}`"),
        Tok::Str(s) => format!("'{s}'"),
        Tok::Op(o) => format!("`{o}`"),
        Tok::End => "end of expression".into(),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].1
    }
    fn pos(&self) -> usize {
        self.toks[self.i].0
    }
    fn bump(&mut self) -> (usize, Tok) {
        let t = self.toks[self.i].clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }
    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }
    fn op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }
    fn expect(&mut self, op: &str) -> Result<(), ExprError> {
        if self.op(op) {
            self.bump();
            Ok(())
        } else {
            Err(ExprError::new(self.pos(), format!("expected `{op}`, found {}", describe(self.peek()))))
        }
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut l = self.and()?;
        while self.keyword("or") {
            let pos = self.bump().0;
            let r = self.and()?;
            l = Expr { pos, kind: Kind::Bin(BinOp::Or, Box::new(l), Box::new(r)) };
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut l = self.not()?;
        while self.keyword("and") {
            let pos = self.bump().0;
            let r = self.not()?;
            l = Expr { pos, kind: Kind::Bin(BinOp::And, Box::new(l), Box::new(r)) };
        }
        Ok(l)
    }

    fn not(&mut self) -> Result<Expr, ExprError> {
        if self.keyword("not") {
            let pos = self.bump().0;
            let e = self.not()?;
            return Ok(Expr { pos, kind: Kind::Not(Box::new(e)) });
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, ExprError> {
        let l = self.sum()?;
        let pos = self.pos();
        let op = match self.peek() {
            Tok::Op("=") => Some(BinOp::Eq),
            Tok::Op("!=") => Some(BinOp::Ne),
            Tok::Op("<") => Some(BinOp::Lt),
            Tok::Op("<=") => Some(BinOp::Le),
            Tok::Op(">") => Some(BinOp::Gt),
            Tok::Op(">=") => Some(BinOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let r = self.sum()?;
            return Ok(Expr { pos, kind: Kind::Bin(op, Box::new(l), Box::new(r)) });
        }
        if self.keyword("is") {
            self.bump();
            let negated = self.keyword("not");
            if negated {
                self.bump();
            }
            if !self.keyword("null") {
                return Err(ExprError::new(self.pos(), format!("expected `null`, found {}", describe(self.peek()))));
            }
            self.bump();
            return Ok(Expr { pos, kind: Kind::IsNull { e: Box::new(l), negated } });
        }
        let negated = self.keyword("not");
        if negated {
            self.bump();
            if !self.keyword("in") {
                return Err(ExprError::new(self.pos(), format!("expected `in`, found {}", describe(self.peek()))));
            }
        }
        if self.keyword("in") {
            self.bump();
            self.expect("(")?;
            let mut list = Vec::new();
            loop {
                let p = self.pos();
                let neg = self.op("-");
                if neg {
                    self.bump();
                }
                let lit = match (self.bump().1, neg) {
                    (Tok::Int(v), n) => Lit::Int(if n { -v } else { v }),
                    (Tok::Float(v), n) => Lit::Float(if n { -v } else { v }),
                    (Tok::Str(s), false) => Lit::Str(s),
                    (Tok::Ident(s), false) if s.eq_ignore_ascii_case("true") => Lit::Bool(true),
                    (Tok::Ident(s), false) if s.eq_ignore_ascii_case("false") => Lit::Bool(false),
                    (t, _) => {
                        return Err(ExprError::new(
                            p,
                            format!("expected a literal in the list, found {}", describe(&t)),
                        ));
                    }
                };
                list.push((p, lit));
                if self.op(",") {
                    self.bump();
                    continue;
                }
                self.expect(")")?;
                break;
            }
            return Ok(Expr { pos, kind: Kind::In { e: Box::new(l), list, negated } });
        }
        Ok(l)
    }

    fn sum(&mut self) -> Result<Expr, ExprError> {
        let mut l = self.product()?;
        loop {
            let op = if self.op("+") {
                BinOp::Add
            } else if self.op("-") {
                BinOp::Sub
            } else {
                return Ok(l);
            };
            let pos = self.bump().0;
            let r = self.product()?;
            l = Expr { pos, kind: Kind::Bin(op, Box::new(l), Box::new(r)) };
        }
    }

    fn product(&mut self) -> Result<Expr, ExprError> {
        let mut l = self.unary()?;
        loop {
            let op = if self.op("*") {
                BinOp::Mul
            } else if self.op("/") {
                BinOp::Div
            } else if self.op("%") {
                BinOp::Rem
            } else {
                return Ok(l);
            };
            let pos = self.bump().0;
            let r = self.unary()?;
            l = Expr { pos, kind: Kind::Bin(op, Box::new(l), Box::new(r)) };
        }
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.op("-") {
            let pos = self.bump().0;
            let e = self.unary()?;
            return Ok(match e.kind {
                Kind::Lit(Lit::Int(v)) => Expr { pos, kind: Kind::Lit(Lit::Int(-v)) },
                Kind::Lit(Lit::Float(v)) => Expr { pos, kind: Kind::Lit(Lit::Float(-v)) },
                _ => Expr { pos, kind: Kind::Neg(Box::new(e)) },
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let (pos, tok) = self.bump();
        let kind = match tok {
            Tok::Int(v) => Kind::Lit(Lit::Int(v)),
            Tok::Float(v) => Kind::Lit(Lit::Float(v)),
            Tok::Str(s) => Kind::Lit(Lit::Str(s)),
            Tok::Quoted(s) => Kind::Col(s),
            Tok::Op("(") => {
                let e = self.or()?;
                self.expect(")")?;
                return Ok(e);
            }
            Tok::Ident(s) if self.op("(") => {
                let f = match s.to_ascii_lowercase().as_str() {
                    "lower" => Func::Lower,
                    "upper" => Func::Upper,
                    "trim" => Func::Trim,
                    "length" => Func::Length,
                    "concat" => Func::Concat,
                    "abs" => Func::Abs,
                    "round" => Func::Round,
                    "coalesce" => Func::Coalesce,
                    "now" | "current_date" | "current_timestamp" | "today" => {
                        return Err(ExprError::new(
                            pos,
                            format!(
                                "`{s}()` is not available: a step gives the same output for the same input, so it cannot read the clock; use a time column"
                            ),
                        ));
                    }
                    l => match temporal::func(l) {
                        Some(f) => f,
                        None => {
                            return Err(ExprError::new(
                                pos,
                                format!(
                                    "unknown function `{s}` (known: lower, upper, trim, length, concat, abs, round, coalesce, {})",
                                    temporal::NAMES
                                ),
                            ));
                        }
                    },
                };
                self.bump();
                let mut args = Vec::new();
                if !self.op(")") {
                    loop {
                        args.push(self.or()?);
                        if self.op(",") {
                            self.bump();
                        } else {
                            break;
                        }
                    }
                }
                self.expect(")")?;
                Kind::Call(f, args)
            }
            Tok::Ident(s) => match s.to_ascii_lowercase().as_str() {
                kw @ ("date" | "timestamp" | "interval") if matches!(self.peek(), Tok::Str(_)) => {
                    let (p, Tok::Str(text)) = self.bump() else { unreachable!() };
                    Kind::Lit(temporal::literal(kw, &text).map_err(|m| ExprError::new(p, m))?)
                }
                "interval" if matches!(self.peek(), Tok::Int(_)) => {
                    let (p, Tok::Int(n)) = self.bump() else { unreachable!() };
                    let unit = match self.bump() {
                        (_, Tok::Ident(u)) => u,
                        (q, t) => {
                            return Err(ExprError::new(
                                q,
                                format!("expected a unit such as `day`, found {}", describe(&t)),
                            ));
                        }
                    };
                    Kind::Lit(temporal::literal("interval", &format!("{n} {unit}")).map_err(|m| ExprError::new(p, m))?)
                }
                "true" => Kind::Lit(Lit::Bool(true)),
                "false" => Kind::Lit(Lit::Bool(false)),
                "null" => Kind::Lit(Lit::Null),
                "and" | "or" | "not" | "in" | "is" => {
                    return Err(ExprError::new(pos, format!("expected a value, found keyword `{s}`")));
                }
                _ => Kind::Col(s),
            },
            t => return Err(ExprError::new(pos, format!("expected a value, found {}", describe(&t)))),
        };
        Ok(Expr { pos, kind })
    }
}

// ---------------------------------------------------------------- types

impl Expr {
    /// The column names the expression refers to, each once, in the order first written.
    pub fn columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out
    }

    fn collect_columns(&self, out: &mut Vec<String>) {
        match &self.kind {
            Kind::Col(name) => {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
            Kind::Lit(_) => {}
            Kind::Neg(e) | Kind::Not(e) | Kind::IsNull { e, .. } | Kind::In { e, .. } => e.collect_columns(out),
            Kind::Bin(_, l, r) => {
                l.collect_columns(out);
                r.collect_columns(out);
            }
            Kind::Call(_, args) => args.iter().for_each(|a| a.collect_columns(out)),
        }
    }

    /// The type of the expression over `schema`, or an error pointing at the offending node.
    pub fn check(&self, schema: &Schema) -> Result<Ty, ExprError> {
        let err = |msg: String| Err(ExprError::new(self.pos, msg));
        Ok(match &self.kind {
            Kind::Col(name) => {
                let f = match schema.field_with_name(name) {
                    Ok(f) => f,
                    Err(_) => return err(format!("unknown column `{name}`")),
                };
                match Ty::of(f.data_type()) {
                    Some(t) => t,
                    None => return err(format!("column `{name}` has unsupported type {}", f.data_type())),
                }
            }
            Kind::Lit(l) => l.ty(),
            Kind::Neg(e) => match e.check(schema)? {
                t if t.numeric() || t == Ty::Interval => t,
                t => return err(format!("cannot negate {}", t.a())),
            },
            Kind::Not(e) => match e.check(schema)? {
                Ty::Bool | Ty::Null => Ty::Bool,
                t => return err(format!("`not` needs a boolean, found {}", t.a())),
            },
            Kind::Bin(op, l, r) => {
                let (lt, rt) = (l.check(schema)?, r.check(schema)?);
                match op {
                    BinOp::And | BinOp::Or => {
                        for t in [lt, rt] {
                            if !matches!(t, Ty::Bool | Ty::Null) {
                                return err(format!("`and`/`or` need booleans, found {}", t.a()));
                            }
                        }
                        Ty::Bool
                    }
                    BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem if temporal_op(lt, rt) => {
                        return temporal::arith_type(*op, lt, rt, l, r).map_err(|m| ExprError::new(self.pos, m));
                    }
                    BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                        if !lt.numeric() || !rt.numeric() {
                            return err(format!("arithmetic needs numbers, found {} and {}", lt.name(), rt.name()));
                        }
                        if *op == BinOp::Div || lt == Ty::Float || rt == Ty::Float {
                            Ty::Float
                        } else if lt == Ty::Null && rt == Ty::Null {
                            Ty::Null
                        } else {
                            Ty::Int
                        }
                    }
                    _ if temporal_op(lt, rt) => {
                        temporal::check_compare(lt, rt, l, r)?;
                        Ty::Bool
                    }
                    _ => {
                        if !comparable(lt, rt) {
                            return err(format!("cannot compare {} with {}", lt.a(), rt.a()));
                        }
                        Ty::Bool
                    }
                }
            }
            Kind::IsNull { e, .. } => {
                e.check(schema)?;
                Ty::Bool
            }
            Kind::In { e, list, .. } => {
                let t = e.check(schema)?;
                if matches!(t, Ty::Date | Ty::Ts(_)) {
                    temporal::check_in(t, list)?;
                    return Ok(Ty::Bool);
                }
                for (pos, l) in list {
                    if !comparable(t, l.ty()) {
                        return Err(ExprError::new(*pos, format!("cannot compare {} with {}", t.a(), l.ty().a())));
                    }
                }
                Ty::Bool
            }
            Kind::Call(f, args) => {
                let tys = args.iter().map(|a| a.check(schema)).collect::<Result<Vec<_>, _>>()?;
                let arity = |lo: usize, hi: usize| -> Result<(), ExprError> {
                    if tys.len() < lo || tys.len() > hi {
                        Err(ExprError::new(
                            self.pos,
                            format!("{f:?} takes {lo}..={hi} arguments, found {}", tys.len()).to_lowercase(),
                        ))
                    } else {
                        Ok(())
                    }
                };
                if f.is_temporal() {
                    return temporal::check_call(*f, self.pos, args, &tys);
                }
                match f {
                    Func::Lower | Func::Upper | Func::Trim | Func::Length => {
                        arity(1, 1)?;
                        if !matches!(tys[0], Ty::Str | Ty::Null) {
                            return Err(ExprError::new(
                                args[0].pos,
                                format!("expected a string, found {}", tys[0].a()),
                            ));
                        }
                        if *f == Func::Length { Ty::Int } else { Ty::Str }
                    }
                    Func::Concat => {
                        arity(1, usize::MAX)?;
                        Ty::Str
                    }
                    Func::Abs | Func::Round => {
                        if *f == Func::Abs {
                            arity(1, 1)?
                        } else {
                            arity(1, 2)?
                        }
                        if !tys[0].numeric() {
                            return Err(ExprError::new(
                                args[0].pos,
                                format!("expected a number, found {}", tys[0].a()),
                            ));
                        }
                        if let Some(a) = args.get(1)
                            && !matches!(a.kind, Kind::Lit(Lit::Int(_)))
                        {
                            return Err(ExprError::new(a.pos, "the digits of round must be an integer literal"));
                        }
                        if *f == Func::Round { Ty::Float } else { tys[0] }
                    }
                    Func::Coalesce => {
                        arity(1, usize::MAX)?;
                        let mut t = Ty::Null;
                        for (a, &at) in args.iter().zip(&tys) {
                            t = match (t, at) {
                                (Ty::Null, x) | (x, Ty::Null) => x,
                                (Ty::Int, Ty::Float) | (Ty::Float, Ty::Int) => Ty::Float,
                                (x, y) if x == y => x,
                                (x, y) => {
                                    return Err(ExprError::new(a.pos, format!("coalesce of {} and {}", x.a(), y.a())));
                                }
                            };
                        }
                        t
                    }
                    _ => unreachable!("temporal functions are checked above"),
                }
            }
        })
    }
}

/// Whether a binary operation involves a date, timestamp or interval.
fn temporal_op(a: Ty, b: Ty) -> bool {
    matches!(a, Ty::Date | Ty::Ts(_) | Ty::Interval) || matches!(b, Ty::Date | Ty::Ts(_) | Ty::Interval)
}

fn comparable(a: Ty, b: Ty) -> bool {
    a == Ty::Null || b == Ty::Null || a == b || (a.numeric() && b.numeric())
}

// ---------------------------------------------------------------- evaluation

/// An evaluated value: an array of the batch's length, or a one-element scalar.
#[derive(Debug, Clone)]
pub struct Value {
    pub array: ArrayRef,
    pub scalar: bool,
}

impl Datum for Value {
    fn get(&self) -> (&dyn Array, bool) {
        (self.array.as_ref(), self.scalar)
    }
}

impl Value {
    fn arr(array: ArrayRef) -> Self {
        Value { array, scalar: false }
    }
    pub(crate) fn map(&self, array: ArrayRef) -> Self {
        Value { array, scalar: self.scalar }
    }
    /// A string (or null) value's array as Utf8.
    pub(crate) fn as_string_array(&self) -> StringArray {
        match self.array.data_type() {
            DataType::Utf8 => self.array.as_string::<i32>().clone(),
            _ => StringArray::new_null(self.array.len()),
        }
    }
    /// A numeric (or null) value's array as Float64.
    pub(crate) fn as_float64(&self) -> Float64Array {
        self.as_float().array.as_primitive::<Float64Type>().clone()
    }
    pub(crate) fn ty(&self) -> Ty {
        Ty::of(self.array.data_type()).unwrap_or(Ty::Null)
    }
    /// The value as a full array of `n` rows.
    pub fn into_array(self, n: usize) -> Result<ArrayRef, Error> {
        if !self.scalar {
            return Ok(self.array);
        }
        let idx = sluice_plugin::arrow_array::UInt32Array::from(vec![0u32; n]);
        Ok(arrow_select::take::take(self.array.as_ref(), &idx, None)?)
    }
    /// Index into the array for row `row`.
    #[inline]
    pub(crate) fn at(&self, row: usize) -> usize {
        if self.scalar { 0 } else { row }
    }
    fn as_float(&self) -> Value {
        match self.ty() {
            Ty::Float => self.clone(),
            Ty::Null => self.map(new_null_array(&DataType::Float64, self.array.len())),
            _ => self.map(Arc::new(to_f64(self.array.as_ref()).expect("numeric"))),
        }
    }
    fn as_type(&self, t: Ty) -> Value {
        match (self.ty(), t) {
            (a, b) if a == b => self.clone(),
            (_, Ty::Float) => self.as_float(),
            _ => self.map(new_null_array(&t.arrow(), self.array.len())),
        }
    }
}

/// A column normalized to the language's array types (Int64, Float64, Utf8, Boolean).
pub fn normalize_column(a: &ArrayRef) -> Result<ArrayRef, Error> {
    Ok(match a.data_type() {
        DataType::Int64
        | DataType::Float64
        | DataType::Utf8
        | DataType::Boolean
        | DataType::Null
        | DataType::Date32
        | DataType::Timestamp(_, None)
        | DataType::Interval(sluice_plugin::arrow_schema::IntervalUnit::MonthDayNano) => a.clone(),
        DataType::Timestamp(u, Some(_)) => temporal::ts_array(
            to_i64(a.as_ref()).expect("timestamp").values().to_vec(),
            a.nulls().cloned(),
            Unit::of(*u),
        ),
        DataType::Date64 => {
            temporal::ts_array(to_i64(a.as_ref()).expect("date64").values().to_vec(), a.nulls().cloned(), Unit::Ms)
        }
        DataType::LargeUtf8 => Arc::new(a.as_string::<i64>().iter().collect::<StringArray>()),
        DataType::Utf8View => Arc::new(a.as_string_view().iter().collect::<StringArray>()),
        DataType::Dictionary(_, _) => {
            let d = a.as_any_dictionary();
            let values = normalize_column(d.values())?;
            let keys = sluice_plugin::arrow_array::UInt32Array::from_iter(
                d.normalized_keys().into_iter().enumerate().map(|(i, k)| (!a.is_null(i)).then_some(k as u32)),
            );
            arrow_select::take::take(values.as_ref(), &keys, None)?
        }
        t if t.is_floating() || matches!(t, DataType::Decimal128(_, _)) => Arc::new(to_f64(a.as_ref()).expect("float")),
        t => match to_i64(a.as_ref()) {
            Some(v) => Arc::new(v),
            None => return Err(Error::data(format!("unsupported column type {t}"))),
        },
    })
}

/// The output length of a binary operation and the per-operand index of row `i`.
fn broadcast(a: &Value, b: &Value) -> usize {
    match (a.scalar, b.scalar) {
        (true, true) => 1,
        (false, _) => a.array.len(),
        (true, false) => b.array.len(),
    }
}

/// Validity of `a op b` per row (both operands non-null), or None when nothing is null.
fn both_valid(a: &Value, b: &Value, n: usize) -> Option<Vec<bool>> {
    if a.array.null_count() == 0 && b.array.null_count() == 0 {
        return None;
    }
    Some((0..n).map(|i| a.array.is_valid(a.at(i)) && b.array.is_valid(b.at(i))).collect())
}

/// Arithmetic on Int64 (checked) or Float64 operands, with scalar broadcasting.
fn arith(op: BinOp, a: &Value, b: &Value, t: Ty) -> Result<ArrayRef, String> {
    let n = broadcast(a, b);
    let valid = both_valid(a, b, n);
    let ok = |i: usize| valid.as_ref().is_none_or(|v| v[i]);
    let nulls = valid.clone().map(sluice_plugin::arrow_buffer::NullBuffer::from);
    if t == Ty::Int {
        let (x, y) = (a.array.as_primitive::<Int64Type>().values(), b.array.as_primitive::<Int64Type>().values());
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let (p, q) = (x[a.at(i)], y[b.at(i)]);
            let r = match op {
                BinOp::Add => p.checked_add(q),
                BinOp::Sub => p.checked_sub(q),
                BinOp::Mul => p.checked_mul(q),
                _ if q == 0 && ok(i) => return Err("division by zero".into()),
                _ => p.checked_rem(q).or(Some(0)),
            };
            match r {
                Some(r) => out.push(r),
                None if !ok(i) => out.push(0),
                None => return Err("integer overflow".into()),
            }
        }
        return Ok(Arc::new(Int64Array::new(out.into(), nulls)));
    }
    let (x, y) = (a.array.as_primitive::<Float64Type>().values(), b.array.as_primitive::<Float64Type>().values());
    let f: fn(f64, f64) -> f64 = match op {
        BinOp::Add => |p, q| p + q,
        BinOp::Sub => |p, q| p - q,
        BinOp::Mul => |p, q| p * q,
        BinOp::Div => |p, q| p / q,
        _ => |p, q| p % q,
    };
    let out: Vec<f64> = match (a.scalar, b.scalar) {
        (false, false) => x.iter().zip(y.iter()).map(|(p, q)| f(*p, *q)).collect(),
        (false, true) => x.iter().map(|p| f(*p, y[0])).collect(),
        (true, false) => y.iter().map(|q| f(x[0], *q)).collect(),
        (true, true) => vec![f(x[0], y[0])],
    };
    Ok(Arc::new(Float64Array::new(out.into(), nulls)))
}

/// A comparison of two operands of type `t`, with scalar broadcasting.
fn compare(op: BinOp, a: &Value, b: &Value, t: Ty) -> BooleanArray {
    use std::cmp::Ordering;
    let n = broadcast(a, b);
    let valid = both_valid(a, b, n);
    let test = |o: Ordering| match op {
        BinOp::Eq => o == Ordering::Equal,
        BinOp::Ne => o != Ordering::Equal,
        BinOp::Lt => o == Ordering::Less,
        BinOp::Le => o != Ordering::Greater,
        BinOp::Gt => o == Ordering::Greater,
        _ => o != Ordering::Less,
    };
    let values: Vec<bool> = match t {
        Ty::Int => {
            let (x, y) = (a.array.as_primitive::<Int64Type>().values(), b.array.as_primitive::<Int64Type>().values());
            (0..n).map(|i| test(x[a.at(i)].cmp(&y[b.at(i)]))).collect()
        }
        Ty::Float => {
            let (x, y) =
                (a.array.as_primitive::<Float64Type>().values(), b.array.as_primitive::<Float64Type>().values());
            (0..n).map(|i| test(x[a.at(i)].total_cmp(&y[b.at(i)]))).collect()
        }
        Ty::Str => {
            let (x, y) = (a.array.as_string::<i32>(), b.array.as_string::<i32>());
            (0..n).map(|i| test(x.value(a.at(i)).cmp(y.value(b.at(i))))).collect()
        }
        _ => {
            let (x, y) = (a.array.as_boolean(), b.array.as_boolean());
            (0..n).map(|i| test(x.value(a.at(i)).cmp(&y.value(b.at(i))))).collect()
        }
    };
    BooleanArray::new(values.into(), valid.map(sluice_plugin::arrow_buffer::NullBuffer::from))
}

fn with_nulls_of(out: Vec<bool>, src: &dyn Array, scalar_row: Option<usize>) -> BooleanArray {
    let _ = scalar_row;
    BooleanArray::new(out.into(), src.logical_nulls())
}

impl Expr {
    /// Evaluates the expression over `batch` (after a successful [`Expr::check`] against its schema).
    pub fn eval(&self, batch: &RecordBatch) -> Result<Value, Error> {
        Ok(match &self.kind {
            Kind::Col(name) => {
                let a = batch.column_by_name(name).ok_or_else(|| Error::data("column not found").column(name))?;
                Value::arr(normalize_column(a)?)
            }
            Kind::Lit(l) => Value { array: l.array(), scalar: true },
            Kind::Neg(e) => {
                let v = e.eval(batch)?;
                match v.ty() {
                    Ty::Null => v,
                    Ty::Interval => temporal::negate_interval(&v),
                    Ty::Int => {
                        let a = v.array.as_primitive::<Int64Type>();
                        let r = a.try_unary::<_, Int64Type, _>(|x| {
                            x.checked_neg().ok_or_else(|| {
                                sluice_plugin::arrow_schema::ArrowError::ComputeError("integer overflow".into())
                            })
                        });
                        let r =
                            r.map_err(|e| Error::data(format!("{e} (at column {} of the expression)", self.pos + 1)))?;
                        v.map(Arc::new(r))
                    }
                    _ => v.map(Arc::new(v.array.as_primitive::<Float64Type>().unary::<_, Float64Type>(|x| -x))),
                }
            }
            Kind::Not(e) => {
                let v = e.eval(batch)?.as_type(Ty::Bool);
                v.map(Arc::new(boolean::not(v.array.as_boolean())?))
            }
            Kind::IsNull { e, negated } => {
                let v = e.eval(batch)?;
                let r = if *negated {
                    boolean::is_not_null(v.array.as_ref())?
                } else {
                    boolean::is_null(v.array.as_ref())?
                };
                v.map(Arc::new(r))
            }
            Kind::Bin(op, l, r) => {
                let (a, b) = (l.eval(batch)?, r.eval(batch)?);
                let scalar = a.scalar && b.scalar;
                match op {
                    BinOp::And | BinOp::Or => {
                        let n = batch.num_rows();
                        let n = if scalar { 1 } else { n };
                        let a = if scalar { a.as_type(Ty::Bool).array } else { a.as_type(Ty::Bool).into_array(n)? };
                        let b = if scalar { b.as_type(Ty::Bool).array } else { b.as_type(Ty::Bool).into_array(n)? };
                        let r = if *op == BinOp::And {
                            boolean::and_kleene(a.as_boolean(), b.as_boolean())?
                        } else {
                            boolean::or_kleene(a.as_boolean(), b.as_boolean())?
                        };
                        Value { array: Arc::new(r), scalar }
                    }
                    BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem if temporal_op(a.ty(), b.ty()) => {
                        temporal::arith(*op, &a, &b, l, r, self.pos, batch.num_rows())?
                    }
                    _ if temporal_op(a.ty(), b.ty()) => {
                        let (a, b) = temporal::comparable(&a, &b)?;
                        Value { array: Arc::new(compare(*op, &a, &b, Ty::Int)), scalar }
                    }
                    BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                        let float = *op == BinOp::Div || a.ty() == Ty::Float || b.ty() == Ty::Float;
                        let t = if float { Ty::Float } else { Ty::Int };
                        let (a, b) = (a.as_type(t), b.as_type(t));
                        let r = arith(*op, &a, &b, t)
                            .map_err(|e| Error::data(format!("{e} (at column {} of the expression)", self.pos + 1)))?;
                        Value { array: r, scalar }
                    }
                    _ => {
                        let t = match (a.ty(), b.ty()) {
                            (Ty::Null, t) | (t, Ty::Null) => t,
                            (Ty::Int, Ty::Float) | (Ty::Float, Ty::Int) => Ty::Float,
                            (t, _) => t,
                        };
                        let t = if t == Ty::Null { Ty::Bool } else { t };
                        let (a, b) = (a.as_type(t), b.as_type(t));
                        let r = compare(*op, &a, &b, t);
                        Value { array: Arc::new(r), scalar }
                    }
                }
            }
            Kind::In { e, list, negated } => {
                let v = e.eval(batch)?;
                let arr = v.array.as_ref();
                let n = arr.len();
                let mut out = Vec::with_capacity(n);
                match v.ty() {
                    Ty::Str => {
                        let set: Vec<&str> = list
                            .iter()
                            .filter_map(|(_, l)| if let Lit::Str(s) = l { Some(s.as_str()) } else { None })
                            .collect();
                        let s = arr.as_string::<i32>();
                        out.extend((0..n).map(|i| set.contains(&s.value(i)) != *negated));
                    }
                    Ty::Int => {
                        let set: Vec<i64> = list
                            .iter()
                            .filter_map(|(_, l)| if let Lit::Int(v) = l { Some(*v) } else { None })
                            .collect();
                        let fl: Vec<f64> = list
                            .iter()
                            .filter_map(|(_, l)| if let Lit::Float(v) = l { Some(*v) } else { None })
                            .collect();
                        let p = arr.as_primitive::<Int64Type>().values();
                        out.extend(p.iter().map(|x| (set.contains(x) || fl.contains(&(*x as f64))) != *negated));
                    }
                    Ty::Float => {
                        let set: Vec<f64> = list
                            .iter()
                            .filter_map(|(_, l)| match l {
                                Lit::Float(v) => Some(*v),
                                Lit::Int(v) => Some(*v as f64),
                                _ => None,
                            })
                            .collect();
                        let p = arr.as_primitive::<Float64Type>().values();
                        out.extend(p.iter().map(|x| set.contains(x) != *negated));
                    }
                    Ty::Bool => {
                        let set: Vec<bool> = list
                            .iter()
                            .filter_map(|(_, l)| if let Lit::Bool(v) = l { Some(*v) } else { None })
                            .collect();
                        let b = arr.as_boolean();
                        out.extend((0..n).map(|i| set.contains(&b.value(i)) != *negated));
                    }
                    Ty::Date | Ty::Ts(_) => {
                        let set = temporal::in_list(v.ty(), list);
                        let p = to_i64(arr).expect("temporal");
                        out.extend(p.values().iter().map(|x| set.contains(x) != *negated));
                    }
                    Ty::Null | Ty::Interval => out.resize(n, false),
                }
                let r = if v.ty() == Ty::Null {
                    BooleanArray::new(out.into(), Some(vec![false; n].into()))
                } else {
                    with_nulls_of(out, arr, None)
                };
                v.map(Arc::new(r))
            }
            Kind::Call(f, args) => {
                let vals = args.iter().map(|a| a.eval(batch)).collect::<Result<Vec<_>, _>>()?;
                let scalar = vals.iter().all(|v| v.scalar);
                let n = if scalar { 1 } else { batch.num_rows() };
                if f.is_temporal() {
                    return temporal::eval_call(*f, self.pos, args, &vals, batch.num_rows());
                }
                match f {
                    Func::Lower | Func::Upper | Func::Trim | Func::Length => {
                        let v = vals[0].as_type(Ty::Str);
                        let s = v.array.as_string::<i32>();
                        if *f == Func::Length {
                            let r: Int64Array = s.iter().map(|x| x.map(|x| x.chars().count() as i64)).collect();
                            return Ok(v.map(Arc::new(r)));
                        }
                        let mut b = StringBuilder::with_capacity(s.len(), s.value_data().len());
                        for x in s.iter() {
                            match x {
                                None => b.append_null(),
                                Some(x) => {
                                    match f {
                                        Func::Lower if x.is_ascii() => {
                                            for c in x.bytes() {
                                                let _ = b.write_char(c.to_ascii_lowercase() as char);
                                            }
                                        }
                                        Func::Upper if x.is_ascii() => {
                                            for c in x.bytes() {
                                                let _ = b.write_char(c.to_ascii_uppercase() as char);
                                            }
                                        }
                                        Func::Lower => x.chars().flat_map(char::to_lowercase).for_each(|c| {
                                            let _ = b.write_char(c);
                                        }),
                                        Func::Upper => x.chars().flat_map(char::to_uppercase).for_each(|c| {
                                            let _ = b.write_char(c);
                                        }),
                                        _ => {
                                            let _ = b.write_str(x.trim());
                                        }
                                    }
                                    b.append_value("");
                                }
                            }
                        }
                        v.map(Arc::new(b.finish()))
                    }
                    Func::Concat => {
                        let mut b = StringBuilder::with_capacity(n, n * 8);
                        for row in 0..n {
                            for v in &vals {
                                let i = v.at(row);
                                let a = v.array.as_ref();
                                if a.is_null(i) {
                                    continue;
                                }
                                let _ = match v.ty() {
                                    Ty::Str => b.write_str(a.as_string::<i32>().value(i)),
                                    Ty::Int => write!(b, "{}", a.as_primitive::<Int64Type>().value(i)),
                                    Ty::Float => write!(b, "{}", a.as_primitive::<Float64Type>().value(i)),
                                    Ty::Bool => write!(b, "{}", a.as_boolean().value(i)),
                                    Ty::Date | Ty::Ts(_) => {
                                        temporal::write_value(v, i, &mut b);
                                        Ok(())
                                    }
                                    Ty::Null | Ty::Interval => Ok(()),
                                };
                            }
                            b.append_value("");
                        }
                        Value { array: Arc::new(b.finish()), scalar }
                    }
                    Func::Abs => {
                        let v = &vals[0];
                        match v.ty() {
                            Ty::Int => v.map(Arc::new(
                                v.array.as_primitive::<Int64Type>().unary::<_, Int64Type>(i64::wrapping_abs),
                            )),
                            Ty::Float => {
                                v.map(Arc::new(v.array.as_primitive::<Float64Type>().unary::<_, Float64Type>(f64::abs)))
                            }
                            _ => v.clone(),
                        }
                    }
                    Func::Round => {
                        let v = vals[0].as_float();
                        let digits = match args.get(1).map(|a| &a.kind) {
                            Some(Kind::Lit(Lit::Int(d))) => *d as i32,
                            _ => 0,
                        };
                        let m = 10f64.powi(digits);
                        v.map(Arc::new(
                            v.array.as_primitive::<Float64Type>().unary::<_, Float64Type>(|x| (x * m).round() / m),
                        ))
                    }
                    Func::Coalesce => {
                        let t = vals.iter().map(Value::ty).fold(Ty::Null, |t, x| match (t, x) {
                            (Ty::Null, x) => x,
                            (Ty::Int, Ty::Float) => Ty::Float,
                            (t, _) => t,
                        });
                        let mut acc = vals[0].as_type(t).into_array(n)?;
                        for v in &vals[1..] {
                            if acc.null_count() == 0 {
                                break;
                            }
                            let other = v.as_type(t).into_array(n)?;
                            let mask = boolean::is_not_null(acc.as_ref())?;
                            acc = arrow_select::zip::zip(&mask, &acc, &other)?;
                        }
                        Value { array: acc, scalar }
                    }
                    _ => unreachable!("temporal functions are evaluated above"),
                }
            }
        })
    }

    /// Evaluates a boolean expression to a full-length mask (nulls are false).
    pub fn eval_mask(&self, batch: &RecordBatch) -> Result<BooleanArray, Error> {
        let v = self.eval(batch)?.as_type(Ty::Bool).into_array(batch.num_rows())?;
        let b = v.as_boolean();
        Ok(match b.nulls() {
            None => b.clone(),
            Some(n) => BooleanArray::new(b.values() & n.inner(), None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new("close", DataType::Float64, true),
            Field::new("n", DataType::Int32, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("BTCUSDT"), Some("ethusdt "), None, Some("XRP")])),
                Arc::new(Float64Array::from(vec![Some(1.5), Some(-2.0), Some(3.0), None])),
                Arc::new(Int32Array::from(vec![Some(1), Some(2), None, Some(4)])),
            ],
        )
        .unwrap()
    }

    fn eval(src: &str) -> ArrayRef {
        let b = batch();
        let e = parse(src).unwrap();
        e.check(&b.schema()).unwrap();
        e.eval(&b).unwrap().into_array(b.num_rows()).unwrap()
    }

    fn bools(src: &str) -> Vec<Option<bool>> {
        eval(src).as_boolean().iter().collect()
    }

    #[test]
    fn columns_lists_each_reference_once() {
        let e = parse(r#"close > 0 and (lower(symbol) in ('a') or "n" is null) and -close < coalesce(n, 1)"#).unwrap();
        assert_eq!(e.columns(), ["close", "symbol", "n"]);
        assert!(parse("1 + 2 = 3").unwrap().columns().is_empty());
    }

    #[test]
    fn predicates() {
        assert_eq!(bools("close > 0"), vec![Some(true), Some(false), Some(true), None]);
        assert_eq!(bools("close > 0 and symbol in ('BTCUSDT', 'XRP')"), vec![Some(true), Some(false), None, None]);
        assert_eq!(bools("symbol is null or n >= 4"), vec![Some(false), Some(false), Some(true), Some(true)]);
        assert_eq!(bools("not (n = 1)"), vec![Some(false), Some(true), None, Some(true)]);
        assert_eq!(bools("n not in (1, 4)"), vec![Some(false), Some(true), None, Some(false)]);
        assert_eq!(bools("n * 2 <> 4"), vec![Some(true), Some(false), None, Some(true)]);
        assert_eq!(bools("upper(trim(symbol)) = 'ETHUSDT'"), vec![Some(false), Some(true), None, Some(false)]);
        let m = parse("close > 0").unwrap().eval_mask(&batch()).unwrap();
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![Some(true), Some(false), Some(true), Some(false)]);
    }

    #[test]
    fn arithmetic_and_strings() {
        let v = eval("(close + n) / 2");
        assert_eq!(v.as_primitive::<Float64Type>().iter().collect::<Vec<_>>(), vec![Some(1.25), Some(0.0), None, None]);
        let v = eval("n % 3 - -1");
        assert_eq!(v.as_primitive::<Int64Type>().iter().collect::<Vec<_>>(), vec![Some(2), Some(3), None, Some(2)]);
        let v = eval("concat(lower(symbol), '-', n)");
        let s: Vec<_> = v.as_string::<i32>().iter().collect();
        assert_eq!(s, vec![Some("btcusdt-1"), Some("ethusdt -2"), Some("-"), Some("xrp-4")]);
        let v = eval("coalesce(close, n, 0)");
        let f: Vec<_> = v.as_primitive::<Float64Type>().iter().collect();
        assert_eq!(f, vec![Some(1.5), Some(-2.0), Some(3.0), Some(4.0)]);
        let v = eval("round(abs(close) * 1.234, 1)");
        assert_eq!(v.as_primitive::<Float64Type>().value(0), 1.9);
        assert_eq!(eval("length(\"symbol\")").as_primitive::<Int64Type>().value(0), 7);
    }

    #[test]
    fn integer_errors_are_data_errors_but_null_rows_are_skipped() {
        let b = batch();
        for (src, msg) in [
            ("n % 0", "division by zero"),
            ("n * 9223372036854775807", "overflow"),
            ("-(n - n - 9223372036854775807 - 1)", "overflow"),
        ] {
            let e = parse(src).unwrap();
            e.check(&b.schema()).unwrap();
            let err = e.eval(&b).unwrap_err();
            assert!(matches!(err, Error::Data { .. }) && err.message().contains(msg), "{src}: {err}");
        }
        // Row 2 (n null) would divide by zero, but it is null.
        let v = eval("n % (n - 3 + 3)");
        assert_eq!(v.as_primitive::<Int64Type>().iter().collect::<Vec<_>>(), vec![Some(0), Some(0), None, Some(0)]);
        assert_eq!(bools("'b' > symbol"), vec![Some(true), Some(false), None, Some(true)]);
    }

    #[test]
    fn errors_point_into_the_expression() {
        let e = parse("close > ").unwrap_err();
        assert_eq!(e.pos, 8);
        let e = parse("close >> 1").unwrap_err();
        assert_eq!(e.pos, 7, "{e:?}");
        let e = parse("a in (1, b)").unwrap_err();
        assert_eq!(e.pos, 9);
        let e = parse("foo(x)").unwrap_err();
        assert!(e.msg.contains("unknown function"));
        let e = parse("'abc").unwrap_err();
        assert_eq!(e.pos, 0);
        let b = batch();
        let e = parse("close > 0 and nope = 1").unwrap().check(&b.schema()).unwrap_err();
        assert_eq!(e.pos, 14);
        assert!(e.msg.contains("unknown column `nope`"));
        let e = parse("symbol + 1").unwrap().check(&b.schema()).unwrap_err();
        assert_eq!(e.pos, 7);
        let c = e.config("symbol + 1", "where");
        assert!(c.to_string().contains("at column 8"), "{c}");
        assert!(matches!(c, Error::Config { key: Some(ref k), .. } if k == "where"));
    }
}
