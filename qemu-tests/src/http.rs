//! A deliberately small HTTP/1.1 server side: requests read one at a time (the connection
//! loop in server.rs keeps a connection for several of them), bounded sizes and time. The
//! simulator's clients are test clients and the node binary, so we only need GET and small
//! POST bodies; anything outside that is answered with a 4xx, never a panic.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Request line plus headers. Tomcat/Undertow default to 8 KiB; 16 KiB leaves room for long
/// query strings without letting a client make us buffer much.
pub const MAX_HEAD: usize = 16 * 1024;
/// Admin JSON bodies are tiny; the engine endpoints take no body at all.
pub const MAX_BODY: usize = 64 * 1024;
/// Whole-request deadline, so a client trickling one byte per read timeout cannot hold a thread.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// The request target exactly as sent (`/path?query`).
    pub target: String,
    /// Path part of the target, not percent-decoded (our routes are plain ASCII).
    pub path: String,
    /// Query string as sent, without the `?`.
    pub raw_query: String,
    /// Decoded query parameters in the order received, duplicates kept.
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `HTTP/1.0`: the connection ends after the answer unless the client asks otherwise.
    pub http10: bool,
}

impl Request {
    /// First value of a query parameter, like the servlet API's `getParameter`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Header lookup; header names are case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client lets the connection stay open after this answer (RFC 9112 §9.3):
    /// HTTP/1.1 unless it sent `Connection: close`, HTTP/1.0 only with `keep-alive`.
    pub fn keeps_alive(&self) -> bool {
        let has = |token: &str| {
            self.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
                .flat_map(|(_, v)| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if has("close") {
            return false;
        }
        !self.http10 || has("keep-alive")
    }
}

#[derive(Debug)]
pub enum ReadError {
    /// The peer closed before sending anything: not worth an answer.
    Closed,
    /// Nothing arrived within the socket's read timeout (an idle kept-alive connection).
    Idle(io::Error),
    /// Head or body over the limits (status to answer).
    TooLarge(u16),
    Malformed(&'static str),
    Io(io::Error),
}

impl ReadError {
    /// The status we answer with, if answering makes sense at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            ReadError::Closed | ReadError::Idle(_) | ReadError::Io(_) => None,
            ReadError::TooLarge(s) => Some(*s),
            ReadError::Malformed(_) => Some(400),
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Closed => f.write_str("connection closed before a request"),
            ReadError::Idle(e) => write!(f, "no request before the read timeout: {e}"),
            ReadError::TooLarge(431) => f.write_str("request head too large"),
            ReadError::TooLarge(_) => f.write_str("request body too large"),
            ReadError::Malformed(m) => write!(f, "malformed request: {m}"),
            ReadError::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

/// Reads one request. The socket's read timeout bounds each read; `REQUEST_DEADLINE` bounds
/// the whole request.
pub fn read_request(r: &mut impl Read) -> Result<Request, ReadError> {
    let start = Instant::now();
    let mut buf = Vec::with_capacity(1024);
    let head_end = read_head(r, &mut buf, start)?;
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| ReadError::Malformed("head is not UTF-8"))?;
    let mut req = parse_head(head)?;
    let already = buf[head_end + 4..].to_vec();
    req.body = read_body(r, &req, already, start)?;
    Ok(req)
}

fn read_head(r: &mut impl Read, buf: &mut Vec<u8>, start: Instant) -> Result<usize, ReadError> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            return Ok(pos);
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::TooLarge(431));
        }
        if start.elapsed() > REQUEST_DEADLINE {
            return Err(ReadError::Malformed("request not complete within deadline"));
        }
        match r.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err(ReadError::Closed),
            Ok(0) => return Err(ReadError::Malformed("connection closed inside the head")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if buf.is_empty() && is_eof(&e) => return Err(ReadError::Closed),
            Err(e) if buf.is_empty() && is_timeout(&e) => return Err(ReadError::Idle(e)),
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// A read timeout: `WouldBlock` on Linux, `TimedOut` elsewhere.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// rustls reports a peer that vanished without close_notify as UnexpectedEof.
fn is_eof(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    )
}

fn read_body(
    r: &mut impl Read,
    req: &Request,
    mut body: Vec<u8>,
    start: Instant,
) -> Result<Vec<u8>, ReadError> {
    if req.header("transfer-encoding").is_some() {
        return Err(ReadError::Malformed("transfer-encoding is not supported"));
    }
    let len = match req.header("content-length") {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| ReadError::Malformed("bad content-length"))?,
    };
    if len > MAX_BODY {
        return Err(ReadError::TooLarge(413));
    }
    let mut chunk = [0u8; 4096];
    while body.len() < len {
        if start.elapsed() > REQUEST_DEADLINE {
            return Err(ReadError::Malformed("body not complete within deadline"));
        }
        match r.read(&mut chunk) {
            Ok(0) => return Err(ReadError::Malformed("connection closed inside the body")),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    body.truncate(len);
    Ok(body)
}

fn parse_head(head: &str) -> Result<Request, ReadError> {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed("bad request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Malformed("unsupported HTTP version"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Malformed("bad method"));
    }
    if !target.starts_with('/') {
        return Err(ReadError::Malformed(
            "only origin-form targets are supported",
        ));
    }
    let (path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        http10: version == "HTTP/1.0",
        method: method.to_string(),
        target: target.to_string(),
        path: path.to_string(),
        raw_query: raw_query.to_string(),
        query: parse_query(raw_query),
        ..Request::default()
    };
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(ReadError::Malformed("bad header line"))?;
        if name.is_empty() || name.contains(' ') {
            return Err(ReadError::Malformed("bad header name"));
        }
        req.headers
            .push((name.to_string(), value.trim().to_string()));
    }
    Ok(req)
}

/// `application/x-www-form-urlencoded` decoding as the servlet container does it: `+` is a
/// space, `%XX` a byte. Broken escapes are kept literally rather than rejected, so the log
/// still shows what the client sent.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match hex_pair(b[i + 1], b[i + 2]) {
                Some(v) => {
                    out.push(v);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Form-style encoding for building query strings in tests and redirects.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn hex_pair(h: u8, l: u8) -> Option<u8> {
    let d = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
    Some(d(h)? << 4 | d(l)?)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A response body; `Repeat` lets the oversized fault send megabytes without allocating them.
#[derive(Debug, Clone)]
pub enum Body {
    Bytes(Vec<u8>),
    Repeat { byte: u8, len: usize },
}

impl Body {
    pub fn len(&self) -> usize {
        match self {
            Body::Bytes(b) => b.len(),
            Body::Repeat { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: content_type.to_string(),
            headers: Vec::new(),
            body: Body::Bytes(body.into()),
        }
    }

    /// What `HttpServletResponse.sendError(status, message)` produces on the engine's
    /// container when no error page is mapped (docs/ovirt-protocol.md §3.6): the servlet's
    /// message, HTML-escaped, as the whole body of a minimal page.
    pub fn error(status: u16, message: &str) -> Response {
        let page = format!(
            "<html><head><title>Error</title></head><body>{}</body></html>",
            html_escape(message)
        );
        Response::new(status, "text/html;charset=UTF-8", page)
    }

    pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"null".to_vec());
        body.push(b'\n');
        Response::new(status, "application/json", body)
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Body as bytes when it is small enough to hold (everything but the oversized fault).
    pub fn body_bytes(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Bytes(b) => Some(b),
            Body::Repeat { .. } => None,
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes the whole response. `close`: the server ends the connection after it
/// (`Connection: close`); otherwise the client may send its next request on it.
pub fn write_response(
    w: &mut impl Write,
    resp: &Response,
    head_only: bool,
    close: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nDate: {}\r\nServer: engine-sim\r\nConnection: {}\r\n",
        resp.status,
        reason(resp.status),
        http_date(std::time::SystemTime::now()),
        if close { "close" } else { "keep-alive" },
    );
    if !resp.content_type.is_empty() {
        let _ = write!(head, "Content-Type: {}\r\n", resp.content_type);
    }
    let _ = write!(head, "Content-Length: {}\r\n", resp.body.len());
    for (k, v) in &resp.headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if !head_only {
        write_body(w, &resp.body)?;
    }
    w.flush()
}

fn write_body(w: &mut impl Write, body: &Body) -> io::Result<()> {
    match body {
        Body::Bytes(b) => w.write_all(b),
        Body::Repeat { byte, len } => {
            let chunk = vec![*byte; 16 * 1024];
            let mut left = *len;
            while left > 0 {
                let n = left.min(chunk.len());
                w.write_all(&chunk[..n])?;
                left -= n;
            }
            Ok(())
        }
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// IMF-fixdate (RFC 9110 §5.6.7). The node may use the engine's `Date` as a clock fallback
/// (docs/design.md §1 step 3), so the simulator must send a correct one.
pub fn http_date(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let dt =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        &dt.weekday().to_string()[..3],
        dt.day(),
        &dt.month().to_string()[..3],
        dt.year(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Request, ReadError> {
        read_request(&mut &raw[..])
    }

    #[test]
    fn parses_get_with_query_in_order() {
        let r = parse(b"GET /a/b?x=1&name=a+b%20c&x=2&flag HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/a/b");
        assert_eq!(r.raw_query, "x=1&name=a+b%20c&x=2&flag");
        assert_eq!(r.param("x"), Some("1"));
        assert_eq!(r.param("name"), Some("a b c"));
        assert_eq!(r.param("flag"), Some(""));
        assert_eq!(r.query.len(), 4);
        assert_eq!(r.header("HOST"), Some("h"));
    }

    #[test]
    fn reads_post_body() {
        let r = parse(b"POST /admin HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcdEXTRA").unwrap();
        assert_eq!(r.body, b"abcd");
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        let cases: &[&[u8]] = &[
            b"GET\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
            b"GET / HTTP/1.1\r\n",
            b"\xff\xfe / HTTP/1.1\r\n\r\n",
        ];
        for c in cases {
            let e = parse(c).unwrap_err();
            assert_eq!(
                e.status(),
                Some(400),
                "{:?}: {e}",
                String::from_utf8_lossy(c)
            );
        }
        assert!(matches!(parse(b""), Err(ReadError::Closed)));
    }

    #[test]
    fn enforces_size_limits() {
        let mut big = b"GET /".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        assert_eq!(parse(&big).unwrap_err().status(), Some(431));
        let huge = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(parse(huge.as_bytes()).unwrap_err().status(), Some(413));
    }

    #[test]
    fn url_decoding_is_lenient() {
        assert_eq!(url_decode("%41%4a%zz%"), "AJ%zz%");
        assert_eq!(url_decode("a%2"), "a%2");
        assert_eq!(url_decode(&url_encode("a b&c=d/é")), "a b&c=d/é");
    }

    #[test]
    fn writes_head_and_body() {
        let mut out = Vec::new();
        let resp = Response::new(200, "text/plain", "1").with_header("X-A", "b");
        write_response(&mut out, &resp, false, true).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("\r\nConnection: close\r\n"));
        assert!(s.contains("\r\nContent-Type: text/plain\r\n"));
        assert!(s.contains("\r\nContent-Length: 1\r\n"));
        assert!(s.contains("\r\nX-A: b\r\n"));
        assert!(s.ends_with("\r\n\r\n1"));
    }

    #[test]
    fn the_client_decides_whether_the_connection_stays() {
        let keeps = |raw: &str| parse(raw.as_bytes()).unwrap().keeps_alive();
        assert!(keeps("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
        assert!(!keeps("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!keeps("GET / HTTP/1.1\r\nconnection: TE, Close\r\n\r\n"));
        assert!(!keeps("GET / HTTP/1.0\r\n\r\n"));
        assert!(keeps("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        let mut out = Vec::new();
        write_response(&mut out, &Response::new(200, "", "x"), false, false).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("\r\nConnection: keep-alive\r\n"), "{s}");
    }

    #[test]
    fn http_date_format() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
