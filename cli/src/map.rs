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

/// A record may hold at most this many bytes of fields: a quote left open would otherwise
/// read the rest of the input into one record.
const MAX_RECORD_BYTES: usize = 8 << 20;

/// The line ends in `bytes` (CRLF, LF or CR), given whether the byte before was a CR; updates
/// it.
fn line_ends(bytes: &[u8], after_cr: &mut bool) -> u64 {
    let mut n = 0;
    let mut cr = *after_cr;
    for &b in bytes {
        n += u64::from(b == b'\r' || (b == b'\n' && !cr));
        cr = b == b'\r';
    }
    *after_cr = cr;
    n
}

/// CSV records as RFC 4180 reads them (`csv_core` does the parsing): quoted fields may hold
/// commas, escaped quotes (`""`) and line ends; CRLF, LF or CR ends a record; empty lines are
/// skipped. Streaming: one record (at most [`MAX_RECORD_BYTES`]) and one buffer of input in
/// memory. Each record comes with the
/// line it starts on, counted here from the bytes consumed (the parser's own count does not
/// see the empty lines it skips before a record); CRLF, LF and CR each end one line.
struct Records<R> {
    parser: csv_core::Reader,
    input: BufReader<R>,
    /// Line ends consumed so far.
    newlines: u64,
    /// Whether the last byte consumed was a CR (so that an LF after it ends no other line).
    after_cr: bool,
    /// The fields of the current record, one after the other.
    data: Vec<u8>,
    /// Where each field of `data` ends.
    ends: Vec<usize>,
    /// How many fields the current record has.
    fields: usize,
}

impl<R: Read> Records<R> {
    fn new(input: R) -> Self {
        Records {
            parser: csv_core::Reader::new(),
            input: BufReader::with_capacity(1 << 16, input),
            newlines: 0,
            after_cr: false,
            data: vec![0; 1024],
            ends: vec![0; 64],
            fields: 0,
        }
    }

    /// Reads the next record; returns the line it starts on, or `None` at the end of the
    /// input.
    fn next(&mut self) -> Result<Option<u64>, Stop> {
        self.read()
            .map_err(|e| usage(format!("reading the input: {e}")))?
    }

    /// [`Records::next`], with input errors apart.
    fn read(&mut self) -> io::Result<Result<Option<u64>, Stop>> {
        // Skip the line ends before the record here, to know the line it starts on.
        loop {
            let buf = self.input.fill_buf()?;
            let skip = buf
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .count();
            if skip == 0 {
                break;
            }
            self.newlines += line_ends(&buf[..skip], &mut self.after_cr);
            self.input.consume(skip);
        }
        let line = self.newlines + 1;
        let (mut out, mut nends) = (0, 0);
        loop {
            let buf = self.input.fill_buf()?;
            let (result, nin, nout, nend) =
                self.parser
                    .read_record(buf, &mut self.data[out..], &mut self.ends[nends..]);
            self.newlines += line_ends(&buf[..nin], &mut self.after_cr);
            self.input.consume(nin);
            out += nout;
            nends += nend;
            match result {
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull => {
                    let len = self.data.len();
                    if len >= MAX_RECORD_BYTES {
                        return Ok(Err(usage(format!(
                            "line {line}: a record longer than {} MiB (a quote left open?)",
                            MAX_RECORD_BYTES >> 20
                        ))));
                    }
                    self.data.resize(len * 2, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len();
                    self.ends.resize(len * 2, 0);
                }
                csv_core::ReadRecordResult::Record => {
                    self.fields = nends;
                    return Ok(Ok(Some(line)));
                }
                csv_core::ReadRecordResult::End => return Ok(Ok(None)),
            }
        }
    }

    /// The number of fields of the current record.
    fn len(&self) -> usize {
        self.fields
    }

    /// Field `i` of the current record.
    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }

    /// The fields of the current record.
    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.fields).map(|i| self.field(i))
    }
}

/// How each record is read.
enum Format {
    /// One number per line.
    Lines,
    /// CSV: for each field, the variable it holds (if any), and the header's names.
    Csv {
        fields: Vec<Option<usize>>,
        names: Vec<String>,
    },
}

/// A field's text, for messages (lossy when it is not UTF-8).
fn text(field: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(field)
}

/// A record's fields joined back with commas, for messages.
fn joined<R: Read>(record: &Records<R>) -> String {
    record.iter().map(text).collect::<Vec<_>>().join(",")
}

/// Whether a record is a line of spaces (the reader skips empty lines). An empty quoted field
/// (`""`) is not blank: in one column, it is a missing number.
fn is_blank<R: Read>(record: &Records<R>) -> bool {
    record.len() == 1 && !record.field(0).is_empty() && record.field(0).trim_ascii().is_empty()
}

/// Parses a field, surrounding spaces ignored.
fn parse_number(field: &[u8], line: u64, column: usize, name: Option<&str>) -> Result<f64, Stop> {
    let field = field.trim_ascii();
    std::str::from_utf8(field)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .ok_or_else(|| {
            let name = name.map(|n| format!(" ({n})")).unwrap_or_default();
            usage(format!(
                "line {line}, column {column}{name}: invalid number '{}'",
                text(field)
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
    let mut reader = Records::new(Counting {
        inner: input,
        bytes: 0,
    });
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

    /// Reads one non-blank record in `format`, found at line `line_no`.
    fn push<R: Read>(
        &mut self,
        format: &Format,
        record: &Records<R>,
        line_no: u64,
    ) -> Result<(), Stop> {
        match format {
            Format::Lines if record.len() == 1 => {
                self.columns[0].push(parse_number(record.field(0), line_no, 1, None)?)
            }
            // A decimal comma, or several numbers on a line: not a number.
            Format::Lines => {
                return Err(usage(format!(
                    "line {line_no}, column 1: invalid number '{}'",
                    joined(record)
                )))
            }
            Format::Csv { fields, names } => {
                if record.len() != names.len() {
                    return Err(usage(format!(
                        "line {line_no}: {} column{} where the header has {}",
                        record.len(),
                        if record.len() == 1 { "" } else { "s" },
                        names.len()
                    )));
                }
                for (i, (field, var)) in record.iter().zip(fields).enumerate() {
                    if let Some(v) = *var {
                        match parse_number(field, line_no, i + 1, Some(&names[i])) {
                            Ok(x) => self.columns[v].push(x),
                            Err(e) => {
                                // Keep the columns the same length when the row is refused.
                                for c in &mut self.columns {
                                    c.truncate(self.lines.len());
                                }
                                return Err(e);
                            }
                        }
                    }
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
    reader: &mut Records<Counting<Box<dyn Read>>>,
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
    loop {
        let line_no = match reader.next() {
            Ok(Some(line_no)) => line_no,
            Ok(None) => return batch.flush(program, out),
            Err(stop) => {
                batch.flush(program, out)?;
                return Err(stop);
            }
        };
        let record = &*reader;
        let pushed = if is_blank(record) {
            Ok(())
        } else {
            match &format {
                Some(f) => batch.push(f, record, line_no),
                None => detect(vars, record, line_no).and_then(|f| {
                    let first = match f {
                        Format::Lines => batch.push(&f, record, line_no),
                        Format::Csv { .. } => Ok(()),
                    };
                    format = Some(f);
                    first
                }),
            }
        };
        if let Err(stop) = pushed {
            // The rows before the bad line come first, and so does an error in them.
            batch.flush(program, out)?;
            return Err(stop);
        }
        if batch.lines.len() >= BATCH_ROWS {
            batch.flush(program, out)?;
            progress.update(reader.input.get_ref().bytes, batch.done);
        }
    }
}

/// Decides the format from the first non-blank record: CSV with this header when the
/// expression has several variables, the record has several fields, or it is exactly the one
/// variable's name; otherwise one number per line.
fn detect<R: Read>(vars: &[String], record: &Records<R>, line_no: u64) -> Result<Format, Stop> {
    if vars.len() == 1 && record.len() == 1 && record.field(0).trim_ascii() != vars[0].as_bytes() {
        return Ok(Format::Lines);
    }
    let names: Vec<String> = record
        .iter()
        .map(|f| text(f.trim_ascii()).into_owned())
        .collect();
    let mut fields = vec![None; names.len()];
    for (v, var) in vars.iter().enumerate() {
        match names.iter().position(|n| n == var) {
            Some(i) => fields[i] = Some(v),
            None if names.iter().all(|n| n.parse::<f64>().is_ok()) => {
                let wanted = vars.join(", ");
                let found = joined(record);
                return Err(usage(format!(
                    "line {line_no}: the input needs a header row naming its columns ({wanted}), found '{found}'"
                )));
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
