//! Just enough DER to read a certificate's public key and validity. webpki checks chains but
//! does not hand out `notAfter`, and a full X.509 parser would cost the binary far more than
//! these few lines (size budget, docs/design.md §7). Everything here is input from the network:
//! every length is checked, nothing panics.

use anyhow::{bail, Context, Result};

use crate::calendar;

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const EXPLICIT_0: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// One tag-length-value: its content, and its whole encoding (tag and length included).
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// What the node needs from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFields<'a> {
    /// DER SubjectPublicKeyInfo, tag and length included.
    pub spki: &'a [u8],
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

/// Certificate → tbsCertificate → (version, serial, signature, issuer, validity, subject,
/// subjectPublicKeyInfo), RFC 5280 §4.1.
pub fn cert_fields(der: &[u8]) -> Result<CertFields<'_>> {
    let (cert, _) = expect(der, SEQUENCE).context("certificate")?;
    let (tbs, _) = expect(cert.content, SEQUENCE).context("tbsCertificate")?;
    let mut rest = tbs.content;
    if rest.first() == Some(&EXPLICIT_0) {
        rest = read(rest)?.1;
    }
    for (tag, what) in [
        (INTEGER, "serial"),
        (SEQUENCE, "signature"),
        (SEQUENCE, "issuer"),
    ] {
        rest = expect(rest, tag).context(what)?.1;
    }
    let (validity, rest) = expect(rest, SEQUENCE).context("validity")?;
    let (_subject, rest) = expect(rest, SEQUENCE).context("subject")?;
    let (spki, _) = expect(rest, SEQUENCE).context("subjectPublicKeyInfo")?;
    let (not_before, after) = read(validity.content).context("notBefore")?;
    let (not_after, _) = read(after).context("notAfter")?;
    Ok(CertFields {
        spki: spki.whole,
        not_before: time(not_before)?,
        not_after: time(not_after)?,
    })
}

fn expect(input: &[u8], tag: u8) -> Result<(Tlv<'_>, &[u8])> {
    let (tlv, rest) = read(input)?;
    if tlv.tag != tag {
        bail!("DER tag {:#04x} where {tag:#04x} was expected", tlv.tag);
    }
    Ok((tlv, rest))
}

/// Reads one TLV (short or long definite length up to 4 bytes) and returns the rest.
fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8])> {
    let (&tag, after_tag) = input.split_first().context("DER ends before a tag")?;
    if tag & 0x1f == 0x1f {
        bail!("DER high tag numbers are not used in certificates");
    }
    let (&first, mut after_len) = after_tag
        .split_first()
        .context("DER ends before a length")?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || after_len.len() < n {
            bail!("bad DER length");
        }
        let (bytes, rest) = after_len.split_at(n);
        after_len = rest;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if after_len.len() < len {
        bail!("DER value longer than its input");
    }
    let header = input.len() - after_len.len();
    let tlv = Tlv {
        tag,
        content: &after_len[..len],
        whole: &input[..header + len],
    };
    Ok((tlv, &after_len[len..]))
}

/// UTCTime `YYMMDDHHMMSSZ` (years 1950–2049) or GeneralizedTime `YYYYMMDDHHMMSSZ`, the only
/// forms RFC 5280 §4.1.2.5 allows.
fn time(t: Tlv) -> Result<i64> {
    let (year, rest) = match (t.tag, t.content.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(&t.content[..2])?;
            (
                if yy >= 50 { 1900 + yy } else { 2000 + yy },
                &t.content[2..],
            )
        }
        (GENERALIZED_TIME, 15) => (digits(&t.content[..4])?, &t.content[4..]),
        _ => bail!("certificate time is not in RFC 5280 form"),
    };
    if rest[10] != b'Z' {
        bail!("certificate time is not UTC");
    }
    let [mo, d, h, mi, s] = [0, 2, 4, 6, 8].map(|i| digits(&rest[i..i + 2]));
    let (mo, d, h, mi, s) = (mo?, d?, h?, mi?, s?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        bail!("certificate time out of range");
    }
    // In range: months and days were checked just above.
    let days = calendar::days_from_civil(year, mo as u32, d as u32);
    Ok(days * calendar::DAY + h * 3600 + mi * 60 + s)
}

fn digits(b: &[u8]) -> Result<i64> {
    b.iter().try_fold(0i64, |acc, c| match c {
        b'0'..=b'9' => Ok(acc * 10 + i64::from(c - b'0')),
        _ => bail!("certificate time has a non-digit"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, content: &[u8]) -> Tlv<'_> {
        Tlv {
            tag,
            content,
            whole: content,
        }
    }

    #[test]
    fn both_time_forms() {
        assert_eq!(time(tlv(UTC_TIME, b"700101000000Z")).unwrap(), 0);
        assert_eq!(
            time(tlv(UTC_TIME, b"491231235959Z")).unwrap(),
            2_524_607_999
        );
        assert_eq!(
            time(tlv(GENERALIZED_TIME, b"20380119031408Z")).unwrap(),
            1 << 31
        );
        for bad in [
            &b"700101000000+"[..],
            b"7001010000001",
            b"701301000000Z",
            b"70a101000000Z",
        ] {
            assert!(time(tlv(UTC_TIME, bad)).is_err(), "{bad:?}");
        }
        assert!(time(tlv(GENERALIZED_TIME, b"700101000000Z")).is_err());
    }

    #[test]
    fn truncated_or_garbage_input_is_an_error() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x05, 1],
            &[0x1f, 0],
        ] {
            assert!(read(bad).is_err(), "{bad:?}");
        }
        assert!(cert_fields(&[0x30, 0x03, 0x30, 0x01, 0x02]).is_err());
        let (t, rest) = read(&[0x02, 0x81, 0x01, 0x07, 0xff]).unwrap();
        assert_eq!(
            (t.content, t.whole.len(), rest),
            (&[7u8][..], 4, &[0xffu8][..])
        );
    }
}
