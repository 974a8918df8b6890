//! Expressions: tokenizer, precedence-climbing parser and evaluator.
//!
//! Every operator and function is resolved to an [`OpHandle`] when the expression is compiled,
//! so evaluation does no name lookup. Infix operators take their precedence and associativity
//! from the plugin that provides them. Unary minus is built in: it negates, and binds tighter
//! than precedence 30 and looser than anything above (so `-2 ^ 2` is `-(2 ^ 2)` with the example
//! `pow` at 40, and `2 * -3` is `2 * (-3)`).
#![forbid(unsafe_code)]

use crate::error::EvalError;
use std::sync::Arc;

use crate::manager::{LiveSlot, PluginManager};

/// Binding strength of the built-in unary minus.
pub const UNARY_MINUS_PRECEDENCE: i32 = 30;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Sym(String),
    LParen,
    RParen,
    Comma,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// 1-based column in characters.
    column: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Num(n) => format!("number {n}"),
        Tok::Ident(s) => format!("'{s}'"),
        Tok::Sym(s) => format!("'{s}'"),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Comma => "','".into(),
    }
}

/// "(no loaded plugin provides it)", or which disabled plugin would.
fn unknown_because(mgr: &PluginManager, name: &str) -> String {
    match mgr.disabled_provider(name) {
        Some(p) => format!("(plugin {p} provides it but is disabled)"),
        None => "(no loaded plugin provides it)".to_string(),
    }
}

fn parse_error(message: impl Into<String>, column: usize) -> EvalError {
    EvalError::Parse {
        message: message.into(),
        column,
    }
}

fn tokenize(src: &str, mgr: &PluginManager) -> Result<Vec<Token>, EvalError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                    i = j;
                }
            }
            let text: String = chars[start..i].iter().collect();
            let n = text
                .parse::<f64>()
                .map_err(|_| parse_error(format!("invalid number '{text}'"), column))?;
            Tok::Num(n)
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            Tok::Ident(chars[start..i].iter().collect())
        } else if c == '(' || c == ')' || c == ',' {
            i += 1;
            match c {
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                _ => Tok::Comma,
            }
        } else if crate::validate::SYMBOL_CHARS.contains(c) {
            // Longest registered symbol starting here; a lone '-' or '+' is always accepted
            // (it may be a unary sign).
            let longest = (1..=3)
                .rev()
                .filter(|&n| i + n <= chars.len())
                .map(|n| chars[i..i + n].iter().collect::<String>())
                .find(|s| mgr.infix(s).is_some());
            let sym = match longest {
                Some(s) => s,
                None if c == '-' || c == '+' => c.to_string(),
                None => {
                    let run: String = chars[i..]
                        .iter()
                        .take_while(|ch| crate::validate::SYMBOL_CHARS.contains(**ch))
                        .take(3)
                        .collect();
                    return Err(parse_error(
                        format!("unknown operator '{run}' {}", unknown_because(mgr, &run)),
                        column,
                    ));
                }
            };
            i += sym.chars().count();
            Tok::Sym(sym)
        } else {
            return Err(parse_error(format!("unexpected character '{c}'"), column));
        };
        out.push(Token { tok, column });
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum Node {
    Num(f64),
    Neg(Box<Node>),
    Call { slot: LiveSlot, args: Vec<Node> },
}

/// Variable lookup for [`compile_with_vars`].
type Vars<'a> = &'a dyn Fn(&str) -> Option<f64>;

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    end_column: usize,
    mgr: &'a PluginManager,
    vars: Option<Vars<'a>>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), EvalError> {
        match self.next() {
            Some(t) if t.tok == want => Ok(()),
            Some(t) => Err(parse_error(
                format!("expected {what}, found {}", describe(&t.tok)),
                t.column,
            )),
            None => Err(parse_error(
                format!("expected {what}, found end of expression"),
                self.end_column,
            )),
        }
    }

    fn expression(&mut self, min_precedence: i32) -> Result<Node, EvalError> {
        let mut lhs = self.prefix()?;
        while let Some(Token {
            tok: Tok::Sym(sym),
            column,
        }) = self.peek().cloned()
        {
            let slot = self.mgr.infix_slot(&sym).ok_or_else(|| {
                parse_error(
                    format!(
                        "unknown operator '{sym}' {}",
                        unknown_because(self.mgr, &sym)
                    ),
                    column,
                )
            })?;
            let crate::info::OperationKind::Infix {
                precedence,
                right_associative,
                ..
            } = slot.load().primary().info().kind
            else {
                unreachable!("infix() returns only infix operators")
            };
            if precedence < min_precedence {
                break;
            }
            let slot = Arc::clone(slot);
            self.pos += 1;
            let next_min = if right_associative {
                precedence
            } else {
                precedence.saturating_add(1)
            };
            let rhs = self.expression(next_min)?;
            lhs = Node::Call {
                slot,
                args: vec![lhs, rhs],
            };
        }
        Ok(lhs)
    }

    fn prefix(&mut self) -> Result<Node, EvalError> {
        let Some(t) = self.next() else {
            return Err(parse_error("unexpected end of expression", self.end_column));
        };
        match t.tok {
            Tok::Num(n) => Ok(Node::Num(n)),
            Tok::Sym(s) if s == "-" => Ok(Node::Neg(Box::new(
                self.expression(UNARY_MINUS_PRECEDENCE)?,
            ))),
            Tok::Sym(s) if s == "+" => self.expression(UNARY_MINUS_PRECEDENCE),
            Tok::LParen => {
                let inner = self.expression(i32::MIN)?;
                self.expect(Tok::RParen, "')'")?;
                Ok(inner)
            }
            Tok::Ident(name) => {
                let is_call = matches!(
                    self.peek(),
                    Some(Token {
                        tok: Tok::LParen,
                        ..
                    })
                );
                match self.vars.filter(|_| !is_call).map(|v| v(&name)) {
                    Some(Some(value)) => Ok(Node::Num(value)),
                    Some(None) if self.mgr.live_slot(&name).is_none() => {
                        Err(parse_error(format!("unknown variable '{name}'"), t.column))
                    }
                    _ => self.call(name, t.column),
                }
            }
            other => Err(parse_error(
                format!(
                    "expected a number, '(' or a function call, found {}",
                    describe(&other)
                ),
                t.column,
            )),
        }
    }

    fn call(&mut self, name: String, column: usize) -> Result<Node, EvalError> {
        let slot = self.mgr.live_slot(&name).cloned().ok_or_else(|| {
            parse_error(
                format!(
                    "unknown function '{name}' {}",
                    unknown_because(self.mgr, &name)
                ),
                column,
            )
        })?;
        match self.peek() {
            Some(Token {
                tok: Tok::LParen, ..
            }) => self.pos += 1,
            _ => {
                return Err(parse_error(
                    format!("expected '(' after function name '{name}'"),
                    column + name.chars().count(),
                ))
            }
        }
        let mut args = Vec::new();
        if matches!(
            self.peek(),
            Some(Token {
                tok: Tok::RParen,
                ..
            })
        ) {
            self.pos += 1;
        } else {
            loop {
                args.push(self.expression(i32::MIN)?);
                match self.next() {
                    Some(Token {
                        tok: Tok::Comma, ..
                    }) => continue,
                    Some(Token {
                        tok: Tok::RParen, ..
                    }) => break,
                    Some(t) => {
                        return Err(parse_error(
                            format!("expected ',' or ')', found {}", describe(&t.tok)),
                            t.column,
                        ))
                    }
                    None => {
                        return Err(parse_error(
                            "expected ',' or ')', found end of expression",
                            self.end_column,
                        ))
                    }
                }
            }
        }
        let current = slot.load_full();
        let op = current.primary().info();
        let (min, max) = op.arity();
        let n = args.len() as u32;
        if n < min || max.is_some_and(|m| n > m) {
            let expected = op.arity_text("argument");
            return Err(parse_error(
                format!("{name} expects {expected}, got {n}"),
                column,
            ));
        }
        Ok(Node::Call { slot, args })
    }
}

/// A parsed expression whose operations are resolved; evaluate it with [`Expression::eval`].
#[derive(Debug, Clone)]
pub struct Expression {
    root: Node,
}

/// Parses `src`, resolving operators and functions against `mgr`.
pub fn compile(mgr: &PluginManager, src: &str) -> Result<Expression, EvalError> {
    compile_impl(mgr, src, None)
}

/// As [`compile`], with variables: a bare identifier (not followed by `(`) takes its value from
/// `vars` at compile time; one `vars` does not know is an "unknown variable" error.
pub fn compile_with_vars(
    mgr: &PluginManager,
    src: &str,
    vars: &dyn Fn(&str) -> Option<f64>,
) -> Result<Expression, EvalError> {
    compile_impl(mgr, src, Some(vars))
}

fn compile_impl(
    mgr: &PluginManager,
    src: &str,
    vars: Option<Vars<'_>>,
) -> Result<Expression, EvalError> {
    let tokens = tokenize(src, mgr)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        end_column: src.chars().count() + 1,
        mgr,
        vars,
    };
    let root = p.expression(i32::MIN)?;
    if let Some(t) = p.peek() {
        return Err(parse_error(
            format!("unexpected {}", describe(&t.tok)),
            t.column,
        ));
    }
    Ok(Expression { root })
}

impl Expression {
    /// Evaluates the expression; the first failing operation's error is returned.
    pub fn eval(&self) -> Result<f64, EvalError> {
        self.eval_with_key(0)
    }

    /// Evaluates the expression, choosing rollout implementations by the key hash `key`
    /// (see [`crate::manager::rollout_hash`]).
    pub fn eval_with_key(&self, key: u64) -> Result<f64, EvalError> {
        Ok(eval(&self.root, key)?)
    }
}

fn eval(node: &Node, key: u64) -> Result<f64, crate::error::CallError> {
    match node {
        Node::Num(n) => Ok(*n),
        Node::Neg(inner) => Ok(-eval(inner, key)?),
        Node::Call { slot, args } => {
            let mut values = Vec::with_capacity(args.len());
            for a in args {
                values.push(eval(a, key)?);
            }
            slot.load().call(&values, key)
        }
    }
}
