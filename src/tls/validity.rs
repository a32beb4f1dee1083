//! Reads the validity window of an X.509 certificate from its DER, for the pinning
//! verifiers (they skip the chain checks of webpki but should still refuse an expired
//! certificate, as Kong's OpenSSL-based DP does).

use rustls::CertificateError;
use rustls_pki_types::UnixTime;

/// Checks that `now` is within the certificate's validity window.
///
/// A certificate whose validity cannot be read is refused as badly encoded.
pub(crate) fn check(der: &[u8], now: UnixTime) -> Result<(), CertificateError> {
    let (not_before, not_after) = validity(der).ok_or(CertificateError::BadEncoding)?;
    if now.as_secs() < not_before {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before: UnixTime::since_unix_epoch(std::time::Duration::from_secs(not_before)),
        });
    }
    if now.as_secs() > not_after {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(not_after)),
        });
    }
    Ok(())
}

/// The (notBefore, notAfter) of a DER certificate, in seconds since the Unix epoch
/// (times before 1970 read as 0).
pub(crate) fn validity(der: &[u8]) -> Option<(u64, u64)> {
    let (tag, cert, _) = tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    // [0] EXPLICIT version, optional.
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    // serialNumber, signature, issuer.
    for want in [0x02, 0x30, 0x30] {
        let (tag, _, rest) = tlv(tbs)?;
        if tag != want {
            return None;
        }
        tbs = rest;
    }
    let (tag, validity, _) = tlv(tbs)?;
    if tag != 0x30 {
        return None;
    }
    let (t1, v1, rest) = tlv(validity)?;
    let (t2, v2, _) = tlv(rest)?;
    Some((time(t1, v1)?, time(t2, v2)?))
}

/// One DER tag-length-value: (tag, value, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || input.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &input[..n] {
            len = (len << 8) | usize::from(b);
        }
        input = &input[n..];
        len
    };
    if input.len() < len {
        return None;
    }
    Some((tag, &input[..len], &input[len..]))
}

/// UTCTime (tag 0x17, YYMMDDHHMMSSZ) or GeneralizedTime (tag 0x18, YYYYMMDDHHMMSSZ).
fn time(tag: u8, v: &[u8]) -> Option<u64> {
    let (year, rest) = match tag {
        0x17 if v.len() == 13 => {
            let yy = digits(&v[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &v[2..])
        }
        0x18 if v.len() == 15 => (digits(&v[..4])?, &v[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let hour = digits(&rest[4..6])?;
    let minute = digits(&rest[6..8])?;
    let second = digits(&rest[8..10])?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(u64::try_from(secs).unwrap_or(0))
}

fn digits(d: &[u8]) -> Option<u32> {
    d.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_and_generalized_times() {
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(time(0x17, b"240229123456Z"), Some(1_709_210_096));
        assert_eq!(time(0x18, b"20500101000000Z"), Some(2_524_608_000));
        assert_eq!(time(0x17, b"490101000000Z"), Some(2_493_072_000));
        assert_eq!(
            time(0x17, b"600101000000Z"),
            Some(0),
            "before 1970 reads as 0"
        );
        assert_eq!(time(0x17, b"24022912345Z"), None);
        assert_eq!(time(0x17, b"241329123456Z"), None);
        assert_eq!(time(0x18, b"2024022912345+"), None);
    }

    #[test]
    fn long_form_lengths_and_truncation() {
        let mut v = vec![0x04, 0x81, 0x80];
        v.extend([7u8; 0x80]);
        let (tag, val, rest) = tlv(&v).unwrap();
        assert_eq!((tag, val.len(), rest.len()), (0x04, 0x80, 0));
        assert!(tlv(&v[..50]).is_none());
        assert!(tlv(&[0x30, 0x80]).is_none());
        assert!(validity(b"").is_none());
        assert!(validity(&[0x30, 0x02, 0x30, 0x00]).is_none());
    }
}
