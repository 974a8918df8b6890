//! Expressions: tokenizer, precedence-climbing parser and evaluator.
//!
//! Every operator and function is resolved to an [`OpHandle`](crate::loader::OpHandle) when
//! the expression is compiled, so evaluation does no name lookup. Infix operators take their
//! precedence and associativity from the plugin that provides them. Unary minus is built in:
//! it negates, and binds tighter than precedence 30 and looser than anything above (so `-2 ^ 2`
//! is `-(2 ^ 2)` with the example `pow` at 40, and `2 * -3` is `2 * (-3)`).
//!
//! [`compile_program`] compiles an expression whose variables are input columns into a
//! [`Program`], evaluated over arrays operation by operation in batches.
#![forbid(unsafe_code)]

use crate::error::EvalError;
use std::sync::Arc;

use crate::slots::{LiveSlot, Resolve};

/// Binding strength of the built-in unary minus.
pub const UNARY_MINUS_PRECEDENCE: i32 = 30;

/// How deeply an expression may nest: each operator application, unary sign, function call and
/// pair of parentheses enclosing another counts one level (`1+2+3` is 2 deep, `-(-x)` 3, `f(g(1))`
/// 2). Deeper input is a parse error, so that parsing, evaluating and dropping an expression
/// (all recursive) stay within a small fixed stack whatever the input: an expression at the
/// limit needs under 256 KiB of stack in an optimised build, under 2 MiB in a debug build
/// (`tests/it/proptest_expr.rs` checks both).
pub const MAX_DEPTH: usize = 256;

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
fn unknown_because(mgr: &dyn Resolve, name: &str) -> String {
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

fn tokenize(src: &str, mgr: &dyn Resolve) -> Result<Vec<Token>, EvalError> {
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
                .find(|s| mgr.infix_slot(s).is_some());
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
    /// Input column `i` of a [`Program`] (never in an [`Expression`]).
    Var(usize),
    Neg(Box<Node>),
    Call {
        slot: LiveSlot,
        args: Vec<Node>,
    },
}

/// Variable lookup for [`compile_with_vars`].
type Vars<'a> = &'a dyn Fn(&str) -> Option<f64>;

/// How a bare identifier (one not followed by `(`) is resolved.
#[derive(Clone, Copy)]
enum VarMode<'a> {
    /// No variables: it must be a function missing its `(`.
    None,
    /// Values fixed at compile time ([`compile_with_vars`]).
    Values(Vars<'a>),
    /// The named input columns of a [`Program`] ([`compile_program`]).
    Columns(&'a [&'a str]),
}

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    end_column: usize,
    mgr: &'a dyn Resolve,
    vars: VarMode<'a>,
    /// Calls of [`Parser::expression`] in progress (bounded by [`MAX_DEPTH`]).
    nesting: usize,
}

/// A parsed subtree and its depth (see [`MAX_DEPTH`]).
type Parsed = (Node, usize);

fn too_deep(column: usize) -> EvalError {
    parse_error(
        format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
        column,
    )
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

    /// The column of the next token, or of the end.
    fn column(&self) -> usize {
        self.peek().map_or(self.end_column, |t| t.column)
    }

    /// One level deeper than `depth`, or the "too deep" error at `column`.
    fn deeper(depth: usize, column: usize) -> Result<usize, EvalError> {
        if depth >= MAX_DEPTH {
            return Err(too_deep(column));
        }
        Ok(depth + 1)
    }

    fn expression(&mut self, min_precedence: i32) -> Result<Parsed, EvalError> {
        // The recursion itself is bounded too: `((((1))))` builds no node per level. (The
        // outermost call is not a level.)
        if self.nesting > MAX_DEPTH {
            return Err(too_deep(self.column()));
        }
        self.nesting += 1;
        let result = self.climb(min_precedence);
        self.nesting -= 1;
        result
    }

    fn climb(&mut self, min_precedence: i32) -> Result<Parsed, EvalError> {
        let (mut lhs, mut depth) = self.prefix()?;
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
            let (rhs, rhs_depth) = self.expression(next_min)?;
            // A left-associative chain deepens the tree without recursing: count it here.
            depth = Self::deeper(depth.max(rhs_depth), column)?;
            lhs = Node::Call {
                slot,
                args: vec![lhs, rhs],
            };
        }
        Ok((lhs, depth))
    }

    fn prefix(&mut self) -> Result<Parsed, EvalError> {
        let Some(t) = self.next() else {
            return Err(parse_error("unexpected end of expression", self.end_column));
        };
        match t.tok {
            Tok::Num(n) => Ok((Node::Num(n), 0)),
            Tok::Sym(s) if s == "-" => {
                let (inner, depth) = self.expression(UNARY_MINUS_PRECEDENCE)?;
                Ok((Node::Neg(Box::new(inner)), Self::deeper(depth, t.column)?))
            }
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
                let unknown = || {
                    if self.mgr.live_slot(&name).is_none() {
                        Err(parse_error(format!("unknown variable '{name}'"), t.column))
                    } else {
                        Ok(())
                    }
                };
                match self.vars {
                    _ if is_call => {}
                    VarMode::None => {}
                    VarMode::Values(v) => match v(&name) {
                        Some(value) => return Ok((Node::Num(value), 0)),
                        None => unknown()?,
                    },
                    VarMode::Columns(columns) => match columns.iter().position(|c| *c == name) {
                        Some(i) => return Ok((Node::Var(i), 0)),
                        None => unknown()?,
                    },
                }
                self.call(name, t.column)
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

    fn call(&mut self, name: String, column: usize) -> Result<Parsed, EvalError> {
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
        let mut depth = 0;
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
                let (arg, arg_depth) = self.expression(i32::MIN)?;
                args.push(arg);
                depth = depth.max(arg_depth);
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
        Ok((Node::Call { slot, args }, Self::deeper(depth, column)?))
    }
}

/// A parsed expression whose operations are resolved; evaluate it with [`Expression::eval`].
#[derive(Debug, Clone)]
pub struct Expression {
    root: Node,
}

/// Parses `src`, resolving operators and functions against `mgr`.
pub fn compile(mgr: &dyn Resolve, src: &str) -> Result<Expression, EvalError> {
    compile_impl(mgr, src, VarMode::None).map(|root| Expression { root })
}

/// As [`compile`], with variables: a bare identifier (not followed by `(`) takes its value from
/// `vars` at compile time; one `vars` does not know is an "unknown variable" error.
pub fn compile_with_vars(
    mgr: &dyn Resolve,
    src: &str,
    vars: &dyn Fn(&str) -> Option<f64>,
) -> Result<Expression, EvalError> {
    compile_impl(mgr, src, VarMode::Values(vars)).map(|root| Expression { root })
}

fn compile_impl(mgr: &dyn Resolve, src: &str, vars: VarMode<'_>) -> Result<Node, EvalError> {
    let tokens = tokenize(src, mgr)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        end_column: src.chars().count() + 1,
        mgr,
        vars,
        nesting: 0,
    };
    let (root, _) = p.expression(i32::MIN)?;
    if let Some(t) = p.peek() {
        return Err(parse_error(
            format!("unexpected {}", describe(&t.tok)),
            t.column,
        ));
    }
    Ok(root)
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
        Node::Var(_) => unreachable!("only programs read columns"),
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

/// Rows evaluated together by [`Program`]: each operation runs over this many rows at a time,
/// so the scratch columns of one chunk stay in cache.
pub const CHUNK_ROWS: usize = 4096;

/// The variables of `src`, in order of first use: the identifiers not followed by `(` (an
/// identifier followed by `(` is a function call). Fails only when `src` does not tokenize.
pub fn variables(mgr: &dyn Resolve, src: &str) -> Result<Vec<String>, EvalError> {
    let tokens = tokenize(src, mgr)?;
    let mut names: Vec<String> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if let Tok::Ident(name) = &t.tok {
            let is_call = tokens.get(i + 1).is_some_and(|n| n.tok == Tok::LParen);
            if !is_call && !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    Ok(names)
}

/// Where a step reads one operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operand {
    /// Input column `i`.
    Var(usize),
    /// Constant `i` of the program, broadcast to a column.
    Const(usize),
    /// Scratch column `i`.
    Reg(usize),
}

/// One step of a [`Program`]: an operation over whole columns.
#[derive(Debug, Clone)]
enum Step {
    /// `dst = op(args...)`, row by row, through the slot's serving implementation.
    Call {
        /// The operation's name, for the error once no plugin provides it any more.
        name: String,
        slot: LiveSlot,
        args: Vec<Operand>,
        dst: usize,
    },
    /// `dst = -src` (may be in place).
    Neg { src: Operand, dst: usize },
}

/// An expression compiled for evaluation over columns of numbers (see [`compile_program`]).
///
/// The expression tree is lowered once to a linear list of steps over scratch columns (reused
/// as soon as their value is consumed); evaluation runs each step over [`CHUNK_ROWS`] rows at a
/// time, as one batch call of the operation, with constants broadcast and unary minus a plain
/// loop: there is no per-row tree walk.
///
/// Semantics next to [`Expression::eval`]: each row gets the same operations on the same
/// operands, so the results and the first failure are identical (a plugin's batch entry must
/// give exactly its per-row results), except that batch evaluation always uses the
/// implementation serving each operation as the chunk reaches it (the slot's primary provider,
/// so hot reloads take effect between chunks): it chooses no rollout candidate, does not fall
/// back to another provider when that implementation fails, and does not count calls in
/// `PluginManager::stats`. Usable from several threads at once.
#[derive(Debug, Clone)]
pub struct Program {
    variables: Vec<String>,
    steps: Vec<Step>,
    constants: Vec<f64>,
    registers: usize,
    result: Operand,
}

/// Compiles `src` for evaluation over columns: a bare identifier (not followed by `(`) is the
/// input column of that name in `variables`; one not in `variables` is an "unknown variable"
/// parse error. Operators and functions resolve as in [`compile`].
pub fn compile_program(
    mgr: &dyn Resolve,
    src: &str,
    variables: &[&str],
) -> Result<Program, EvalError> {
    let root = compile_impl(mgr, src, VarMode::Columns(variables))?;
    let mut lower = Lower::default();
    let result = lower.lower(&root);
    Ok(Program {
        variables: variables.iter().map(|v| v.to_string()).collect(),
        steps: lower.steps,
        constants: lower.constants,
        registers: lower.registers,
        result,
    })
}

/// Lowers a tree to steps, allocating scratch columns.
#[derive(Default)]
struct Lower {
    steps: Vec<Step>,
    constants: Vec<f64>,
    registers: usize,
    free: Vec<usize>,
}

impl Lower {
    fn constant(&mut self, value: f64) -> Operand {
        let i = match self
            .constants
            .iter()
            .position(|c| c.to_bits() == value.to_bits())
        {
            Some(i) => i,
            None => {
                self.constants.push(value);
                self.constants.len() - 1
            }
        };
        Operand::Const(i)
    }

    fn alloc(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            self.registers += 1;
            self.registers - 1
        })
    }

    fn release(&mut self, operand: Operand) {
        if let Operand::Reg(r) = operand {
            if !self.free.contains(&r) {
                self.free.push(r);
            }
        }
    }

    /// Emits the steps computing `node` (operands left to right, as [`Expression::eval`]
    /// evaluates them) and returns where its value is.
    fn lower(&mut self, node: &Node) -> Operand {
        match node {
            Node::Num(n) => self.constant(*n),
            Node::Var(i) => Operand::Var(*i),
            Node::Neg(inner) => match self.lower(inner) {
                Operand::Const(c) => self.constant(-self.constants[c]),
                src => {
                    self.release(src);
                    let dst = self.alloc();
                    self.steps.push(Step::Neg { src, dst });
                    Operand::Reg(dst)
                }
            },
            Node::Call { slot, args } => {
                let args: Vec<Operand> = args.iter().map(|a| self.lower(a)).collect();
                // Allocated before the operands are released: a call never writes a column it
                // reads.
                let dst = self.alloc();
                for a in &args {
                    self.release(*a);
                }
                let name = slot.load().primary().info().name.clone();
                self.steps.push(Step::Call {
                    name,
                    slot: Arc::clone(slot),
                    args,
                    dst,
                });
                Operand::Reg(dst)
            }
        }
    }
}

/// The error of an operation whose every provider was unloaded.
fn gone(name: &str) -> crate::error::CallError {
    crate::error::CallError::new(crate::error::CallErrorDetails {
        operation: name.to_string(),
        plugin: String::new(),
        path: std::path::PathBuf::new(),
        status: calc_sdk::Status::Error,
        message: "no plugin provides it any more (unloaded)".into(),
    })
}

/// Scratch columns of one evaluation.
struct Scratch {
    registers: Vec<Vec<f64>>,
    /// Each constant broadcast to a chunk.
    constants: Vec<Vec<f64>>,
}

impl Program {
    /// The input columns, in the order [`Program::eval_columns`] takes them.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    /// Evaluates the program over `columns` (one per variable, in the order of
    /// [`Program::variables`], all the same length) and replaces the contents of `out` with one
    /// result per row.
    ///
    /// On error, returns the first failing row (0-based) with the error of the first operation
    /// that failed in it, exactly as [`Expression::eval`] would for that row, and `out` holds
    /// the results of the rows before it.
    ///
    /// # Panics
    /// When the number of columns differs from the number of variables, or the columns differ
    /// in length.
    pub fn eval_columns(
        &self,
        columns: &[&[f64]],
        out: &mut Vec<f64>,
    ) -> Result<(), (usize, EvalError)> {
        let rows = columns.first().map_or(0, |c| c.len());
        out.clear();
        out.resize(rows, 0.0);
        self.eval_into(columns, out).map_err(|(row, e)| {
            out.truncate(row);
            (row, e)
        })
    }

    /// As [`Program::eval_columns`], writing one result per row into `out`, whose length is the
    /// number of rows (so a program without variables can be evaluated over any number of
    /// rows). On error, the rows before the failing one hold their results and the others are
    /// unspecified.
    ///
    /// # Panics
    /// When the number of columns differs from the number of variables, or a column's length
    /// from `out`'s.
    pub fn eval_into(&self, columns: &[&[f64]], out: &mut [f64]) -> Result<(), (usize, EvalError)> {
        assert_eq!(
            columns.len(),
            self.variables.len(),
            "one column per variable ({:?})",
            self.variables
        );
        let rows = out.len();
        for (name, column) in self.variables.iter().zip(columns) {
            assert_eq!(
                column.len(),
                rows,
                "column {name} has {} rows, not {rows}",
                column.len()
            );
        }
        let chunk = rows.min(CHUNK_ROWS);
        let mut scratch = Scratch {
            registers: vec![vec![0.0; chunk]; self.registers],
            constants: self.constants.iter().map(|&c| vec![c; chunk]).collect(),
        };
        let mut start = 0;
        while start < rows {
            let full = chunk.min(rows - start);
            let mut len = full;
            // A later step may fail at an earlier row than the step that failed first: evaluate
            // the rows before each failure again until they all succeed.
            let mut failure = None;
            loop {
                match self.run_chunk(columns, start, &mut scratch, &mut out[start..start + len]) {
                    Ok(()) => break,
                    Err((row, e)) => {
                        len = row;
                        failure = Some(e);
                    }
                }
            }
            if let Some(e) = failure {
                return Err((start + len, EvalError::Call(e)));
            }
            start += full;
        }
        Ok(())
    }

    /// Runs every step over rows `start..start + out.len()`; the error's row is relative to
    /// `start`.
    fn run_chunk(
        &self,
        columns: &[&[f64]],
        start: usize,
        scratch: &mut Scratch,
        out: &mut [f64],
    ) -> Result<(), (usize, crate::error::CallError)> {
        let len = out.len();
        if len == 0 {
            return Ok(());
        }
        let Scratch {
            registers,
            constants,
        } = scratch;
        let writes_out = self.writes_out();
        for (index, step) in self.steps.iter().enumerate() {
            let dst_reg = step_dst(step);
            let last = writes_out && index + 1 == self.steps.len();
            // The destination column, taken out of the scratch so operands can be borrowed.
            let mut column = if last {
                Vec::new()
            } else {
                std::mem::take(&mut registers[dst_reg])
            };
            let result = {
                let dst: &mut [f64] = if last { &mut *out } else { &mut column[..len] };
                let read = |operand: Operand| -> &[f64] {
                    match operand {
                        Operand::Var(i) => &columns[i][start..start + len],
                        Operand::Const(i) => &constants[i][..len],
                        Operand::Reg(i) => &registers[i][..len],
                    }
                };
                match step {
                    Step::Call {
                        name, slot, args, ..
                    } => {
                        let current = slot.load();
                        if current.is_empty() {
                            Err((0, gone(name)))
                        } else {
                            let operands: Vec<&[f64]> = args.iter().map(|&a| read(a)).collect();
                            current.primary().call_batch(&operands, dst)
                        }
                    }
                    Step::Neg { src, .. } if !last && *src == Operand::Reg(dst_reg) => {
                        // In place: the taken column holds the operand.
                        for x in dst.iter_mut() {
                            *x = -*x;
                        }
                        Ok(())
                    }
                    Step::Neg { src, .. } => {
                        for (o, x) in dst.iter_mut().zip(read(*src)) {
                            *o = -*x;
                        }
                        Ok(())
                    }
                }
            };
            if !last {
                registers[dst_reg] = column;
            }
            result?;
        }
        if !writes_out {
            out.copy_from_slice(match self.result {
                Operand::Var(i) => &columns[i][start..start + len],
                Operand::Const(i) => &constants[i][..len],
                Operand::Reg(i) => &registers[i][..len],
            });
        }
        Ok(())
    }

    /// Whether the last step writes the result, so straight into the output.
    fn writes_out(&self) -> bool {
        self.steps
            .last()
            .is_some_and(|s| self.result == Operand::Reg(step_dst(s)))
    }
}

fn step_dst(step: &Step) -> usize {
    match step {
        Step::Call { dst, .. } | Step::Neg { dst, .. } => *dst,
    }
}
