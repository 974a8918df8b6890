//! The safe trait a Rust plugin implements, and its operation table.

use crate::abi;
use crate::error::CalcError;
use crate::host::Host;

/// How a chain of equal-precedence infix operators groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Associativity {
    /// `a - b - c` is `(a - b) - c`.
    Left,
    /// `a ^ b ^ c` is `a ^ (b ^ c)`.
    Right,
}

impl Associativity {
    /// The wire value (`CALC_ASSOCIATIVITY_*`).
    pub const fn code(self) -> abi::calc_associativity_t {
        match self {
            Associativity::Left => abi::CALC_ASSOCIATIVITY_LEFT,
            Associativity::Right => abi::CALC_ASSOCIATIVITY_RIGHT,
        }
    }
}

/// Whether an operation is an infix operator or a function, with the details of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// A binary infix operator such as `a * b`.
    Infix {
        /// The symbol in expressions, e.g. `"*"`.
        symbol: &'static str,
        /// Binding strength; higher binds tighter (10 additive, 20 multiplicative, 40 power).
        precedence: i32,
        /// Grouping of equal-precedence chains.
        associativity: Associativity,
    },
    /// A function called as `name(a, b, ...)`.
    Function {
        /// Fewest operands.
        min_arity: u32,
        /// Most operands; `None` for variadic.
        max_arity: Option<u32>,
    },
}

/// The implementation behind an operation; which variant decides how operands are passed.
#[derive(Debug)]
pub(crate) enum Body<P> {
    Unary(fn(&P, f64) -> Result<f64, CalcError>),
    Binary(fn(&P, f64, f64) -> Result<f64, CalcError>),
    Nary(fn(&P, &[f64]) -> Result<f64, CalcError>),
}

/// One operation of a plugin of type `P`: its declaration and its implementation.
///
/// Build them in a `const` table with [`Operation::infix`], [`Operation::unary`] and
/// [`Operation::function`]; the implementation receives the plugin instance that
/// [`Plugin::init`] created.
#[derive(Debug)]
pub struct Operation<P: 'static> {
    /// The operation's name, an identifier unique within the plugin.
    pub name: &'static str,
    /// One line for humans.
    pub description: &'static str,
    /// Infix operator or function.
    pub kind: OperationKind,
    pub(crate) body: Body<P>,
}

impl<P: 'static> Operation<P> {
    /// A binary infix operator.
    pub const fn infix(
        name: &'static str,
        symbol: &'static str,
        precedence: i32,
        associativity: Associativity,
        description: &'static str,
        f: fn(&P, f64, f64) -> Result<f64, CalcError>,
    ) -> Self {
        Operation {
            name,
            description,
            kind: OperationKind::Infix {
                symbol,
                precedence,
                associativity,
            },
            body: Body::Binary(f),
        }
    }

    /// A function of exactly one operand.
    pub const fn unary(
        name: &'static str,
        description: &'static str,
        f: fn(&P, f64) -> Result<f64, CalcError>,
    ) -> Self {
        Operation {
            name,
            description,
            kind: OperationKind::Function {
                min_arity: 1,
                max_arity: Some(1),
            },
            body: Body::Unary(f),
        }
    }

    /// A function of `min_arity` to `max_arity` operands (`None`: any number).
    pub const fn function(
        name: &'static str,
        min_arity: u32,
        max_arity: Option<u32>,
        description: &'static str,
        f: fn(&P, &[f64]) -> Result<f64, CalcError>,
    ) -> Self {
        Operation {
            name,
            description,
            kind: OperationKind::Function {
                min_arity,
                max_arity,
            },
            body: Body::Nary(f),
        }
    }

    /// Calls the implementation after checking the operand count, as the exported trampoline
    /// does. Useful for unit-testing a plugin without loading it.
    #[inline]
    pub fn call(&self, plugin: &P, args: &[f64]) -> Result<f64, CalcError> {
        self.check_arity(args.len())?;
        match (&self.body, args) {
            (Body::Unary(f), [a]) => f(plugin, *a),
            (Body::Binary(f), [a, b]) => f(plugin, *a, *b),
            (Body::Nary(f), args) => f(plugin, args),
            _ => Err(self.shape_mismatch()),
        }
    }

    /// Runs the implementation over many rows, as the exported `execute_batch` trampoline (ABI
    /// 1.2) does: `columns[k][r]` is operand `k` of row `r`, and the result of row `r` goes to
    /// `out[r]`. Every column must be as long as `out`. Stops at the first failing row and
    /// returns its index with the error; the rows before it are written. Useful for
    /// unit-testing a plugin without loading it.
    pub fn call_batch(
        &self,
        plugin: &P,
        columns: &[&[f64]],
        out: &mut [f64],
    ) -> Result<(), (usize, CalcError)> {
        if let Some(k) = columns.iter().position(|c| c.len() != out.len()) {
            return Err((
                0,
                CalcError::invalid_argument(format!(
                    "{}: column {k} has {} rows, out has {}",
                    self.name,
                    columns[k].len(),
                    out.len()
                )),
            ));
        }
        let mut row = 0;
        self.run_rows(plugin, columns, out, &mut row)
            .map_err(|e| (row, e))
    }

    /// The row loop behind [`Self::call_batch`] and the `execute_batch` trampoline. The
    /// columns must be at least `out.len()` long. `row` follows the row being computed, so that
    /// it names the failing row after an error, or after a panic the caller caught.
    #[inline]
    pub(crate) fn run_rows(
        &self,
        plugin: &P,
        columns: &[&[f64]],
        out: &mut [f64],
        row: &mut usize,
    ) -> Result<(), CalcError> {
        *row = 0;
        self.check_arity(columns.len())?;
        match (&self.body, columns) {
            (Body::Unary(f), [a]) => unary_rows(*f, plugin, a, out, row),
            (Body::Binary(f), [a, b]) => binary_rows(*f, plugin, a, b, out, row),
            (Body::Nary(f), columns) => nary_rows(*f, plugin, columns, out, row),
            _ => Err(self.shape_mismatch()),
        }
    }

    /// Refuses an operand count outside the declared arity, with the message `call` gives.
    #[inline]
    pub(crate) fn check_arity(&self, n: usize) -> Result<(), CalcError> {
        let (min, max) = match self.kind {
            OperationKind::Infix { .. } => (2, Some(2)),
            OperationKind::Function {
                min_arity,
                max_arity,
            } => (min_arity as usize, max_arity.map(|m| m as usize)),
        };
        if n < min || max.is_some_and(|m| n > m) {
            return Err(self.arity_error(min, max, n));
        }
        Ok(())
    }

    #[cold]
    fn arity_error(&self, min: usize, max: Option<usize>, n: usize) -> CalcError {
        CalcError::invalid_argument(format!(
            "{} takes {}, got {n}",
            self.name,
            arity_text(min, max)
        ))
    }

    #[cold]
    fn shape_mismatch(&self) -> CalcError {
        CalcError::invalid_argument(format!(
            "{}: operand count does not match its implementation",
            self.name
        ))
    }
}

/// The batch loop of a unary body. Tight, with no bounds checks, so that the compiler can
/// vectorise a simple infallible body once it is inlined.
#[inline]
fn unary_rows<P>(
    f: fn(&P, f64) -> Result<f64, CalcError>,
    plugin: &P,
    a: &[f64],
    out: &mut [f64],
    row: &mut usize,
) -> Result<(), CalcError> {
    for (r, (o, &x)) in out.iter_mut().zip(a).enumerate() {
        *row = r;
        *o = f(plugin, x)?;
    }
    Ok(())
}

/// The batch loop of a binary body: `out[r] = f(a[r], b[r])`. See [`unary_rows`].
#[inline]
fn binary_rows<P>(
    f: fn(&P, f64, f64) -> Result<f64, CalcError>,
    plugin: &P,
    a: &[f64],
    b: &[f64],
    out: &mut [f64],
    row: &mut usize,
) -> Result<(), CalcError> {
    for (r, ((o, &x), &y)) in out.iter_mut().zip(a).zip(b).enumerate() {
        *row = r;
        *o = f(plugin, x, y)?;
    }
    Ok(())
}

/// Operands per row that the n-ary batch loop gathers on the stack; wider rows use one heap
/// buffer for the whole batch.
const STACK_OPERANDS: usize = 16;

/// The batch loop of an n-ary body: gathers each row's operands into one buffer.
fn nary_rows<P>(
    f: fn(&P, &[f64]) -> Result<f64, CalcError>,
    plugin: &P,
    columns: &[&[f64]],
    out: &mut [f64],
    row: &mut usize,
) -> Result<(), CalcError> {
    let mut stack = [0.0f64; STACK_OPERANDS];
    let mut heap = Vec::new();
    let args: &mut [f64] = if columns.len() <= STACK_OPERANDS {
        &mut stack[..columns.len()]
    } else {
        heap.resize(columns.len(), 0.0);
        &mut heap
    };
    for (r, o) in out.iter_mut().enumerate() {
        *row = r;
        for (arg, column) in args.iter_mut().zip(columns) {
            *arg = column[r];
        }
        *o = f(plugin, args)?;
    }
    Ok(())
}

fn arity_text(min: usize, max: Option<usize>) -> String {
    match max {
        Some(m) if m == min => format!("{min} operand{}", if min == 1 { "" } else { "s" }),
        Some(m) => format!("{min} to {m} operands"),
        None => format!("at least {min} operand{}", if min == 1 { "" } else { "s" }),
    }
}

/// A calc plugin written in Rust. Export it with [`crate::export_plugin!`].
///
/// The instance returned by [`Plugin::init`] is shared by all calls, possibly from several
/// threads at once (hence `Sync`); it is dropped at the host's `shutdown`.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// Plugin name, unique among loaded plugins: 1 to 64 characters of `[A-Za-z0-9_.-]`.
    const NAME: &'static str;
    /// The plugin's version, semver; usually `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;
    /// Who wrote it.
    const AUTHOR: &'static str = "";
    /// One line for humans.
    const DESCRIPTION: &'static str = "";
    /// Semver requirement on the host's API version.
    const API_REQUIREMENT: &'static str = crate::API_REQUIREMENT_DEFAULT;
    /// The ABI minor the plugin requires of the host: hosts with an older minor refuse it. The
    /// default, this SDK's minor, is right for most plugins. Lower it to also run in older hosts
    /// when the plugin needs nothing that minor lacks, e.g. `2` for a plugin that polls the
    /// deadline (ABI 1.3) only when the host offers it: [`Host::deadline_expired`] is then false.
    /// What the descriptor gained after that minor (`save_state`: 1.1, `execute_batch`: 1.2) is
    /// ignored by every host, so do not go below the minor of a hook you rely on.
    const ABI_MINOR: u16 = abi::CALC_ABI_VERSION_MINOR;
    /// The operations, at most [`crate::export::MAX_OPERATIONS`].
    const OPERATIONS: &'static [Operation<Self>];
    /// The application-defined interfaces it implements (ABI 1.4; see [`crate::interface`]), at
    /// most `CALC_MAX_INTERFACES`. None by default.
    const INTERFACES: &'static [crate::Interface] = &[];

    /// Creates the instance. An error rejects the plugin with its message. On a hot reload,
    /// [`Host::handover_state`] returns what the previous version's [`Plugin::save_state`]
    /// produced.
    fn init(host: &Host) -> Result<Self, CalcError>;

    /// Saves state for the next version of this plugin on hot reload (ABI 1.1); the new
    /// version reads it in `init` with [`Host::handover_state`]. The format is yours: version
    /// it. Calls to operations may run concurrently on other threads. The default saves nothing,
    /// so the new version starts fresh.
    fn save_state(&self) -> Result<Vec<u8>, CalcError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    struct P;
    const ADD: Operation<P> =
        Operation::infix("add", "+", 10, Associativity::Left, "", |_, a, b| Ok(a + b));
    const NEG: Operation<P> = Operation::unary("neg", "", |_, a| Ok(-a));
    const MAX: Operation<P> = Operation::function("max", 1, None, "", |_, xs| {
        Ok(xs.iter().copied().fold(f64::NEG_INFINITY, f64::max))
    });

    #[test]
    fn call_dispatches_by_shape() {
        assert_eq!(ADD.call(&P, &[2.0, 3.0]), Ok(5.0));
        assert_eq!(NEG.call(&P, &[2.0]), Ok(-2.0));
        assert_eq!(MAX.call(&P, &[1.0, 7.0, 3.0]), Ok(7.0));
    }

    #[test]
    fn call_rejects_wrong_arity_with_a_message() {
        let e = ADD.call(&P, &[1.0]).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert_eq!(e.message, "add takes 2 operands, got 1");
        let e = MAX.call(&P, &[]).unwrap_err();
        assert_eq!(e.message, "max takes at least 1 operand, got 0");
    }
}
