//! `calc map EXPR [FILE]`: evaluates a compiled expression over every row of a file or of
//! standard input, in batches (see `calc_host::expr::Program`), streaming: only one batch of
//! rows is in memory at a time.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use calc_host::expr::{compile_program, variables};
use calc_host::{EvalError, PluginManager};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{report_eval_error, Number, EXIT_CALL_FAILED, EXIT_OK, EXIT_USAGE};

/// Rows read before each evaluation (a few of the program's chunks).
const BATCH_ROWS: usize = 4 * calc_host::expr::CHUNK_ROWS;

/// An input file at least this large gets a progress bar (when stderr is a terminal).
const PROGRESS_MIN_FILE_BYTES: u64 = 32 << 20;

/// Standard input gets a progress display once it has been read this long (when stderr is a
/// terminal).
const PROGRESS_STDIN_AFTER: Duration = Duration::from_secs(2);

/// Why mapping stopped early: the message (without `calc: error: `) and the exit status.
struct Stop(String, u8);

fn usage(message: String) -> Stop {
    Stop(message, EXIT_USAGE)
}

/// Counts the bytes read through it, for the progress bar.
struct Counting<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Progress on stderr: never when stderr is not a terminal; for a large file from the start,
/// for piped standard input once it has taken a while.
struct Progress {
    bar: Option<ProgressBar>,
    /// Standard input: when to start showing progress.
    stdin_since: Option<Instant>,
}

impl Progress {
    fn new(file_size: Option<u64>) -> Self {
        let mut progress = Progress {
            bar: None,
            stdin_since: None,
        };
        if !io::stderr().is_terminal() {
            return progress;
        }
        match file_size {
            Some(size) if size >= PROGRESS_MIN_FILE_BYTES => {
                let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "calc map {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                progress.bar = Some(bar);
            }
            Some(_) => {}
            // Not while someone types the input.
            None if io::stdin().is_terminal() => {}
            None => progress.stdin_since = Some(Instant::now()),
        }
        progress
    }

    fn update(&mut self, bytes: u64, rows: u64) {
        if let Some(since) = self.stdin_since {
            if since.elapsed() >= PROGRESS_STDIN_AFTER {
                self.stdin_since = None;
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "calc map {spinner} {bytes} read ({bytes_per_sec}), {msg} rows",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                self.bar = Some(bar);
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_message(rows.to_string());
            bar.set_position(bytes);
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// How each line is read.
enum Format {
    /// One number per line.
    Lines,
    /// CSV: for each field, the variable it holds (if any), and the header's names.
    Csv {
        fields: Vec<Option<usize>>,
        names: Vec<String>,
    },
}

/// Removes surrounding whitespace and one pair of double quotes.
fn unquote(field: &str) -> &str {
    let f = field.trim();
    f.strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(f)
}

fn parse_number(text: &str, line: u64, column: usize, name: Option<&str>) -> Result<f64, Stop> {
    let text = unquote(text);
    text.parse::<f64>().map_err(|_| {
        let name = name.map(|n| format!(" ({n})")).unwrap_or_default();
        usage(format!(
            "line {line}, column {column}{name}: invalid number '{text}'"
        ))
    })
}

/// Runs `calc map`; returns the exit status.
pub(crate) fn run(manager: &PluginManager, expression: &str, file: Option<&Path>) -> u8 {
    let vars = match variables(manager, expression) {
        Ok(v) => v,
        Err(e) => return report_eval_error(expression, &e),
    };
    let names: Vec<&str> = vars.iter().map(String::as_str).collect();
    let program = match compile_program(manager, expression, &names) {
        Ok(p) => p,
        Err(e) => return report_eval_error(expression, &e),
    };
    if vars.is_empty() {
        eprintln!(
            "calc: error: the expression uses no variable, so there is nothing to map (use `calc eval`)"
        );
        return EXIT_USAGE;
    }
    let (input, size): (Box<dyn Read>, Option<u64>) = match file {
        Some(path) if path != Path::new("-") => match File::open(path) {
            Ok(f) => {
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                (Box::new(f), Some(size))
            }
            Err(e) => {
                eprintln!("calc: error: {}: {e}", path.display());
                return EXIT_USAGE;
            }
        },
        _ => (Box::new(io::stdin().lock()), None),
    };
    let mut reader = BufReader::with_capacity(
        1 << 16,
        Counting {
            inner: input,
            bytes: 0,
        },
    );
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut progress = Progress::new(size);
    let result = map(&program, &vars, &mut reader, &mut out, &mut progress);
    progress.clear();
    let flushed = out.flush();
    match result {
        Ok(()) => match flushed {
            Ok(()) => EXIT_OK,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_OK,
            Err(e) => {
                eprintln!("calc: error: writing the results: {e}");
                EXIT_CALL_FAILED
            }
        },
        Err(Stop(message, _)) if message.is_empty() => EXIT_OK,
        Err(Stop(message, code)) => {
            eprintln!("calc: error: {message}");
            code
        }
    }
}

/// Writes one result per line; a closed pipe ends mapping quietly (the empty [`Stop`]).
fn write_results(out: &mut impl Write, results: &[f64]) -> Result<(), Stop> {
    for &x in results {
        writeln!(out, "{}", Number(x)).map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => Stop(String::new(), EXIT_OK),
            _ => Stop(format!("writing the results: {e}"), EXIT_CALL_FAILED),
        })?;
    }
    Ok(())
}

/// One batch of rows read and not yet evaluated.
struct Batch {
    columns: Vec<Vec<f64>>,
    /// The line number of each row.
    lines: Vec<u64>,
    results: Vec<f64>,
    /// Rows evaluated so far.
    done: u64,
}

impl Batch {
    /// Evaluates the rows read and writes their results; an operation's failure stops after
    /// the results of the rows before it.
    fn flush(
        &mut self,
        program: &calc_host::expr::Program,
        out: &mut impl Write,
    ) -> Result<(), Stop> {
        if self.lines.is_empty() {
            return Ok(());
        }
        let slices: Vec<&[f64]> = self.columns.iter().map(Vec::as_slice).collect();
        let evaluated = program.eval_columns(&slices, &mut self.results);
        write_results(out, &self.results)?;
        if let Err((row, e)) = evaluated {
            let message = match e {
                EvalError::Call(c) => c.to_string(),
                other => other.to_string(),
            };
            return Err(Stop(
                format!("line {}: {message}", self.lines[row]),
                EXIT_CALL_FAILED,
            ));
        }
        self.done += self.lines.len() as u64;
        for c in &mut self.columns {
            c.clear();
        }
        self.lines.clear();
        Ok(())
    }

    /// Reads one non-blank line in `format`.
    fn push(&mut self, format: &Format, line: &str, line_no: u64) -> Result<(), Stop> {
        match format {
            Format::Lines => self.columns[0].push(parse_number(line, line_no, 1, None)?),
            Format::Csv { fields, names } => {
                let mut found = 0;
                for (i, field) in line.split(',').enumerate() {
                    if let Some(&Some(v)) = fields.get(i) {
                        let x = parse_number(field, line_no, i + 1, Some(&names[i]));
                        // Keep the columns the same length when the row is refused.
                        if let Err(e) = x {
                            for c in &mut self.columns {
                                c.truncate(self.lines.len());
                            }
                            return Err(e);
                        }
                        self.columns[v].extend(x);
                        found += 1;
                    }
                }
                if found < self.columns.len() {
                    for c in &mut self.columns {
                        c.truncate(self.lines.len());
                    }
                    let count = line.split(',').count();
                    return Err(usage(format!(
                        "line {line_no}: {count} column{} where the header has {}",
                        if count == 1 { "" } else { "s" },
                        names.len()
                    )));
                }
            }
        }
        self.lines.push(line_no);
        Ok(())
    }
}

fn map(
    program: &calc_host::expr::Program,
    vars: &[String],
    reader: &mut BufReader<Counting<Box<dyn Read>>>,
    out: &mut impl Write,
    progress: &mut Progress,
) -> Result<(), Stop> {
    let mut format: Option<Format> = None;
    let mut batch = Batch {
        columns: vec![Vec::with_capacity(BATCH_ROWS); vars.len()],
        lines: Vec::with_capacity(BATCH_ROWS),
        results: Vec::with_capacity(BATCH_ROWS),
        done: 0,
    };
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| usage(format!("reading the input: {e}")))?;
        if n == 0 {
            return batch.flush(program, out);
        }
        line_no += 1;
        let pushed = match std::str::from_utf8(&buf).map(str::trim) {
            Err(_) => Err(usage(format!("line {line_no}: not UTF-8"))),
            Ok("") => Ok(()),
            Ok(line) => match &format {
                Some(f) => batch.push(f, line, line_no),
                None => detect(vars, line, line_no).and_then(|f| {
                    let first = match f {
                        Format::Lines => batch.push(&f, line, line_no),
                        Format::Csv { .. } => Ok(()),
                    };
                    format = Some(f);
                    first
                }),
            },
        };
        if let Err(stop) = pushed {
            // The rows before the bad line come first, and so does an error in them.
            batch.flush(program, out)?;
            return Err(stop);
        }
        if batch.lines.len() >= BATCH_ROWS {
            batch.flush(program, out)?;
            progress.update(reader.get_ref().bytes, batch.done);
        }
    }
}

/// Decides the format from the first non-blank line: CSV with this header when the expression
/// has several variables, the line holds a comma, or it is exactly the one variable's name;
/// otherwise one number per line.
fn detect(vars: &[String], line: &str, line_no: u64) -> Result<Format, Stop> {
    if vars.len() == 1 && !line.contains(',') && unquote(line) != vars[0] {
        return Ok(Format::Lines);
    }
    let names: Vec<String> = line.split(',').map(|f| unquote(f).to_string()).collect();
    let mut fields = vec![None; names.len()];
    for (v, var) in vars.iter().enumerate() {
        match names.iter().position(|n| n == var) {
            Some(i) => fields[i] = Some(v),
            None if names.iter().all(|n| n.parse::<f64>().is_ok()) => {
                return Err(usage(format!(
                    "line {line_no}: the input needs a header row naming its columns ({}), found '{line}'",
                    vars.join(", ")
                )))
            }
            None => {
                return Err(usage(format!(
                    "line {line_no}: the header has no column '{var}' (columns: {})",
                    names.join(", ")
                )))
            }
        }
    }
    Ok(Format::Csv { fields, names })
}
