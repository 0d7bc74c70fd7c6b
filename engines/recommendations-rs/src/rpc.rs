//! The server side of `variants/rpc.py`: one `Dispatcher` for both wire formats (msgpack over
//! IPC, JSON over HTTP) that answers what the Python `Dispatcher.handle` answers, error codes
//! and (for the common cases) error texts included.
//!
//! Arguments are decoded by hand, lazily and left to right like msgspec, so that a
//! wrong-typed argument is `invalid_request` (msgspec's ValidationError) and bytes that are not
//! msgpack/JSON are `shop_error` (msgspec's DecodeError, which the Python Dispatcher catches as a
//! generic exception).

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::engine::Recommendations;
use crate::faults::Delay;
use crate::log::error;

pub const CONTEXT: &str = "recommendations";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub detail: String,
}

/// A domain error (`workloads.shop.errors.ShopError`): a stable code and a detail.
#[derive(Debug, Clone, PartialEq)]
pub struct ShopError {
    pub code: String,
    pub detail: String,
}

impl ShopError {
    pub fn new(code: &str, detail: impl Into<String>) -> ShopError {
        ShopError {
            code: code.to_string(),
            detail: detail.into(),
        }
    }

    pub fn unavailable(detail: impl Into<String>) -> ShopError {
        ShopError::new("unavailable", detail)
    }
}

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Msgpack,
    Json,
}

impl Format {
    pub fn encode<T: Serialize>(self, value: &T) -> Vec<u8> {
        match self {
            // Structs as maps with their field names, as msgspec encodes them.
            Format::Msgpack => rmp_serde::to_vec_named(value).expect("encodable"),
            Format::Json => serde_json::to_vec(value).expect("encodable"),
        }
    }
}

/// `(ok, body)` of a call, plus the error code so HTTP can pick a status without re-decoding.
pub struct Answer {
    pub ok: bool,
    pub body: Vec<u8>,
    pub error: Option<String>,
}

pub struct Dispatcher {
    engine: Arc<Recommendations>,
    /// A `slow` fault's delay, slept before each call into the context.
    delay: Arc<Delay>,
}

impl Dispatcher {
    pub fn new(engine: Arc<Recommendations>, delay: Arc<Delay>) -> Dispatcher {
        Dispatcher { engine, delay }
    }

    pub fn handle(&self, format: Format, method: &str, args: &[u8]) -> Answer {
        let arity = match method {
            "related" => 2,
            "rebuild" => 0,
            _ => {
                let detail = format!("{} has no method {}", CONTEXT, py_repr(method));
                return fail(format, ShopError::new("invalid_request", detail));
            }
        };
        let decoded = match format {
            Format::Msgpack => msgpack_ints(args, arity),
            Format::Json => json_ints(args, arity),
        };
        let ints = match decoded {
            Ok(ints) => ints,
            Err(ArgError::Invalid(detail)) => {
                return fail(format, ShopError::new("invalid_request", detail))
            }
            Err(ArgError::Malformed(detail)) => {
                error!("{}.{} failed: DecodeError: {}", CONTEXT, method, detail);
                let detail = format!("DecodeError: {}", detail);
                return fail(format, ShopError::new("shop_error", detail));
            }
        };
        // Where the Python wrapper sleeps: in the call, once its arguments are decoded.
        self.delay.wait();
        let engine = &self.engine;
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| match method {
            "related" => Ok(format.encode(&engine.related(ints[0], ints[1]))),
            _ => engine.rebuild().map(|stats| format.encode(&stats)),
        }));
        match outcome {
            Ok(Ok(body)) => Answer {
                ok: true,
                body,
                error: None,
            },
            Ok(Err(e)) => fail(format, e),
            Err(payload) => {
                let text = panic_text(payload.as_ref());
                error!("{}.{} failed: panic: {}", CONTEXT, method, text);
                fail(
                    format,
                    ShopError::new("shop_error", format!("panic: {}", text)),
                )
            }
        }
    }
}

fn fail(format: Format, e: ShopError) -> Answer {
    let body = format.encode(&ErrorBody {
        error: e.code.clone(),
        detail: e.detail,
    });
    Answer {
        ok: false,
        body,
        error: Some(e.code),
    }
}

pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

#[derive(Debug, PartialEq)]
pub enum ArgError {
    /// Well-formed input of the wrong shape or type: msgspec's ValidationError.
    Invalid(String),
    /// Not msgpack/JSON at all: msgspec's DecodeError.
    Malformed(String),
}

const TRUNCATED: &str = "Input data was truncated";

/// Decodes msgpack `tuple[int, ...]` of `arity` elements, as msgspec does: a value of the
/// wrong type is reported once its header and payload are known to be complete.
pub fn msgpack_ints(data: &[u8], arity: usize) -> Result<Vec<i128>, ArgError> {
    let marker = *data.first().ok_or_else(|| malformed(TRUNCATED))?;
    let (len, mut pos) = match marker {
        0x90..=0x9f => (usize::from(marker & 0x0f), 1),
        0xdc => (be(data, 1, 2)? as usize, 3),
        0xdd => (be(data, 1, 4)? as usize, 5),
        _ => return Err(msgpack_mismatch(data, 0, "array", None)),
    };
    if len != arity {
        return Err(ArgError::Invalid(format!(
            "Expected `array` of length {}, got {}",
            arity, len
        )));
    }
    let mut ints = Vec::with_capacity(arity);
    for i in 0..arity {
        let marker = *data.get(pos).ok_or_else(|| malformed(TRUNCATED))?;
        let (value, size) = match marker {
            0x00..=0x7f => (i128::from(marker), 1),
            0xe0..=0xff => (i128::from(marker as i8), 1),
            0xcc => (be(data, pos + 1, 1)? as i128, 2),
            0xcd => (be(data, pos + 1, 2)? as i128, 3),
            0xce => (be(data, pos + 1, 4)? as i128, 5),
            0xcf => (be(data, pos + 1, 8)? as i128, 9),
            0xd0 => (i128::from(be(data, pos + 1, 1)? as u8 as i8), 2),
            0xd1 => (i128::from(be(data, pos + 1, 2)? as u16 as i16), 3),
            0xd2 => (i128::from(be(data, pos + 1, 4)? as u32 as i32), 5),
            0xd3 => (i128::from(be(data, pos + 1, 8)? as i64), 9),
            _ => return Err(msgpack_mismatch(data, pos, "int", Some(i))),
        };
        ints.push(value);
        pos += size;
    }
    if pos < data.len() {
        return Err(malformed(&format!(
            "MessagePack data is malformed: trailing characters (byte {})",
            pos
        )));
    }
    Ok(ints)
}

fn be(data: &[u8], at: usize, size: usize) -> Result<u64, ArgError> {
    let bytes = data
        .get(at..at + size)
        .ok_or_else(|| malformed(TRUNCATED))?;
    Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

fn malformed(detail: &str) -> ArgError {
    ArgError::Malformed(detail.to_string())
}

/// The value at `pos` is not the `expected` type: its msgspec type name once its bytes are
/// all there (containers: their header only), else the decode error.
fn msgpack_mismatch(data: &[u8], pos: usize, expected: &str, index: Option<usize>) -> ArgError {
    let marker = data[pos];
    let sized = |header: usize, len_bytes: usize, extra: usize| -> Result<(), ArgError> {
        let len = be(data, pos + header - len_bytes, len_bytes)? as usize;
        match data.len().checked_sub(pos + header + extra) {
            Some(room) if room >= len => Ok(()),
            _ => Err(malformed(TRUNCATED)),
        }
    };
    let fixed = |size: usize| be(data, pos, size).map(|_| ());
    let (got, complete) = match marker {
        0x80..=0x8f => ("object", Ok(())),
        0x90..=0x9f => ("array", Ok(())),
        0xde => ("object", fixed(3)),
        0xdf => ("object", fixed(5)),
        0xdc => ("array", fixed(3)),
        0xdd => ("array", fixed(5)),
        0xa0..=0xbf => ("str", fixed(1 + usize::from(marker & 0x1f))),
        0xd9 => ("str", sized(2, 1, 0)),
        0xda => ("str", sized(3, 2, 0)),
        0xdb => ("str", sized(5, 4, 0)),
        0xc0 => ("None", Ok(())),
        0xc2 | 0xc3 => ("bool", Ok(())),
        0xc4 => ("bytes", sized(2, 1, 0)),
        0xc5 => ("bytes", sized(3, 2, 0)),
        0xc6 => ("bytes", sized(5, 4, 0)),
        0xca => ("float", fixed(5)),
        0xcb => ("float", fixed(9)),
        0xd4 => ("ext", fixed(3)),
        0xd5 => ("ext", fixed(4)),
        0xd6 => ("ext", fixed(6)),
        0xd7 => ("ext", fixed(10)),
        0xd8 => ("ext", fixed(18)),
        0xc7 => ("ext", sized(2, 1, 1)),
        0xc8 => ("ext", sized(3, 2, 1)),
        0xc9 => ("ext", sized(5, 4, 1)),
        0xcc | 0xd0 => ("int", fixed(2)),
        0xcd | 0xd1 => ("int", fixed(3)),
        0xce | 0xd2 => ("int", fixed(5)),
        0xcf | 0xd3 => ("int", fixed(9)),
        0x00..=0x7f | 0xe0..=0xff => ("int", Ok(())),
        _ => {
            return malformed(&format!(
                "MessagePack data is malformed: invalid opcode '\\x{:02x}' (byte {})",
                marker, pos
            ))
        }
    };
    match complete {
        Ok(()) => mismatch(expected, got, index),
        Err(e) => e,
    }
}

fn mismatch(expected: &str, got: &str, index: Option<usize>) -> ArgError {
    let at = index
        .map(|i| format!(" - at `$[{}]`", i))
        .unwrap_or_default();
    if got == "huge" {
        return ArgError::Invalid(format!("Number out of range{}", at));
    }
    ArgError::Invalid(format!("Expected `{}`, got `{}`{}", expected, got, at))
}

/// Decodes a JSON `tuple[int, ...]` of `arity` elements, as msgspec does (same errors, same
/// byte positions in them).
pub fn json_ints(data: &[u8], arity: usize) -> Result<Vec<i128>, ArgError> {
    let mut p = Json { data, pos: 0 };
    p.skip_ws();
    match p.peek() {
        None => return Err(malformed(TRUNCATED)),
        Some(b'[') => p.pos += 1,
        Some(_) => return Err(mismatch("array", p.value()?.kind(), None)),
    }
    let wrong_length = || ArgError::Invalid(format!("Expected `array` of length {}", arity));
    let mut ints = Vec::with_capacity(arity);
    p.skip_ws();
    if p.peek() == Some(b']') {
        p.pos += 1;
    } else {
        loop {
            if ints.len() == arity {
                return Err(wrong_length());
            }
            match p.value()? {
                Value::Int(n) => ints.push(n),
                other => return Err(mismatch("int", other.kind(), Some(ints.len()))),
            }
            p.skip_ws();
            match p.peek() {
                None => return Err(malformed(TRUNCATED)),
                Some(b',') => {
                    p.pos += 1;
                    p.skip_ws();
                    match p.peek() {
                        None => return Err(malformed(TRUNCATED)),
                        Some(b']') => return Err(p.error("trailing comma in array", 0)),
                        Some(_) => {}
                    }
                }
                Some(b']') => {
                    p.pos += 1;
                    break;
                }
                Some(_) => return Err(p.error("expected ',' or ']'", 0)),
            }
        }
    }
    if ints.len() != arity {
        return Err(wrong_length());
    }
    p.skip_ws();
    if p.pos < data.len() {
        return Err(p.error("trailing characters", 1));
    }
    Ok(ints)
}

/// A JSON value as far as an int argument cares.
enum Value {
    Int(i128),
    Float,
    /// A float beyond f64's range: msgspec's "Number out of range".
    Huge,
    Str,
    Bool,
    Null,
    Array,
    Object,
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Huge => "huge",
            Value::Str => "str",
            Value::Bool => "bool",
            Value::Null => "null",
            Value::Array => "array",
            Value::Object => "object",
        }
    }
}

struct Json<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Json<'_> {
    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn error(&self, what: &str, offset: usize) -> ArgError {
        malformed(&format!(
            "JSON is malformed: {} (byte {})",
            what,
            self.pos + offset
        ))
    }

    /// The value starting here. Containers are not read (msgspec reports their type at
    /// once); scalars are read whole, so a broken one is a decode error.
    fn value(&mut self) -> Result<Value, ArgError> {
        match self.peek() {
            None => Err(malformed(TRUNCATED)),
            Some(b'[') => Ok(Value::Array),
            Some(b'{') => Ok(Value::Object),
            Some(b'"') => self.string(),
            Some(b't') => self.literal(b"true", Value::Bool),
            Some(b'f') => self.literal(b"false", Value::Bool),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("invalid character", 0)),
        }
    }

    fn literal(&mut self, word: &[u8], value: Value) -> Result<Value, ArgError> {
        match self.data.get(self.pos..self.pos + word.len()) {
            None => Err(malformed(TRUNCATED)),
            Some(w) if w == word => {
                self.pos += word.len();
                Ok(value)
            }
            Some(_) => Err(self.error("invalid character", word.len())),
        }
    }

    fn string(&mut self) -> Result<Value, ArgError> {
        self.pos += 1;
        loop {
            match self.peek() {
                None => return Err(malformed(TRUNCATED)),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Value::Str);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        None => return Err(malformed(TRUNCATED)),
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            self.pos += 1;
                            for _ in 0..4 {
                                match self.peek() {
                                    None => return Err(malformed(TRUNCATED)),
                                    Some(c) if c.is_ascii_hexdigit() => self.pos += 1,
                                    Some(_) => {
                                        return Err(
                                            self.error("invalid character in unicode escape", 1)
                                        )
                                    }
                                }
                            }
                        }
                        Some(_) => return Err(self.error("invalid escape character in string", 1)),
                    }
                }
                Some(c) if c < 0x20 => return Err(self.error("invalid character", 0)),
                Some(_) => self.pos += 1,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Ints saturate beyond i128 (Python's are unbounded; such ids are unknown anyway).
    fn number(&mut self) -> Result<Value, ArgError> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
            match self.peek() {
                None => return Err(self.error("invalid number", 0)),
                Some(b'0'..=b'9') => {}
                Some(_) => return Err(self.error("invalid character", 0)),
            }
        }
        let int_start = self.pos;
        let leading_zero = self.peek() == Some(b'0');
        self.digits();
        if leading_zero && self.pos - int_start > 1 {
            self.pos = int_start + 1;
            return Err(self.error("invalid number", 0));
        }
        let int_end = self.pos;
        let mut float = false;
        if self.peek() == Some(b'.') {
            float = true;
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error("invalid number", 0));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            float = true;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("invalid number", 0));
            }
        }
        if float {
            let text = std::str::from_utf8(&self.data[int_start..self.pos]).unwrap_or("0");
            let finite = text.parse::<f64>().map_or(true, f64::is_finite);
            return Ok(if finite { Value::Float } else { Value::Huge });
        }
        let mut value: i128 = 0;
        for &c in &self.data[int_start..int_end] {
            let d = i128::from(c - b'0');
            value = value.saturating_mul(10);
            value = if negative {
                value.saturating_sub(d)
            } else {
                value.saturating_add(d)
            };
        }
        Ok(Value::Int(value))
    }
}

/// Python's `repr()` of a str, for error details that quote a name.
pub fn py_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..=0xa0).contains(&(c as u32)) || c == '\u{ad}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(s: &str) -> Result<Vec<i128>, ArgError> {
        Err(ArgError::Invalid(s.to_string()))
    }

    fn malformed(s: &str) -> Result<Vec<i128>, ArgError> {
        Err(ArgError::Malformed(s.to_string()))
    }

    #[test]
    fn msgpack_args_like_msgspec() {
        assert_eq!(msgpack_ints(b"\x92\x01\x05", 2), Ok(vec![1, 5]));
        assert_eq!(
            msgpack_ints(
                b"\x92\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xd3\x80\0\0\0\0\0\0\0",
                2
            ),
            Ok(vec![i128::from(u64::MAX), i128::from(i64::MIN)])
        );
        assert_eq!(msgpack_ints(b"\x90", 0), Ok(vec![]));
        assert_eq!(
            msgpack_ints(b"\xc1", 2),
            malformed("MessagePack data is malformed: invalid opcode '\\xc1' (byte 0)")
        );
        assert_eq!(msgpack_ints(b"", 2), malformed(TRUNCATED));
        assert_eq!(msgpack_ints(b"\x92\x01", 2), malformed(TRUNCATED));
        assert_eq!(
            msgpack_ints(b"\x92\x01\x02\x00", 2),
            malformed("MessagePack data is malformed: trailing characters (byte 3)")
        );
        assert_eq!(
            msgpack_ints(b"\x92\xa1x\x01", 2),
            invalid("Expected `int`, got `str` - at `$[0]`")
        );
        assert_eq!(
            msgpack_ints(b"\x92\xa1x\xc1", 2),
            invalid("Expected `int`, got `str` - at `$[0]`")
        );
        assert_eq!(
            msgpack_ints(b"\x91\x01", 2),
            invalid("Expected `array` of length 2, got 1")
        );
        assert_eq!(
            msgpack_ints(b"\x81\xa1a\x01", 2),
            invalid("Expected `array`, got `object`")
        );
        assert_eq!(
            msgpack_ints(b"\x92\x01\xc0", 2),
            invalid("Expected `int`, got `None` - at `$[1]`")
        );
        assert_eq!(msgpack_ints(b"\x92\xa2x", 2), malformed(TRUNCATED));
        assert_eq!(msgpack_ints(b"\xcd\x01", 2), malformed(TRUNCATED));
        assert_eq!(
            msgpack_ints(b"\x92\xdc\x00\x01", 2),
            invalid("Expected `int`, got `array` - at `$[0]`")
        );
        assert_eq!(
            msgpack_ints(b"\x92\xd4\x05\x01\x01", 2),
            invalid("Expected `int`, got `ext` - at `$[0]`")
        );
    }

    #[test]
    fn json_args_like_msgspec() {
        assert_eq!(json_ints(b" [1, -5] ", 2), Ok(vec![1, -5]));
        assert_eq!(json_ints(b"[]", 0), Ok(vec![]));
        assert_eq!(
            json_ints(b"[100000000000000000000,1]", 2),
            Ok(vec![100_000_000_000_000_000_000, 1])
        );
        assert_eq!(json_ints(b"", 2), malformed(TRUNCATED));
        assert_eq!(
            json_ints(b"\xc1", 2),
            malformed("JSON is malformed: invalid character (byte 0)")
        );
        assert_eq!(
            json_ints(b"[1,2] x", 2),
            malformed("JSON is malformed: trailing characters (byte 7)")
        );
        assert_eq!(
            json_ints(b"[1]", 2),
            invalid("Expected `array` of length 2")
        );
        assert_eq!(
            json_ints(b"[1,2,3]", 2),
            invalid("Expected `array` of length 2")
        );
        assert_eq!(
            json_ints(b"[1]", 0),
            invalid("Expected `array` of length 0")
        );
        assert_eq!(
            json_ints(b"{\"a\":1}", 2),
            invalid("Expected `array`, got `object`")
        );
        assert_eq!(
            json_ints(b"[1.0,2]", 2),
            invalid("Expected `int`, got `float` - at `$[0]`")
        );
        assert_eq!(
            json_ints(b"[1,null]", 2),
            invalid("Expected `int`, got `null` - at `$[1]`")
        );
        assert_eq!(
            json_ints(b"[true,2]", 2),
            invalid("Expected `int`, got `bool` - at `$[0]`")
        );
        assert_eq!(
            json_ints(b"[1,5e917]", 2),
            invalid("Number out of range - at `$[1]`")
        );
        assert_eq!(
            json_ints(b"[1,2,]", 2),
            malformed("JSON is malformed: trailing comma in array (byte 5)")
        );
        assert_eq!(
            json_ints(b"[-01,2]", 2),
            malformed("JSON is malformed: invalid number (byte 3)")
        );
        assert_eq!(json_ints(b"[0", 2), malformed(TRUNCATED));
        assert_eq!(
            json_ints(b"[tru,1]", 2),
            malformed("JSON is malformed: invalid character (byte 5)")
        );
        assert_eq!(
            json_ints(b"[\"a\\q\",1]", 2),
            malformed("JSON is malformed: invalid escape character in string (byte 5)")
        );
    }

    #[test]
    fn encodes_like_msgspec() {
        // msgspec.json.encode of the same floats
        let floats = [
            0.0,
            1e-6,
            5e-6,
            1.5e-5,
            0.000123,
            1.0,
            2.5,
            1764612000.123456,
            1e16,
            1.2345e17,
        ];
        let expected = "[0.0,1e-6,5e-6,0.000015,0.000123,1.0,2.5,1764612000.123456,1e16,1.2345e17]";
        assert_eq!(
            String::from_utf8(Format::Json.encode(&floats)).unwrap(),
            expected
        );
        // msgspec.msgpack.encode(ErrorBody("x", "y")) and of [ScoredProduct(300, 0.5)]
        let body = ErrorBody {
            error: "x".into(),
            detail: "y".into(),
        };
        assert_eq!(
            Format::Msgpack.encode(&body),
            b"\x82\xa5error\xa1x\xa6detail\xa1y"
        );
        let scored = vec![crate::model::ScoredProduct {
            product_id: 300,
            score: 0.5,
        }];
        assert_eq!(
            Format::Msgpack.encode(&scored),
            b"\x91\x82\xaaproduct_id\xcd\x01\x2c\xa5score\xcb\x3f\xe0\0\0\0\0\0\0"
        );
    }

    #[test]
    fn repr_quotes_like_python() {
        assert_eq!(py_repr("nope"), "'nope'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_repr("x\ny\\\u{1}"), "'x\\ny\\\\\\x01'");
        assert_eq!(py_repr("é"), "'é'");
    }
}
