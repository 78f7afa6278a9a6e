//! Buffers for bytes that may hold card data (a relay's filled body, the destination's
//! answer before it is masked). They grow by copying into a new zeroizing allocation:
//! `Vec`'s own growth would move the bytes and free the old buffer as it was.

use zeroize::Zeroizing;

/// Append `data` to `buf`. When it must grow, the new capacity is double the old one,
/// at most `limit` — but never less than the bytes it must hold.
pub fn append(buf: &mut Zeroizing<Vec<u8>>, data: &[u8], limit: usize) {
    let needed = buf.len() + data.len();
    if needed > buf.capacity() {
        let wanted = needed.max(buf.capacity().saturating_mul(2).min(limit));
        let mut bigger = Zeroizing::new(Vec::with_capacity(wanted));
        bigger.extend_from_slice(buf);
        // The old buffer is zeroized as it drops here.
        *buf = bigger;
    }
    buf.extend_from_slice(data);
}

/// `io::Write` into a zeroizing buffer (for `serde_json::to_writer`), growing by [`append`].
pub struct ZeroizingWriter<'a>(pub &'a mut Zeroizing<Vec<u8>>);

impl std::fmt::Debug for ZeroizingWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ZeroizingWriter([REDACTED])")
    }
}

impl std::io::Write for ZeroizingWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        append(self.0, data, usize::MAX);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_keeps_the_bytes_doubles_and_respects_the_limit() {
        let mut buf = Zeroizing::new(Vec::with_capacity(4));
        append(&mut buf, b"abc", 100);
        assert_eq!(buf.capacity(), 4, "fits: no growth");
        append(&mut buf, b"defg", 100);
        assert_eq!((buf.as_slice(), buf.capacity()), (&b"abcdefg"[..], 8));
        append(&mut buf, b"hi", 9);
        assert_eq!((buf.as_slice(), buf.capacity()), (&b"abcdefghi"[..], 9), "doubling stops at the limit");
        append(&mut buf, b"0123456789", 9);
        assert_eq!(buf.len(), 19, "the limit never truncates: the caller checks it first");
    }

    #[test]
    fn the_writer_serializes_through_append() {
        let mut buf = Zeroizing::new(Vec::with_capacity(2));
        serde_json::to_writer(ZeroizingWriter(&mut buf), &serde_json::json!({"a": [1, 2, 3], "b": "x"})).unwrap();
        assert_eq!(buf.as_slice(), br#"{"a":[1,2,3],"b":"x"}"#);
    }
}
