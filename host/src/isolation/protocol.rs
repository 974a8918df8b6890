//! The wire protocol between the host and a plugin runner (`calc-plugin-runner`), over the
//! Unix socket that is the runner's standard input.
//!
//! Every message is one *frame*: a little-endian `u32` payload length (at most [`MAX_FRAME`]),
//! then the payload, a [`Request`] or a [`Reply`] in the [postcard] encoding of its serde
//! form: the variant's index as a varint, then the fields in order. Unsigned integers are
//! varints (LEB128), signed ones zigzag varints, `f64` its 8 little-endian IEEE bytes; a
//! string, byte blob or sequence is a varint count then its items; an `Option` a 0 or 1 byte
//! then the value. A list of `f64` (`args`, each of `columns`, `values`) travels as a byte blob
//! of its values' little-endian bytes (count in bytes, then 8 bytes a value), which is read in
//! one pass rather than value by value.
//!
//! ```text
//!                  index  message                                  answer
//! host -> runner   0      Call { op, timeout_us, args }             Value
//!                  1      Batch { op, timeout_us, rows, columns }   Batch
//!                  2      Init { config, state }                    Ready | InitFailed (once)
//!                  3      SaveState                                 State
//!                  4      Shutdown                                  the runner shuts the plugin
//!                                                                   down and exits
//!                  5      Vet { path }                              Vetted
//!                  6      CallBytes { interface, slot, timeout_us,  Bytes
//!                         input }
//! runner -> host   0      Hello { protocol, info }                  once, after loading and
//!                                                                   validating
//!                  1      LoadFailed { kind, message }              instead; the runner exits
//!                  2      Ready
//!                  3      InitFailed { status, message }
//!                  4      Value { status, value, message }
//!                  5      Batch { status, failed_row, values, message }
//!                  6      Vetted { verdict }
//!                  7      State { status, state, message }
//!                  8      Trial { report }                          instead of Hello (with
//!                                                                   --trial-unload); the runner
//!                                                                   exits
//!                  9      Bytes { status, output, message }
//! ```
//!
//! `Hello.info` is the plugin's [`PluginInfo`], `Vetted.verdict` a [`Verdict`] and
//! `Trial.report` a [`TrialUnload`], all encoded in the same way (not as JSON: see
//! `wire` below for the form `PluginInfo` takes). A runner started with `--vet` (a *vetter*)
//! holds no plugin: it sends `Hello` without info, then answers each `Vet { path }` with
//! `Vetted`, opening, validating and closing the file in its own process, until `Shutdown` or
//! the end of its input.
//!
//! `timeout_us` is the time left for the call (0: none), from which the runner sets the
//! cooperative deadline plugins can poll. Decoding never panics: a malformed or truncated
//! payload, or one with bytes left over, is an error. Nor does it allocate for what a payload
//! only claims: a count beyond what the rest of the payload could hold is refused before
//! anything is allocated for it, and the lists of a `PluginInfo` or `Verdict` (written by a
//! runner, whose plugin may be hostile) are refused past what validation lets through.
//!
//! [postcard]: https://docs.rs/postcard
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::info::PluginInfo;
use crate::verdict::Verdict;

/// Bumped whenever a message changes; the host refuses a runner that speaks another version.
pub const PROTOCOL_VERSION: u32 = 5;

/// Largest payload either side accepts (a batch of about 8 million values), so that a corrupt
/// length cannot make the other side allocate without bound.
pub const MAX_FRAME: usize = 64 << 20;

/// Room in a frame for everything but its bulk data (the message's tag and numbers, length
/// prefixes, an error message): what [`MAX_BULK`] leaves free.
const FRAME_SLACK: usize = 1 << 20;

/// Most bytes of bulk data (a batch's operands, or its results) one frame carries: the host
/// splits a batch that would go over it ([`batch_rows_per_frame`]). A bytes call's input and
/// output are bounded lower, by `loader::MAX_BYTES`.
pub const MAX_BULK: usize = MAX_FRAME - FRAME_SLACK;

/// Most rows of a batch with `columns` operands per row that one `Batch` request carries (its
/// columns) and one `Batch` reply (one value per row): at least 1.
pub fn batch_rows_per_frame(columns: usize) -> usize {
    (MAX_BULK / (8 * columns.max(1))).clamp(1, u32::MAX as usize)
}

/// A message from the host to the runner.
///
/// The two on the hot path come first: [`encode_call`] and [`encode_batch`] write them from
/// borrowed operands through a mirror of only those two variants ([`encode_call_bytes`]
/// writes `CallBytes` from a borrowed input).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Call operation `op` once.
    Call {
        /// Index of the operation in the plugin's table.
        op: u32,
        /// Microseconds the call may take (0: no limit).
        timeout_us: u64,
        /// Operands.
        #[serde(with = "f64s")]
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
        #[serde(with = "columns")]
        columns: Vec<Vec<f64>>,
    },
    /// Run the plugin's `init` with these configuration values and saved state.
    Init {
        /// Values the plugin reads through `get_config`.
        config: BTreeMap<String, String>,
        /// State saved by the previous version (hot reload).
        #[serde(with = "opt_bytes")]
        state: Option<Vec<u8>>,
    },
    /// Ask the plugin to save its state (`save_state`).
    SaveState,
    /// Shut the plugin down and exit.
    Shutdown,
    /// (Vetter) Open the library at `path`, call `plugin_entry`, validate the descriptor, and
    /// close it again.
    Vet {
        /// The file, as raw bytes (`OsStr`).
        #[serde(with = "bytes")]
        path: Vec<u8>,
    },
    /// Call function `slot` of the plugin's bytes interface number `interface` (ABI 1.4).
    CallBytes {
        /// Index of the interface in the plugin's table.
        interface: u32,
        /// The function's index in the vtable.
        slot: u32,
        /// Microseconds the call may take (0: no limit).
        timeout_us: u64,
        /// The input.
        #[serde(with = "bytes")]
        input: Vec<u8>,
    },
}

/// A message from the runner to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// The plugin loaded and passed validation. Stays the first variant with `protocol` its
    /// first field, so that a host can tell the version of any runner (see
    /// [`hello_protocol`]).
    Hello {
        /// The runner's [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The plugin's metadata (`None` from a vetter, which holds no plugin).
        #[serde(with = "wire::opt_info")]
        info: Option<PluginInfo>,
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
        #[serde(with = "f64s")]
        values: Vec<f64>,
        /// The error message (empty on success).
        message: String,
    },
    /// (Vetter) What validating the file of a `Vet` gave.
    Vetted {
        /// The plugin's metadata, or why it was refused.
        #[serde(with = "wire::verdict")]
        verdict: Verdict,
    },
    /// The result of `SaveState`.
    State {
        /// `CALC_STATUS_*`.
        status: i32,
        /// The saved bytes (`None`: nothing saved).
        #[serde(with = "opt_bytes")]
        state: Option<Vec<u8>>,
        /// The error message (empty on success).
        message: String,
    },
    /// (`--trial-unload`) What loading, starting, stopping and closing the plugin showed.
    Trial {
        /// The findings.
        report: TrialUnload,
    },
    /// The result of a `CallBytes`.
    Bytes {
        /// `CALC_STATUS_*`.
        status: i32,
        /// The output (empty unless `status` is OK).
        #[serde(with = "bytes")]
        output: Vec<u8>,
        /// The error message (empty on success).
        message: String,
    },
}

/// A payload that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed runner message: {0}")]
pub struct DecodeError(pub &'static str);

impl From<postcard::Error> for DecodeError {
    fn from(e: postcard::Error) -> Self {
        use postcard::Error as E;
        DecodeError(match e {
            E::DeserializeUnexpectedEnd => "truncated",
            E::DeserializeBadUtf8 | E::DeserializeBadChar => "string is not UTF-8",
            E::DeserializeBadOption => "bad option tag",
            E::DeserializeBadBool => "bad boolean",
            E::DeserializeBadVarint | E::DeserializeBadEnum => "bad integer",
            // serde's error for an unknown variant index, and for a bad version number in a
            // `PluginInfo` (postcard keeps no message).
            E::SerdeDeCustom => "unknown tag or invalid value",
            _ => "undecodable",
        })
    }
}

/// Appends a frame holding `message` to `out`.
fn frame<T: Serialize + ?Sized>(out: &mut Vec<u8>, message: &T) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    // Writing to a `Vec` cannot fail, and every message has plain data with known lengths.
    postcard::to_io(message, &mut *out).expect("messages serialise");
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// Decodes a whole payload: bytes left over are an error.
fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, DecodeError> {
    let (message, rest) = postcard::take_from_bytes(payload)?;
    if rest.is_empty() {
        Ok(message)
    } else {
        Err(DecodeError("trailing bytes"))
    }
}

/// The hot-path variants of [`Request`] over borrowed operands: same variants, same order,
/// same fields, so the same bytes (`borrowed_and_owned_requests_encode_alike` checks it).
#[derive(Serialize)]
enum RequestRef<'a> {
    Call {
        op: u32,
        timeout_us: u64,
        #[serde(with = "f64s")]
        args: &'a [f64],
    },
    Batch {
        op: u32,
        timeout_us: u64,
        rows: u32,
        #[serde(with = "columns")]
        columns: &'a [&'a [f64]],
    },
}

/// Appends the frame of a `Call` to `out` without building a [`Request`] (the hot path).
pub fn encode_call(out: &mut Vec<u8>, op: u32, timeout_us: u64, args: &[f64]) {
    frame(
        out,
        &RequestRef::Call {
            op,
            timeout_us,
            args,
        },
    );
}

/// Appends the frame of a `CallBytes` to `out` without copying the input into a [`Request`]:
/// the variant's index and the fields in order, as postcard writes a [`Request::CallBytes`]
/// (`borrowed_and_owned_requests_encode_alike` checks it).
pub fn encode_call_bytes(
    out: &mut Vec<u8>,
    interface: u32,
    slot: u32,
    timeout_us: u64,
    input: &[u8],
) {
    /// A byte blob, as [`bytes`] writes one.
    struct Blob<'a>(&'a [u8]);
    impl Serialize for Blob<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    /// `Request::CallBytes`'s index among the variants.
    const CALL_BYTES: u32 = 6;
    frame(out, &(CALL_BYTES, interface, slot, timeout_us, Blob(input)));
}

/// Appends the frame of a `Batch` to `out` without copying the columns into a [`Request`].
pub fn encode_batch(out: &mut Vec<u8>, op: u32, timeout_us: u64, rows: u32, columns: &[&[f64]]) {
    frame(
        out,
        &RequestRef::Batch {
            op,
            timeout_us,
            rows,
            columns,
        },
    );
}

impl Request {
    /// Appends this request's frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        frame(out, self);
    }

    /// Decodes a payload (without its length prefix).
    pub fn decode(payload: &[u8]) -> Result<Request, DecodeError> {
        let request = decode(payload)?;
        if let Request::Batch { rows, columns, .. } = &request {
            if columns.iter().any(|c| c.len() != *rows as usize) {
                return Err(DecodeError("column length differs from the row count"));
            }
        }
        Ok(request)
    }
}

impl Reply {
    /// Appends this reply's frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        frame(out, self);
    }

    /// Decodes a payload (without its length prefix).
    pub fn decode(payload: &[u8]) -> Result<Reply, DecodeError> {
        decode(payload)
    }
}

/// The protocol version of a `Hello` payload that may not decode as a [`Reply`] of this
/// version: `Hello` stays the first variant with the version its first field, and before
/// postcard (protocol 2 and older) a `Hello` was the byte 101 then the version as a
/// little-endian `u32`. `None` when the payload is no `Hello` of either form.
pub fn hello_protocol(payload: &[u8]) -> Option<u32> {
    const LEGACY_HELLO: u8 = 101;
    match payload {
        [LEGACY_HELLO, a, b, c, d, ..] => Some(u32::from_le_bytes([*a, *b, *c, *d])),
        _ => match postcard::take_from_bytes::<(u32, u32)>(payload) {
            Ok(((0, protocol), _)) => Some(protocol),
            _ => None,
        },
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

/// A list of `f64` as a byte blob: its length in bytes, then each value's 8 little-endian
/// bytes. Postcard's own form of a `Vec<f64>` (the count, then the values) is read one value
/// at a time through serde, several times slower than this one, read in one pass: operands and
/// results of batches are most of the bytes the runner protocol carries.
mod f64s {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        F64s(v).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        F64Buf::deserialize(d).map(|b| b.0)
    }

    /// Writes what `serialize_bytes` of the values' little-endian bytes would write, without
    /// gathering those bytes first: in postcard a tuple is its elements one after the other, so
    /// the byte count (a varint, as `serialize_bytes` writes it) then the values (8 bytes each)
    /// are the same bytes. `f64_lists_are_written_as_byte_blobs` checks it.
    pub(super) struct F64s<'a>(pub(super) &'a [f64]);

    impl Serialize for F64s<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeTuple;
            let mut t = s.serialize_tuple(self.0.len() + 1)?;
            t.serialize_element(&(self.0.len() * 8))?;
            for x in self.0 {
                t.serialize_element(x)?;
            }
            t.end()
        }
    }

    pub(super) struct F64Buf(pub(super) Vec<f64>);

    impl<'de> Deserialize<'de> for F64Buf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_bytes(Values).map(F64Buf)
        }
    }

    struct Values;

    impl serde::de::Visitor<'_> for Values {
        type Value = Vec<f64>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a multiple of 8 bytes")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<f64>, E> {
            let (values, rest) = v.as_chunks::<8>();
            if !rest.is_empty() {
                return Err(E::invalid_length(v.len(), &self));
            }
            Ok(values.iter().map(|b| f64::from_le_bytes(*b)).collect())
        }
    }
}

/// Columns of `f64`: a count, then each column as [`f64s`] writes it.
mod columns {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::f64s::{F64Buf, F64s};

    pub(super) fn serialize<C: AsRef<[f64]>, S: Serializer>(
        columns: &[C],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(columns.iter().map(|c| F64s(c.as_ref())))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f64>>, D::Error> {
        Ok(Vec::<F64Buf>::deserialize(d)?
            .into_iter()
            .map(|c| c.0)
            .collect())
    }
}

/// A byte blob as one length and the bytes (serde's `serialize_bytes`), not a sequence of
/// one-byte items: postcard writes both the same way, but reads this one in one copy.
mod bytes {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(ByteBuf)
    }

    /// Reads a byte blob (or, from a format that has none, a sequence of bytes).
    pub(super) struct ByteBuf;

    impl<'de> serde::de::Visitor<'de> for ByteBuf {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element()? {
                v.push(b);
            }
            Ok(v)
        }
    }
}

/// [`bytes`], optional.
mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    struct Bytes<'a>(&'a [u8]);

    impl Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    struct ByteBuf(Vec<u8>);

    impl<'de> Deserialize<'de> for ByteBuf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            super::bytes::deserialize(d).map(ByteBuf)
        }
    }

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_deref().map(Bytes).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<ByteBuf>::deserialize(d)?.map(|b| b.0))
    }
}

/// [`PluginInfo`] and [`Verdict`] as they travel.
///
/// Their own serde forms are made for JSON (the metadata cache, `--json` output): an
/// operation's kind is an internally tagged enum flattened into the operation, which only a
/// self-describing format can read back, and a path must be UTF-8. Here the kind is a plain
/// enum, versions are their text, and paths are their raw bytes.
///
/// The runner, whose plugin may be hostile, writes these; their lists are bounded by what
/// validation lets through, so that a few bytes each cannot make the host build millions of
/// empty operations (an operation in memory is some twenty times its smallest encoding).
mod wire {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use calc_sdk::abi;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::error::Mismatch;
    use crate::info::{InterfaceInfo, OperationInfo, OperationKind, PluginInfo};
    use crate::verdict::{Refusal, Verdict};

    /// The most mismatches a refusal names (a load error names two at most).
    const MAX_MISMATCHES: usize = 16;

    /// A list of at most `MAX` items: a longer one is refused as soon as its count is read (or,
    /// where the decoder cannot tell the count, at item `MAX + 1`).
    struct Bounded<T, const MAX: usize>(Vec<T>);

    impl<T: Serialize, const MAX: usize> Serialize for Bounded<T, MAX> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            self.0.serialize(s)
        }
    }

    impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for Bounded<T, MAX> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Items<T, const MAX: usize>(std::marker::PhantomData<T>);

            impl<'de, T: Deserialize<'de>, const MAX: usize> serde::de::Visitor<'de> for Items<T, MAX> {
                type Value = Vec<T>;

                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    write!(f, "at most {MAX} items")
                }

                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Vec<T>, A::Error> {
                    use serde::de::Error;
                    let hint = seq.size_hint().unwrap_or(0);
                    if hint > MAX {
                        return Err(A::Error::invalid_length(hint, &self));
                    }
                    let mut items = Vec::with_capacity(hint);
                    while let Some(item) = seq.next_element()? {
                        if items.len() == MAX {
                            return Err(A::Error::invalid_length(MAX + 1, &self));
                        }
                        items.push(item);
                    }
                    Ok(items)
                }
            }

            d.deserialize_seq(Items::<T, MAX>(std::marker::PhantomData))
                .map(Bounded)
        }
    }

    #[derive(Serialize, Deserialize)]
    struct Info {
        name: String,
        version: String,
        author: String,
        description: String,
        #[serde(with = "super::bytes")]
        path: Vec<u8>,
        abi_version: String,
        sdk_version: String,
        api_requirement: String,
        operations: Bounded<Operation, { abi::CALC_MAX_OPERATIONS as usize }>,
        interfaces: Bounded<Interface, { abi::CALC_MAX_INTERFACES as usize }>,
    }

    #[derive(Serialize, Deserialize)]
    struct Interface {
        id: String,
        major: u16,
        minor: u16,
        vtable_size: u32,
        bytes: bool,
    }

    #[derive(Serialize, Deserialize)]
    struct Operation {
        name: String,
        description: String,
        kind: Kind,
    }

    #[derive(Serialize, Deserialize)]
    enum Kind {
        Infix {
            symbol: String,
            precedence: i32,
            right_associative: bool,
        },
        Function {
            min_arity: u32,
            max_arity: Option<u32>,
        },
    }

    #[derive(Serialize, Deserialize)]
    struct WireRefusal {
        #[serde(with = "super::bytes")]
        path: Vec<u8>,
        kind: String,
        message: String,
        mismatches: Bounded<Mismatch, MAX_MISMATCHES>,
    }

    #[derive(Serialize, Deserialize)]
    enum WireVerdict {
        Valid(Info),
        Refused(WireRefusal),
    }

    fn path_bytes(path: &Path) -> Vec<u8> {
        path.as_os_str().as_bytes().to_vec()
    }

    fn path_of(bytes: Vec<u8>) -> PathBuf {
        PathBuf::from(OsString::from_vec(bytes))
    }

    impl From<&PluginInfo> for Info {
        fn from(info: &PluginInfo) -> Info {
            Info {
                name: info.name.clone(),
                version: info.version.to_string(),
                author: info.author.clone(),
                description: info.description.clone(),
                path: path_bytes(&info.path),
                abi_version: info.abi_version.clone(),
                sdk_version: info.sdk_version.to_string(),
                api_requirement: info.api_requirement.to_string(),
                operations: Bounded(
                    info.operations
                        .iter()
                        .map(|op| Operation {
                            name: op.name.clone(),
                            description: op.description.clone(),
                            kind: match &op.kind {
                                OperationKind::Infix {
                                    symbol,
                                    precedence,
                                    right_associative,
                                } => Kind::Infix {
                                    symbol: symbol.clone(),
                                    precedence: *precedence,
                                    right_associative: *right_associative,
                                },
                                OperationKind::Function {
                                    min_arity,
                                    max_arity,
                                } => Kind::Function {
                                    min_arity: *min_arity,
                                    max_arity: *max_arity,
                                },
                            },
                        })
                        .collect(),
                ),
                interfaces: Bounded(
                    info.interfaces
                        .iter()
                        .map(|i| Interface {
                            id: i.id.clone(),
                            major: i.major,
                            minor: i.minor,
                            vtable_size: i.vtable_size,
                            bytes: i.bytes,
                        })
                        .collect(),
                ),
            }
        }
    }

    impl Info {
        fn into_info<E: serde::de::Error>(self) -> Result<PluginInfo, E> {
            fn parse<T: std::str::FromStr<Err: std::fmt::Display>, E: serde::de::Error>(
                s: &str,
            ) -> Result<T, E> {
                s.parse().map_err(E::custom)
            }
            Ok(PluginInfo {
                name: self.name,
                version: parse(&self.version)?,
                author: self.author,
                description: self.description,
                path: path_of(self.path),
                abi_version: self.abi_version,
                sdk_version: parse(&self.sdk_version)?,
                api_requirement: parse(&self.api_requirement)?,
                operations: self
                    .operations
                    .0
                    .into_iter()
                    .map(|op| OperationInfo {
                        name: op.name,
                        description: op.description,
                        kind: match op.kind {
                            Kind::Infix {
                                symbol,
                                precedence,
                                right_associative,
                            } => OperationKind::Infix {
                                symbol,
                                precedence,
                                right_associative,
                            },
                            Kind::Function {
                                min_arity,
                                max_arity,
                            } => OperationKind::Function {
                                min_arity,
                                max_arity,
                            },
                        },
                    })
                    .collect(),
                interfaces: self
                    .interfaces
                    .0
                    .into_iter()
                    .map(|i| InterfaceInfo {
                        id: i.id,
                        major: i.major,
                        minor: i.minor,
                        vtable_size: i.vtable_size,
                        bytes: i.bytes,
                    })
                    .collect(),
            })
        }
    }

    /// `Hello.info`.
    pub(super) mod opt_info {
        use super::*;

        pub(in super::super) fn serialize<S: Serializer>(
            info: &Option<PluginInfo>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            info.as_ref().map(Info::from).serialize(s)
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<PluginInfo>, D::Error> {
            Option::<Info>::deserialize(d)?
                .map(Info::into_info)
                .transpose()
        }
    }

    /// `Vetted.verdict`.
    pub(super) mod verdict {
        use super::*;

        pub(in super::super) fn serialize<S: Serializer>(
            verdict: &Verdict,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match verdict {
                Verdict::Valid(info) => WireVerdict::Valid(Info::from(info)),
                Verdict::Refused(r) => WireVerdict::Refused(WireRefusal {
                    path: path_bytes(&r.path),
                    kind: r.kind.clone(),
                    message: r.message.clone(),
                    mismatches: Bounded(r.mismatches.clone()),
                }),
            }
            .serialize(s)
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Verdict, D::Error> {
            Ok(match WireVerdict::deserialize(d)? {
                WireVerdict::Valid(info) => Verdict::Valid(info.into_info()?),
                WireVerdict::Refused(r) => Verdict::Refused(Refusal {
                    path: path_of(r.path),
                    kind: r.kind,
                    message: r.message,
                    mismatches: r.mismatches.0,
                }),
            })
        }
    }
}

/// What a trial load and unload of a plugin showed (`crate::vet::trial_unload`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrialUnload {
    /// Why the trial could not load or start the plugin, if it could not.
    pub error: Option<String>,
    /// The library was unloaded as soon as it was closed.
    pub unloaded: bool,
    /// It stayed loaded while the thread that ran its `init` lived, and was unloaded once
    /// that thread had exited: thread-local destructors its code registered held it.
    pub unloaded_after_thread_exit: bool,
}

impl TrialUnload {
    /// What this trial found keeps the library loaded, if anything (`None`: unloaded at once;
    /// a trial that could not load the plugin says why).
    pub fn blocker(&self) -> Option<crate::elf::UnloadBlocker> {
        use crate::elf::UnloadBlocker;
        if let Some(reason) = &self.error {
            return Some(UnloadBlocker::TrialFailed {
                reason: reason.clone(),
            });
        }
        if self.unloaded {
            return None;
        }
        Some(if self.unloaded_after_thread_exit {
            UnloadBlocker::ThreadLocalDestructors
        } else {
            UnloadBlocker::StaysLoaded
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;
    use crate::error::Mismatch;
    use crate::info::{OperationInfo, OperationKind};
    use crate::verdict::Refusal;

    fn payload(frame: &[u8]) -> &[u8] {
        let n = frame_len([frame[0], frame[1], frame[2], frame[3]]).unwrap();
        assert_eq!(frame.len(), 4 + n);
        &frame[4..]
    }

    fn info() -> PluginInfo {
        PluginInfo {
            name: "arith".into(),
            version: "1.2.3-beta.1".parse().unwrap(),
            author: "A. N. Author".into(),
            description: "sums".into(),
            path: std::path::PathBuf::from(std::ffi::OsStr::from_bytes(b"/p/lib\xffx.so")),
            abi_version: "1.0".into(),
            sdk_version: "1.0.0".parse().unwrap(),
            api_requirement: ">=1.0, <2".parse().unwrap(),
            operations: vec![
                OperationInfo {
                    name: "add".into(),
                    description: "a + b".into(),
                    kind: OperationKind::Infix {
                        symbol: "+".into(),
                        precedence: -3,
                        right_associative: true,
                    },
                },
                OperationInfo {
                    name: "max".into(),
                    description: String::new(),
                    kind: OperationKind::Function {
                        min_arity: 1,
                        max_arity: None,
                    },
                },
                OperationInfo {
                    name: "neg".into(),
                    description: String::new(),
                    kind: OperationKind::Function {
                        min_arity: 1,
                        max_arity: Some(1),
                    },
                },
            ],
            interfaces: vec![
                crate::info::InterfaceInfo {
                    id: "acme.text-format".into(),
                    major: 2,
                    minor: 7,
                    vtable_size: 40,
                    bytes: false,
                },
                crate::info::InterfaceInfo {
                    id: "acme.lint".into(),
                    major: 0,
                    minor: 0,
                    vtable_size: 4096,
                    bytes: true,
                },
            ],
        }
    }

    #[test]
    fn the_largest_batch_and_bytes_frames_stay_within_the_frame_limit() {
        let message = "m".repeat(4096);
        for columns in [0usize, 2, 1000] {
            let rows = batch_rows_per_frame(columns);
            let column = vec![1.5f64; rows];
            let refs = vec![column.as_slice(); columns];
            let mut frame = Vec::new();
            encode_batch(&mut frame, 7, 0, rows as u32, &refs);
            assert!(
                frame.len() - 4 <= MAX_FRAME,
                "{columns} columns: {}",
                frame.len()
            );
            // One more row per column would not fit in what MAX_BULK allows.
            assert!(
                8 * columns.max(1) * (rows + 1) > MAX_BULK,
                "{columns} columns"
            );
            assert_eq!(payload(&frame).len(), frame.len() - 4);
            let mut frame = Vec::new();
            Reply::Batch {
                status: 1,
                failed_row: 0,
                values: column,
                message: message.clone(),
            }
            .encode(&mut frame);
            assert!(frame.len() - 4 <= MAX_FRAME, "reply of {rows} rows");
        }
        let mut frame = Vec::new();
        Reply::Bytes {
            status: 0,
            output: vec![0; MAX_BULK],
            message: message.clone(),
        }
        .encode(&mut frame);
        assert!(frame.len() - 4 <= MAX_FRAME);
        let mut frame = Vec::new();
        Request::CallBytes {
            interface: u32::MAX,
            slot: u32::MAX,
            timeout_us: u64::MAX,
            input: vec![0; MAX_BULK],
        }
        .encode(&mut frame);
        assert_eq!(payload(&frame).len(), frame.len() - 4);
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
                timeout_us: u64::MAX,
                rows: 2,
                columns: vec![vec![1.0, 2.0], vec![3.0, 4.0]],
            },
            Request::SaveState,
            Request::Shutdown,
            Request::Vet {
                path: b"/p/lib\xffx.so".to_vec(),
            },
            Request::CallBytes {
                interface: 2,
                slot: 3,
                timeout_us: 0,
                input: b"\0bytes\xff".to_vec(),
            },
            Request::CallBytes {
                interface: 0,
                slot: 0,
                timeout_us: 1,
                input: Vec::new(),
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
                info: Some(info()),
            },
            Reply::Hello {
                protocol: PROTOCOL_VERSION,
                info: None,
            },
            Reply::LoadFailed {
                kind: "bad_magic".into(),
                message: "x.so: not a calc plugin".into(),
            },
            Reply::Ready,
            Reply::InitFailed {
                status: -1,
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
            Reply::Bytes {
                status: 0,
                output: b"out\x00put".to_vec(),
                message: String::new(),
            },
            Reply::Bytes {
                status: 3,
                output: Vec::new(),
                message: "refused: x".into(),
            },
            Reply::State {
                status: 0,
                state: Some(vec![9; 10]),
                message: String::new(),
            },
            Reply::State {
                status: 0,
                state: None,
                message: String::new(),
            },
            Reply::Vetted {
                verdict: Verdict::Valid(info()),
            },
            Reply::Vetted {
                verdict: Verdict::Refused(Refusal {
                    path: std::path::PathBuf::from(std::ffi::OsStr::from_bytes(b"/p/\xfe.so")),
                    kind: "abi_version".into(),
                    message: "/p/x.so: built for ABI 2.0".into(),
                    mismatches: vec![Mismatch {
                        field: "abi_version.major".into(),
                        expected: "1".into(),
                        found: "2".into(),
                    }],
                }),
            },
            Reply::Trial {
                report: TrialUnload {
                    error: Some("init failed".into()),
                    unloaded: false,
                    unloaded_after_thread_exit: true,
                },
            },
        ];
        for reply in cases {
            let mut out = Vec::new();
            reply.encode(&mut out);
            assert_eq!(Reply::decode(payload(&out)), Ok(reply));
        }
    }

    #[test]
    fn borrowed_and_owned_requests_encode_alike() {
        let args = [1.5, -0.0, f64::NAN, 1e300];
        for args in [&args[..], &[]] {
            let mut borrowed = Vec::new();
            encode_call(&mut borrowed, 7, 1234, args);
            let mut owned = Vec::new();
            Request::Call {
                op: 7,
                timeout_us: 1234,
                args: args.to_vec(),
            }
            .encode(&mut owned);
            assert_eq!(borrowed, owned);
        }
        let columns: [&[f64]; 3] = [&[1.0, 2.0], &[3.0, 4.0], &[5.0, f64::MIN]];
        for (rows, columns) in [(2, &columns[..]), (0, &[])] {
            let mut borrowed = Vec::new();
            encode_batch(&mut borrowed, 300, u64::MAX, rows, columns);
            let mut owned = Vec::new();
            Request::Batch {
                op: 300,
                timeout_us: u64::MAX,
                rows,
                columns: columns.iter().map(|c| c.to_vec()).collect(),
            }
            .encode(&mut owned);
            assert_eq!(borrowed, owned);
        }
        for input in [&b"\0bytes\xff"[..], &[], &[7; 300]] {
            let mut borrowed = Vec::new();
            encode_call_bytes(&mut borrowed, 2, u32::MAX, 99, input);
            let mut owned = Vec::new();
            Request::CallBytes {
                interface: 2,
                slot: u32::MAX,
                timeout_us: 99,
                input: input.to_vec(),
            }
            .encode(&mut owned);
            assert_eq!(borrowed, owned);
        }
        // Frames are appended, as the reused buffers expect.
        let mut two = Vec::new();
        encode_call(&mut two, 1, 2, &[3.0]);
        let first = two.len();
        encode_call(&mut two, 1, 2, &[3.0]);
        assert_eq!(two[..first], two[first..]);
    }

    /// Serialises as serde's byte blob.
    struct Blob<'a>(&'a [u8]);

    impl Serialize for Blob<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    #[test]
    fn f64_lists_are_written_as_byte_blobs() {
        let values = [1.5, -0.0, f64::NAN, f64::MAX, 300.0];
        let le: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = Vec::new();
        Reply::Batch {
            status: -2,
            failed_row: 300,
            values: values.to_vec(),
            message: "m".into(),
        }
        .encode(&mut out);
        assert_eq!(
            payload(&out),
            postcard::to_stdvec(&(5u32, -2i32, 300u32, Blob(&le), "m"))
                .unwrap()
                .as_slice()
        );
        out.clear();
        encode_batch(&mut out, 1, 2, 5, &[&values, &values]);
        assert_eq!(
            payload(&out),
            postcard::to_stdvec(&(1u32, 1u32, 2u64, 5u32, vec![Blob(&le), Blob(&le)]))
                .unwrap()
                .as_slice()
        );
        // 17 of the 20 bytes: not a whole number of values.
        let mut bad = vec![0u8, 3, 0];
        bad.extend(postcard::to_stdvec(&Blob(&le[..17])).unwrap());
        assert_eq!(
            Request::decode(&bad),
            Err(DecodeError("unknown tag or invalid value"))
        );
        assert_eq!(
            Request::decode(&[0, 3, 0, 0]),
            Ok(Request::Call {
                op: 3,
                timeout_us: 0,
                args: Vec::new()
            })
        );
    }

    #[test]
    fn byte_blobs_are_encoded_as_byte_sequences() {
        // `bytes` only makes reading faster: the bytes are those of a plain `Vec<u8>`.
        let blob = vec![0u8, 1, 0x80, 0xff];
        let mut out = Vec::new();
        Request::Vet { path: blob.clone() }.encode(&mut out);
        assert_eq!(
            payload(&out),
            postcard::to_stdvec(&(5u32, &blob)).unwrap().as_slice()
        );
        out.clear();
        Reply::State {
            status: 0,
            state: Some(blob.clone()),
            message: String::new(),
        }
        .encode(&mut out);
        assert_eq!(
            payload(&out),
            postcard::to_stdvec(&(7u32, 0i32, Some(&blob), ""))
                .unwrap()
                .as_slice()
        );
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
        out.clear();
        Reply::Hello {
            protocol: PROTOCOL_VERSION,
            info: Some(info()),
        }
        .encode(&mut out);
        let hello = payload(&out).to_vec();
        for n in 0..hello.len() {
            assert!(Reply::decode(&hello[..n]).is_err(), "prefix of {n} bytes");
        }
        // Every single-byte corruption either decodes to something or is an error.
        for i in 0..hello.len() {
            for b in [0, 1, 0x7f, 0x80, 0xff] {
                let mut bad = hello.clone();
                bad[i] = b;
                let _ = Reply::decode(&bad);
            }
        }
        assert_eq!(
            Request::decode(&[7]),
            Err(DecodeError("unknown tag or invalid value"))
        );
        assert_eq!(
            Reply::decode(&[10]),
            Err(DecodeError("unknown tag or invalid value"))
        );
        assert!(Request::decode(&[200]).is_err());
        assert!(Reply::decode(&[]).is_err());
        // A version that is not one.
        let mut bad_version = hello.clone();
        let at = bad_version
            .windows(12)
            .position(|w| w == b"1.2.3-beta.1")
            .unwrap();
        bad_version[at] = b'x';
        assert!(Reply::decode(&bad_version).is_err());
        // A batch whose columns are not `rows` long.
        out.clear();
        encode_batch(&mut out, 0, 0, 2, &[&[1.0, 2.0], &[3.0]]);
        assert_eq!(
            Request::decode(payload(&out)),
            Err(DecodeError("column length differs from the row count"))
        );
        assert!(frame_len([0, 0, 0, 0]).is_err());
        assert!(frame_len(u32::MAX.to_le_bytes()).is_err());
        assert_eq!(frame_len((MAX_FRAME as u32).to_le_bytes()), Ok(MAX_FRAME));
    }

    /// A varint of `n`.
    fn varint(n: u64) -> Vec<u8> {
        postcard::to_stdvec(&n).unwrap()
    }

    #[test]
    fn counts_beyond_the_payload_are_refused_before_allocating() {
        // Each claims far more than the payload holds (up to 2^64 - 1 items, exabytes): the
        // decoder must refuse it without trying to allocate that much, which would abort.
        for count in [u64::from(u32::MAX), 1 << 40, u64::MAX] {
            // Reply::Batch { status 0, failed_row 0, values: count f64s }
            let mut values = vec![5, 0, 0];
            values.extend(varint(count));
            values.extend([0; 64]);
            assert_eq!(Reply::decode(&values), Err(DecodeError("truncated")));
            // Request::Batch { op 0, timeout 0, rows: 1, columns: count columns }
            let mut columns = vec![1, 0, 0, 1];
            columns.extend(varint(count));
            columns.extend([1, 0, 0, 0, 0, 0, 0, 0, 0]);
            assert!(Request::decode(&columns).is_err());
            // ... and one column of count values.
            let mut column = vec![1, 0, 0, 1, 1];
            column.extend(varint(count));
            column.extend([0; 64]);
            assert!(Request::decode(&column).is_err());
            // Request::Init { config: count pairs }
            let mut config = vec![2];
            config.extend(varint(count));
            config.extend([1, b'k', 1, b'v']);
            assert!(Request::decode(&config).is_err());
            // Request::Vet { path: count bytes }
            let mut path = vec![5];
            path.extend(varint(count));
            path.extend(b"/lib.so");
            assert!(Request::decode(&path).is_err());
            // Reply::Hello { info: Some { name: count bytes } }
            let mut name = vec![0, PROTOCOL_VERSION as u8, 1];
            name.extend(varint(count));
            name.extend(b"name");
            assert!(Reply::decode(&name).is_err());
            // Reply::Vetted { Valid { ..., operations: count } }
            let mut ops = vec![6, 0, 0, 5];
            ops.extend(b"1.0.0");
            ops.extend([0, 0, 0, 0, 5]);
            ops.extend(b"1.0.0");
            ops.extend([1, b'*']);
            ops.extend(varint(count));
            ops.extend([0; 16]);
            assert!(Reply::decode(&ops).is_err());
        }
        // A varint longer than any integer.
        assert_eq!(
            Reply::decode(&[
                5, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]),
            Err(DecodeError("bad integer"))
        );
    }

    #[test]
    fn lists_longer_than_validation_allows_are_refused() {
        let most = calc_sdk::abi::CALC_MAX_OPERATIONS as usize;
        let mut big = info();
        big.operations = vec![big.operations[1].clone(); most];
        let mut hello = Reply::Hello {
            protocol: PROTOCOL_VERSION,
            info: Some(big),
        };
        let mut out = Vec::new();
        hello.encode(&mut out);
        assert_eq!(Reply::decode(payload(&out)).as_ref(), Ok(&hello));
        if let Reply::Hello {
            info: Some(info), ..
        } = &mut hello
        {
            info.operations.push(info.operations[0].clone());
        }
        out.clear();
        hello.encode(&mut out);
        assert!(Reply::decode(payload(&out)).is_err());

        let mismatch = Mismatch {
            field: "f".into(),
            expected: "1".into(),
            found: "2".into(),
        };
        let refused = |n| Reply::Vetted {
            verdict: Verdict::Refused(Refusal {
                path: "/x.so".into(),
                kind: "abi_version".into(),
                message: "no".into(),
                mismatches: vec![mismatch.clone(); n],
            }),
        };
        out.clear();
        refused(16).encode(&mut out);
        assert_eq!(Reply::decode(payload(&out)), Ok(refused(16)));
        out.clear();
        refused(17).encode(&mut out);
        assert!(Reply::decode(payload(&out)).is_err());
    }

    #[test]
    fn the_version_of_any_hello_is_readable() {
        let mut out = Vec::new();
        Reply::Hello {
            protocol: 77,
            info: Some(info()),
        }
        .encode(&mut out);
        assert_eq!(hello_protocol(payload(&out)), Some(77));
        // Protocol 2 (before postcard): tag 101, the version as a little-endian u32, the info.
        assert_eq!(hello_protocol(&[101, 2, 0, 0, 0, 0, 0, 0, 0]), Some(2));
        out.clear();
        Reply::Ready.encode(&mut out);
        assert_eq!(hello_protocol(payload(&out)), None);
        assert_eq!(hello_protocol(&[]), None);
    }
}
