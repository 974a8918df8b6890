//! The wire protocol between the host and a plugin runner (`calc-plugin-runner`), over the
//! Unix socket that is the runner's standard input.
//!
//! Every message is one *frame*: a little-endian `u32` payload length, then the payload. The
//! payload starts with a one-byte tag; numbers are little-endian (`f64` as its IEEE bits),
//! strings and byte blobs are a `u32` length then the bytes.
//!
//! ```text
//! runner -> host   Hello { protocol, info (JSON) }        once, after loading and validating
//!                  LoadFailed { kind, message }           instead, and the runner exits
//! host -> runner   Init { config, state }                 once -> Ready | InitFailed
//!                  Call { op, timeout_us, args }          -> Value
//!                  Batch { op, timeout_us, rows, columns } -> Batch
//!                  SaveState                              -> State
//!                  Shutdown                               the runner shuts the plugin down, exits
//! ```
//!
//! A runner started with `--vet` (a *vetter*) holds no plugin: it sends `Hello` with empty info,
//! then answers each `Vet { path }` with `Vetted { verdict }` (JSON: `{"valid": PluginInfo}` or
//! `{"refused": {"kind", "message", "mismatches"}}`), opening, validating and closing the file
//! in its own process, until `Shutdown` or the end of its input.
//!
//! `timeout_us` is the time left for the call (0: none), from which the runner sets the
//! cooperative deadline plugins can poll. Decoding never panics: a malformed or truncated
//! payload is an error.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use crate::info::PluginInfo;

/// Bumped whenever a message changes; the host refuses a runner that speaks another version.
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest payload either side accepts (a batch of about 8 million values), so that a corrupt
/// length cannot make the other side allocate without bound.
pub const MAX_FRAME: usize = 64 << 20;

/// A message from the host to the runner.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Run the plugin's `init` with these configuration values and saved state.
    Init {
        /// Values the plugin reads through `get_config`.
        config: BTreeMap<String, String>,
        /// State saved by the previous version (hot reload).
        state: Option<Vec<u8>>,
    },
    /// Call operation `op` once.
    Call {
        /// Index of the operation in the plugin's table.
        op: u32,
        /// Microseconds the call may take (0: no limit).
        timeout_us: u64,
        /// Operands.
        args: Vec<f64>,
    },
    /// Call operation `op` over columns of operands.
    Batch {
        /// Index of the operation in the plugin's table.
        op: u32,
        /// Microseconds the batch may take (0: no limit).
        timeout_us: u64,
        /// Rows in the batch.
        rows: u32,
        /// Operand `k` of every row, column by column (`columns.len() * rows` values).
        columns: Vec<Vec<f64>>,
    },
    /// Ask the plugin to save its state (`save_state`).
    SaveState,
    /// Shut the plugin down and exit.
    Shutdown,
    /// (Vetter) Open the library at `path`, call `plugin_entry`, validate the descriptor, and
    /// close it again.
    Vet {
        /// The file, as raw bytes (`OsStr`).
        path: Vec<u8>,
    },
}

/// A message from the runner to the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The plugin loaded and passed validation; `info` is its `PluginInfo` as JSON.
    Hello {
        /// The runner's [`PROTOCOL_VERSION`].
        protocol: u32,
        /// `PluginInfo`, JSON.
        info: String,
    },
    /// The plugin was refused; the runner exits.
    LoadFailed {
        /// `LoadError::kind()`.
        kind: String,
        /// The error, one line, naming the file.
        message: String,
    },
    /// `init` succeeded.
    Ready,
    /// `init` failed.
    InitFailed {
        /// Its status code.
        status: i32,
        /// Its message.
        message: String,
    },
    /// The result of a `Call`.
    Value {
        /// `CALC_STATUS_*`.
        status: i32,
        /// The result (meaningful when `status` is OK).
        value: f64,
        /// The error message (empty on success).
        message: String,
    },
    /// The result of a `Batch`.
    Batch {
        /// `CALC_STATUS_*` of the first failing row, or OK.
        status: i32,
        /// The failing row (0 on success).
        failed_row: u32,
        /// Results of the rows before the failing one (all rows on success).
        values: Vec<f64>,
        /// The error message (empty on success).
        message: String,
    },
    /// (Vetter) What validating the file of a `Vet` gave, as JSON.
    Vetted {
        /// `{"valid": PluginInfo}` or `{"refused": {"kind", "message", "mismatches"}}`.
        verdict: String,
    },
    /// The result of `SaveState`.
    State {
        /// `CALC_STATUS_*`.
        status: i32,
        /// The saved bytes (`None`: nothing saved).
        state: Option<Vec<u8>>,
        /// The error message (empty on success).
        message: String,
    },
}

/// A payload that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed runner message: {0}")]
pub struct DecodeError(pub &'static str);

/// Appends a frame holding `payload` (written by `f`) to `out`.
fn frame(out: &mut Vec<u8>, f: impl FnOnce(&mut Writer)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    f(&mut Writer(out));
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64s(&mut self, v: &[f64]) {
        self.u32(v.len() as u32);
        for x in v {
            self.0.extend_from_slice(&x.to_bits().to_le_bytes());
        }
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn opt_bytes(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.u8(0),
            Some(b) => {
                self.u8(1);
                self.bytes(b);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(self.u32()? as i32)
    }
    fn len(&mut self, element: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(element) > self.0.len() {
            return Err(DecodeError("length beyond the end of the message"));
        }
        Ok(n)
    }
    fn f64s(&mut self) -> Result<Vec<f64>, DecodeError> {
        let n = self.len(8)?;
        let bytes = self.take(n * 8)?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                f64::from_bits(u64::from_le_bytes(a))
            })
            .collect())
    }
    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.len(1)?;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?).map_err(|_| DecodeError("string is not UTF-8"))
    }
    fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.bytes().map(Some),
            _ => Err(DecodeError("bad option tag")),
        }
    }
    fn end(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

const INIT: u8 = 1;
const CALL: u8 = 2;
const BATCH: u8 = 3;
const SAVE_STATE: u8 = 4;
const SHUTDOWN: u8 = 5;
const VET: u8 = 6;

const HELLO: u8 = 101;
const LOAD_FAILED: u8 = 102;
const READY: u8 = 103;
const INIT_FAILED: u8 = 104;
const VALUE: u8 = 105;
const BATCH_DONE: u8 = 106;
const STATE: u8 = 107;
const VETTED: u8 = 108;

/// Appends the frame of a `Call` to `out` without building a [`Request`] (the hot path).
pub fn encode_call(out: &mut Vec<u8>, op: u32, timeout_us: u64, args: &[f64]) {
    frame(out, |w| {
        w.u8(CALL);
        w.u32(op);
        w.u64(timeout_us);
        w.f64s(args);
    });
}

/// Appends the frame of a `Batch` to `out` without copying the columns into a [`Request`].
pub fn encode_batch(out: &mut Vec<u8>, op: u32, timeout_us: u64, rows: u32, columns: &[&[f64]]) {
    frame(out, |w| {
        w.u8(BATCH);
        w.u32(op);
        w.u64(timeout_us);
        w.u32(rows);
        w.u32(columns.len() as u32);
        for c in columns {
            w.f64s(c);
        }
    });
}

impl Request {
    /// Appends this request's frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Request::Call {
                op,
                timeout_us,
                args,
            } => encode_call(out, *op, *timeout_us, args),
            Request::Batch {
                op,
                timeout_us,
                rows,
                columns,
            } => {
                let cols: Vec<&[f64]> = columns.iter().map(Vec::as_slice).collect();
                encode_batch(out, *op, *timeout_us, *rows, &cols);
            }
            Request::Init { config, state } => frame(out, |w| {
                w.u8(INIT);
                w.u32(config.len() as u32);
                for (k, v) in config {
                    w.bytes(k.as_bytes());
                    w.bytes(v.as_bytes());
                }
                w.opt_bytes(state.as_deref());
            }),
            Request::SaveState => frame(out, |w| w.u8(SAVE_STATE)),
            Request::Shutdown => frame(out, |w| w.u8(SHUTDOWN)),
            Request::Vet { path } => frame(out, |w| {
                w.u8(VET);
                w.bytes(path);
            }),
        }
    }

    /// Decodes a payload (without its length prefix).
    pub fn decode(payload: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader(payload);
        let request = match r.u8()? {
            INIT => {
                let n = r.len(8)?;
                let mut config = BTreeMap::new();
                for _ in 0..n {
                    let k = r.string()?;
                    config.insert(k, r.string()?);
                }
                Request::Init {
                    config,
                    state: r.opt_bytes()?,
                }
            }
            CALL => Request::Call {
                op: r.u32()?,
                timeout_us: r.u64()?,
                args: r.f64s()?,
            },
            BATCH => {
                let op = r.u32()?;
                let timeout_us = r.u64()?;
                let rows = r.u32()?;
                let n = r.len(4)?;
                let columns = (0..n).map(|_| r.f64s()).collect::<Result<Vec<_>, _>>()?;
                if columns.iter().any(|c| c.len() != rows as usize) {
                    return Err(DecodeError("column length differs from the row count"));
                }
                Request::Batch {
                    op,
                    timeout_us,
                    rows,
                    columns,
                }
            }
            SAVE_STATE => Request::SaveState,
            SHUTDOWN => Request::Shutdown,
            VET => Request::Vet { path: r.bytes()? },
            _ => return Err(DecodeError("unknown request tag")),
        };
        r.end()?;
        Ok(request)
    }
}

impl Reply {
    /// Appends this reply's frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        frame(out, |w| match self {
            Reply::Hello { protocol, info } => {
                w.u8(HELLO);
                w.u32(*protocol);
                w.bytes(info.as_bytes());
            }
            Reply::LoadFailed { kind, message } => {
                w.u8(LOAD_FAILED);
                w.bytes(kind.as_bytes());
                w.bytes(message.as_bytes());
            }
            Reply::Ready => w.u8(READY),
            Reply::InitFailed { status, message } => {
                w.u8(INIT_FAILED);
                w.i32(*status);
                w.bytes(message.as_bytes());
            }
            Reply::Value {
                status,
                value,
                message,
            } => {
                w.u8(VALUE);
                w.i32(*status);
                w.u64(value.to_bits());
                w.bytes(message.as_bytes());
            }
            Reply::Batch {
                status,
                failed_row,
                values,
                message,
            } => {
                w.u8(BATCH_DONE);
                w.i32(*status);
                w.u32(*failed_row);
                w.f64s(values);
                w.bytes(message.as_bytes());
            }
            Reply::State {
                status,
                state,
                message,
            } => {
                w.u8(STATE);
                w.i32(*status);
                w.opt_bytes(state.as_deref());
                w.bytes(message.as_bytes());
            }
            Reply::Vetted { verdict } => {
                w.u8(VETTED);
                w.bytes(verdict.as_bytes());
            }
        });
    }

    /// Decodes a payload (without its length prefix).
    pub fn decode(payload: &[u8]) -> Result<Reply, DecodeError> {
        let mut r = Reader(payload);
        let reply = match r.u8()? {
            HELLO => Reply::Hello {
                protocol: r.u32()?,
                info: r.string()?,
            },
            LOAD_FAILED => Reply::LoadFailed {
                kind: r.string()?,
                message: r.string()?,
            },
            READY => Reply::Ready,
            INIT_FAILED => Reply::InitFailed {
                status: r.i32()?,
                message: r.string()?,
            },
            VALUE => Reply::Value {
                status: r.i32()?,
                value: f64::from_bits(r.u64()?),
                message: r.string()?,
            },
            BATCH_DONE => Reply::Batch {
                status: r.i32()?,
                failed_row: r.u32()?,
                values: r.f64s()?,
                message: r.string()?,
            },
            STATE => Reply::State {
                status: r.i32()?,
                state: r.opt_bytes()?,
                message: r.string()?,
            },
            VETTED => Reply::Vetted {
                verdict: r.string()?,
            },
            _ => return Err(DecodeError("unknown reply tag")),
        };
        r.end()?;
        Ok(reply)
    }
}

/// The length announced by a frame's 4-byte prefix, checked against [`MAX_FRAME`].
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, DecodeError> {
    let n = u32::from_le_bytes(prefix) as usize;
    if n == 0 || n > MAX_FRAME {
        return Err(DecodeError("frame length out of range"));
    }
    Ok(n)
}

/// The metadata a `Hello` carries (`PluginInfo` as JSON).
pub(crate) fn parse_hello(text: &str) -> Result<PluginInfo, String> {
    serde_json::from_str(text).map_err(|e| format!("malformed metadata: {e}"))
}

/// The `Hello.info` text for `info` (see [`parse_hello`]).
pub(crate) fn hello_text(info: &PluginInfo) -> String {
    serde_json::to_string(info).expect("metadata serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(frame: &[u8]) -> &[u8] {
        let n = frame_len([frame[0], frame[1], frame[2], frame[3]]).unwrap();
        assert_eq!(frame.len(), 4 + n);
        &frame[4..]
    }

    #[test]
    fn requests_round_trip() {
        let cases = vec![
            Request::Init {
                config: BTreeMap::from([("k".into(), "v".into()), ("é".into(), String::new())]),
                state: Some(vec![1, 2, 3]),
            },
            Request::Init {
                config: BTreeMap::new(),
                state: None,
            },
            Request::Call {
                op: 3,
                timeout_us: 250_000,
                args: vec![1.5, -0.0, f64::INFINITY],
            },
            Request::Batch {
                op: 1,
                timeout_us: 0,
                rows: 2,
                columns: vec![vec![1.0, 2.0], vec![3.0, 4.0]],
            },
            Request::SaveState,
            Request::Shutdown,
            Request::Vet {
                path: b"/p/lib\xffx.so".to_vec(),
            },
        ];
        for request in cases {
            let mut out = Vec::new();
            request.encode(&mut out);
            assert_eq!(Request::decode(payload(&out)), Ok(request));
        }
    }

    #[test]
    fn replies_round_trip() {
        let cases = vec![
            Reply::Hello {
                protocol: PROTOCOL_VERSION,
                info: "{}".into(),
            },
            Reply::LoadFailed {
                kind: "bad_magic".into(),
                message: "x.so: not a calc plugin".into(),
            },
            Reply::Ready,
            Reply::InitFailed {
                status: 1,
                message: "no".into(),
            },
            Reply::Value {
                status: 0,
                value: 42.5,
                message: String::new(),
            },
            Reply::Batch {
                status: 3,
                failed_row: 1,
                values: vec![7.0],
                message: "division by zero".into(),
            },
            Reply::State {
                status: 0,
                state: Some(vec![9; 10]),
                message: String::new(),
            },
            Reply::Vetted {
                verdict: r#"{"refused":{"kind":"bad_magic"}}"#.into(),
            },
        ];
        for reply in cases {
            let mut out = Vec::new();
            reply.encode(&mut out);
            assert_eq!(Reply::decode(payload(&out)), Ok(reply));
        }
    }

    #[test]
    fn truncated_and_corrupt_payloads_are_errors_not_panics() {
        let mut out = Vec::new();
        Reply::Batch {
            status: 0,
            failed_row: 0,
            values: vec![1.0, 2.0, 3.0],
            message: "m".into(),
        }
        .encode(&mut out);
        let full = payload(&out).to_vec();
        for n in 0..full.len() {
            assert!(Reply::decode(&full[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut longer = full.clone();
        longer.push(0);
        assert_eq!(Reply::decode(&longer), Err(DecodeError("trailing bytes")));
        // A count far beyond the message is refused before allocating.
        let mut huge = vec![BATCH_DONE, 0, 0, 0, 0, 0, 0, 0, 0];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Reply::decode(&huge).is_err());
        assert!(Request::decode(&[200]).is_err());
        assert!(frame_len([0, 0, 0, 0]).is_err());
        assert!(frame_len(u32::MAX.to_le_bytes()).is_err());
    }
}
