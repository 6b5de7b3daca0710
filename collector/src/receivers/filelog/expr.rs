//! The subset of otelcol's expression language (expr) that `router`
//! routes and `recombine` conditions take: field paths, string and number
//! literals, `true`, `false`, `nil`; `==`, `!=`, `<`, `<=`, `>`, `>=`,
//! `matches`, `contains`, `startsWith`, `endsWith`; `and`/`&&`,
//! `or`/`||`, `not`/`!`, and parentheses. Anything else is refused when
//! the config is loaded, naming what was not understood.

use serde_json::Value;

use super::field::{Entry, Field};

/// A checked expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A field's value (null when absent).
    Field(Field),
    /// A literal.
    Lit(Value),
    /// `not e`.
    Not(Box<Expr>),
    /// `a and b`.
    And(Box<Expr>, Box<Expr>),
    /// `a or b`.
    Or(Box<Expr>, Box<Expr>),
    /// A comparison.
    Cmp(Op, Box<Expr>, Box<Expr>),
    /// `a matches "re"`, the regex compiled once.
    Matches(Box<Expr>, regex::Regex),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `contains`
    Contains,
    /// `startsWith`
    StartsWith,
    /// `endsWith`
    EndsWith,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
}

fn tokens(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut text = String::new();
            i += 1;
            loop {
                let Some(&d) = b.get(i) else {
                    return Err("a string is not closed".into());
                };
                match d as char {
                    '\\' => {
                        let e = *b.get(i + 1).ok_or("a string ends in \\")? as char;
                        match e {
                            'n' => text.push('\n'),
                            't' => text.push('\t'),
                            '"' | '\'' | '\\' => text.push(e),
                            // Regex escapes (\d, \S) reach the regex as written.
                            other => {
                                text.push('\\');
                                text.push(other);
                            }
                        }
                        i += 2;
                    }
                    q if q == c => {
                        i += 1;
                        break;
                    }
                    _ => {
                        let ch = s[i..].chars().next().expect("in bounds");
                        text.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            out.push(Tok::Str(text));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            out.push(Tok::Num(
                s[start..i]
                    .parse()
                    .map_err(|_| format!("bad number {:?}", &s[start..i]))?,
            ));
        } else if c.is_ascii_alphabetic() || c == '_' {
            // A word, or a field path with dots and ["…"] parts.
            let start = i;
            while i < b.len() {
                let d = b[i] as char;
                if d.is_ascii_alphanumeric() || d == '_' || d == '.' {
                    i += 1;
                } else if d == '[' && b.get(i + 1) == Some(&b'"') {
                    let close = s[i..].find("\"]").ok_or("a [\" is not closed")?;
                    i += close + 2;
                } else {
                    break;
                }
            }
            out.push(Tok::Word(s[start..i].to_string()));
        } else {
            let two = s.get(i..i + 2).unwrap_or("");
            let sym = ["==", "!=", "<=", ">=", "&&", "||"]
                .into_iter()
                .find(|t| *t == two)
                .or_else(|| {
                    ["<", ">", "!", "(", ")", "[", "]", ","]
                        .into_iter()
                        .find(|t| t.as_bytes()[0] == b[i])
                })
                .ok_or_else(|| format!("{c:?} is not understood"))?;
            i += sym.len();
            out.push(Tok::Sym(sym));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn sym(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(x)) if *x == s)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.word("or") || self.sym("||") {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.word("and") || self.sym("&&") {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.word("not") || self.sym("!") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, String> {
        let left = self.atom()?;
        let op = match self.peek() {
            Some(Tok::Sym(s)) => match *s {
                "==" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                _ => return Ok(left),
            },
            Some(Tok::Word(w)) => match w.as_str() {
                "contains" => Op::Contains,
                "startsWith" => Op::StartsWith,
                "endsWith" => Op::EndsWith,
                "matches" => {
                    self.at += 1;
                    let Some(Tok::Str(re)) = self.peek().cloned() else {
                        return Err("matches needs a string literal".into());
                    };
                    self.at += 1;
                    let re = regex::Regex::new(&re).map_err(|e| format!("matches: invalid regex: {e}"))?;
                    return Ok(Expr::Matches(Box::new(left), re));
                }
                "and" | "or" => return Ok(left),
                other => return Err(format!("{other:?} is not supported (use ==, !=, <, >, matches, contains, startsWith, endsWith, and, or, not)")),
            },
            _ => return Ok(left),
        };
        self.at += 1;
        Ok(Expr::Cmp(op, Box::new(left), Box::new(self.atom()?)))
    }

    fn atom(&mut self) -> Result<Expr, String> {
        let t = self
            .peek()
            .cloned()
            .ok_or("the expression ends too early")?;
        self.at += 1;
        Ok(match t {
            Tok::Str(s) => Expr::Lit(Value::String(s)),
            Tok::Num(n) => Expr::Lit(serde_json::json!(n)),
            Tok::Sym("(") => {
                let e = self.or()?;
                if !self.sym(")") {
                    return Err("a ( is not closed".into());
                }
                self.at += 1;
                e
            }
            Tok::Word(w) => match w.as_str() {
                "true" => Expr::Lit(Value::Bool(true)),
                "false" => Expr::Lit(Value::Bool(false)),
                "nil" => Expr::Lit(Value::Null),
                _ => {
                    if self.sym("(") {
                        return Err(format!("function calls ({w}(…)) are not supported"));
                    }
                    Expr::Field(Field::parse(&w)?)
                }
            },
            Tok::Sym(s) => return Err(format!("{s:?} is not expected here")),
        })
    }
}

impl Expr {
    /// Parses `s`.
    pub fn parse(s: &str) -> Result<Expr, String> {
        let mut p = Parser {
            toks: tokens(s)?,
            at: 0,
        };
        let e = p.or()?;
        if let Some(t) = p.peek() {
            return Err(format!("{t:?} is not understood after a whole expression"));
        }
        Ok(e)
    }

    fn value(&self, e: &Entry) -> Value {
        match self {
            Expr::Field(f) => f.get(e).cloned().unwrap_or(Value::Null),
            Expr::Lit(v) => v.clone(),
            other => Value::Bool(other.is_true(e)),
        }
    }

    /// Whether the expression holds for `e`.
    pub fn is_true(&self, e: &Entry) -> bool {
        match self {
            Expr::Not(x) => !x.is_true(e),
            Expr::And(a, b) => a.is_true(e) && b.is_true(e),
            Expr::Or(a, b) => a.is_true(e) || b.is_true(e),
            Expr::Matches(x, re) => match x.value(e) {
                Value::String(s) => re.is_match(&s),
                _ => false,
            },
            Expr::Cmp(op, a, b) => compare(*op, &a.value(e), &b.value(e)),
            Expr::Field(_) | Expr::Lit(_) => matches!(self.value(e), Value::Bool(true)),
        }
    }
}

fn compare(op: Op, a: &Value, b: &Value) -> bool {
    match op {
        Op::Eq => loose_eq(a, b),
        Op::Ne => !loose_eq(a, b),
        Op::Contains | Op::StartsWith | Op::EndsWith => match (a, b) {
            (Value::String(a), Value::String(b)) => match op {
                Op::Contains => a.contains(b.as_str()),
                Op::StartsWith => a.starts_with(b.as_str()),
                _ => a.ends_with(b.as_str()),
            },
            _ => false,
        },
        _ => {
            let ord = match (a, b) {
                (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()),
                (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
                _ => None,
            };
            ord.is_some_and(|o| match op {
                Op::Lt => o.is_lt(),
                Op::Le => o.is_le(),
                Op::Gt => o.is_gt(),
                _ => o.is_ge(),
            })
        }
    }
}

/// Numbers compare by value (`1 == 1.0`), the rest as JSON.
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> Entry {
        let mut e = Entry {
            body: json!("ERROR something\tbroke"),
            ..Default::default()
        };
        e.attributes.insert("level".into(), json!("error"));
        e.attributes.insert("code".into(), json!(503));
        e.attributes.insert("log.file.name".into(), json!("a.log"));
        e
    }

    #[test]
    fn the_subset_evaluates_as_expr_does() {
        let t = |s: &str| Expr::parse(s).unwrap().is_true(&entry());
        assert!(t(r#"body matches "^ERROR\\s""#));
        assert!(t(
            r#"attributes.level == "error" and attributes.code >= 500"#
        ));
        assert!(t(
            r#"not (attributes.level == 'info') && attributes["log.file.name"] endsWith ".log""#
        ));
        assert!(t(r#"attributes.missing == nil or false"#));
        assert!(!t(r#"body startsWith "WARN" || attributes.code < 400"#));
        assert!(t(r#"body contains "broke""#));
    }

    #[test]
    fn the_rest_is_refused_by_name() {
        let err = |s: &str| Expr::parse(s).unwrap_err();
        assert!(err("len(body) > 3").contains("function calls"));
        assert!(err("attributes.x in ['a']").contains("\"in\" is not supported"));
        assert!(err("body matches attributes.re").contains("string literal"));
        assert!(err("body == 'x").contains("not closed"));
        assert!(err("record.x == 1").contains("must start with body"));
    }
}
