//! crypt(3) password hashes: SHA-512-crypt (`$6$`) made here, and the forms we accept.
//!
//! SHA-512-crypt is Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512" (the algorithm
//! glibc and libxcrypt implement), written on `ring`'s SHA-512 so that `setup` can hash a
//! password typed at the console without a C library's `crypt`. The tests check the
//! specification's own vectors.

use crate::secret::Secret;

/// The crypt alphabet (base64 in this order, least significant bits first).
const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

const DEFAULT_ROUNDS: u32 = 5000;
const MIN_ROUNDS: u32 = 1000;
const MAX_ROUNDS: u32 = 999_999_999;
const MAX_SALT: usize = 16;
/// What `hash_password` uses: well above the default of 5000, still ~0.1 s per login.
pub const ROUNDS: u32 = 100_000;

/// Why a setting (`$6$[rounds=N$]salt`) is refused.
pub type Expected = &'static str;

/// `crypt(password, setting)` for `$6$` settings: `$6$[rounds=N$]salt[$…]`, the salt cut at
/// 16 characters and the rounds clamped to 1000–999999999, as the specification says.
pub fn sha512_crypt(password: &[u8], setting: &str) -> Result<String, Expected> {
    const FORM: Expected = "a SHA-512-crypt setting $6$[rounds=N$]SALT";
    let rest = setting.strip_prefix("$6$").ok_or(FORM)?;
    let (rounds, rest) = match rest.strip_prefix("rounds=") {
        Some(r) => {
            let (n, rest) = r.split_once('$').ok_or(FORM)?;
            let n: u64 = n.parse().map_err(|_| FORM)?;
            let n = n.clamp(u64::from(MIN_ROUNDS), u64::from(MAX_ROUNDS)) as u32;
            (Some(n), rest)
        }
        None => (None, rest),
    };
    let salt = rest.split('$').next().unwrap_or_default();
    let salt = &salt.as_bytes()[..salt.len().min(MAX_SALT)];
    if !salt.iter().all(|b| CRYPT64.contains(b)) {
        return Err("a salt of characters from ./0-9A-Za-z");
    }
    let digest = sha512_rounds(password, salt, rounds.unwrap_or(DEFAULT_ROUNDS));
    let mut out = String::from("$6$");
    if let Some(n) = rounds {
        out += &format!("rounds={n}$");
    }
    out += std::str::from_utf8(salt).map_err(|_| FORM)?;
    out.push('$');
    out += &encode(&digest);
    Ok(out)
}

/// A new SHA-512-crypt hash of `password` with a random 16-character salt.
pub fn hash_password(password: &Secret) -> anyhow::Result<Secret> {
    let mut raw = [0u8; MAX_SALT];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no random salt: {e}"))?;
    let salt: String = raw
        .iter()
        .map(|b| CRYPT64[usize::from(b & 63)] as char)
        .collect();
    let setting = format!("$6$rounds={ROUNDS}${salt}");
    sha512_crypt(password.expose().as_bytes(), &setting)
        .map(Secret::new)
        .map_err(|e| anyhow::anyhow!("hashing the password: expected {e}"))
}

/// True when `password` hashes to `hash` (a `$6$` hash).
pub fn verify(password: &[u8], hash: &str) -> bool {
    sha512_crypt(password, hash).is_ok_and(|h| h == hash)
}

/// A hash `setup --root-password-hash` accepts: SHA-512-crypt (`$6$`), SHA-256-crypt
/// (`$5$`) or yescrypt (`$y$`), each in its exact form. MD5 (`$1$`) and DES are refused:
/// they are broken, and this is a new password, not a legacy kernel argument.
pub fn check_hash(hash: &str) -> Result<(), Expected> {
    const EXPECTED: Expected = "a crypt(3) hash: $6$[rounds=N$]SALT$HASH (SHA-512), \
         $5$[rounds=N$]SALT$HASH (SHA-256) or $y$PARAMS$SALT$HASH (yescrypt)";
    let crypt64 = |s: &str| !s.is_empty() && s.bytes().all(|b| CRYPT64.contains(&b));
    let sha = |rest: &str, len: usize| {
        let rest = match rest.strip_prefix("rounds=") {
            Some(r) => match r.split_once('$') {
                Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => rest,
                _ => return false,
            },
            None => rest,
        };
        matches!(rest.split_once('$'),
            Some((salt, h)) if crypt64(salt) && salt.len() <= MAX_SALT && h.len() == len && crypt64(h))
    };
    let ok = if let Some(rest) = hash.strip_prefix("$6$") {
        sha(rest, 86)
    } else if let Some(rest) = hash.strip_prefix("$5$") {
        sha(rest, 43)
    } else if let Some(rest) = hash.strip_prefix("$y$") {
        let parts: Vec<&str> = rest.split('$').collect();
        parts.len() == 3 && parts.iter().all(|p| crypt64(p)) && parts[2].len() == 43
    } else {
        false
    };
    if ok {
        Ok(())
    } else {
        Err(EXPECTED)
    }
}

fn sha512(parts: &[&[u8]]) -> [u8; 64] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 64];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// `len` bytes of `block` repeated (the specification's "for each block of 64 bytes").
fn repeated(block: &[u8; 64], len: usize) -> Vec<u8> {
    block.iter().copied().cycle().take(len).collect()
}

/// Steps 1–21 of the specification: the 64-byte digest after `rounds` rounds.
fn sha512_rounds(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 64] {
    let b = sha512(&[password, salt, password]);
    let mut a = ring::digest::Context::new(&ring::digest::SHA512);
    a.update(password);
    a.update(salt);
    a.update(&repeated(&b, password.len()));
    let mut n = password.len();
    while n > 0 {
        if n & 1 == 1 {
            a.update(&b);
        } else {
            a.update(password);
        }
        n >>= 1;
    }
    let mut c = [0u8; 64];
    c.copy_from_slice(a.finish().as_ref());
    let dp = sha512(&vec![password; password.len()]);
    let p = repeated(&dp, password.len());
    let ds = sha512(&vec![salt; 16 + usize::from(c[0])]);
    let s = repeated(&ds, salt.len());
    for i in 0..rounds {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
        if i & 1 == 1 {
            ctx.update(&p);
        } else {
            ctx.update(&c);
        }
        if i % 3 != 0 {
            ctx.update(&s);
        }
        if i % 7 != 0 {
            ctx.update(&p);
        }
        if i & 1 == 1 {
            ctx.update(&c);
        } else {
            ctx.update(&p);
        }
        c.copy_from_slice(ctx.finish().as_ref());
    }
    c
}

/// The specification's byte order for SHA-512, three bytes to four characters.
const ORDER: [(usize, usize, usize); 21] = [
    (0, 21, 42),
    (22, 43, 1),
    (44, 2, 23),
    (3, 24, 45),
    (25, 46, 4),
    (47, 5, 26),
    (6, 27, 48),
    (28, 49, 7),
    (50, 8, 29),
    (9, 30, 51),
    (31, 52, 10),
    (53, 11, 32),
    (12, 33, 54),
    (34, 55, 13),
    (56, 14, 35),
    (15, 36, 57),
    (37, 58, 16),
    (59, 17, 38),
    (18, 39, 60),
    (40, 61, 19),
    (62, 20, 41),
];

fn encode(d: &[u8; 64]) -> String {
    let mut out = String::with_capacity(86);
    let mut put = |b2: u8, b1: u8, b0: u8, n: usize| {
        let mut w = (u32::from(b2) << 16) | (u32::from(b1) << 8) | u32::from(b0);
        for _ in 0..n {
            out.push(CRYPT64[(w & 63) as usize] as char);
            w >>= 6;
        }
    };
    for (x, y, z) in ORDER {
        put(d[x], d[y], d[z], 4);
    }
    put(0, 0, d[63], 2);
    out
}

#[cfg(test)]
mod tests;
