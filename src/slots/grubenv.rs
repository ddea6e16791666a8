//! GRUB's environment block: the file `grubenv` that `load_env`/`save_env` read and write.
//!
//! The file is exactly 1024 bytes: the line `# GRUB Environment Block`, then `key=value`
//! lines, then `#` up to the end. GRUB writes it in place through the blocks the file
//! already occupies (it never allocates), so we do the same: one write of the whole block at
//! the same offset, the size unchanged. The keys the boot depends on are written first, so
//! they sit in the first 512-byte sector, which a disk writes whole.

use anyhow::{bail, ensure, Result};

/// The size of the block, fixed by GRUB.
pub(crate) const SIZE: usize = 1024;
/// Its first line.
pub(crate) const HEADER: &[u8] = b"# GRUB Environment Block\n";

/// The variables of one block, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    /// Read a block. GRUB escapes `\` and newlines in values with a backslash; we write
    /// neither, so a value holding one is refused rather than guessed at.
    pub(crate) fn parse(block: &[u8]) -> Result<Env> {
        ensure!(
            block.len() == SIZE,
            "an environment block is {SIZE} bytes, not {}",
            block.len()
        );
        let Some(body) = block.strip_prefix(HEADER) else {
            bail!("not a GRUB environment block (no `# GRUB Environment Block` line)");
        };
        let mut env = Env::default();
        let mut rest = body;
        while let Some(&first) = rest.first() {
            let end = rest.iter().position(|&b| b == b'\n');
            if first == b'#' {
                // a comment, or the padding (which has no newline)
                match end {
                    Some(i) => rest = &rest[i + 1..],
                    None => break,
                }
                continue;
            }
            let Some(end) = end else {
                bail!("environment block: a line without its newline");
            };
            let line = std::str::from_utf8(&rest[..end])
                .map_err(|_| anyhow::anyhow!("environment block: a line that is not UTF-8"))?;
            let Some((key, value)) = line.split_once('=') else {
                bail!("environment block: a line without `=`");
            };
            check_key(key)?;
            check_value(value)?;
            env.set(key, value)?;
            rest = &rest[end + 1..];
        }
        Ok(env)
    }

    /// The block as GRUB writes it; an error when the variables do not fit.
    pub(crate) fn render(&self) -> Result<[u8; SIZE]> {
        let mut out = [b'#'; SIZE];
        let mut at = HEADER.len();
        out[..at].copy_from_slice(HEADER);
        for (k, v) in &self.vars {
            let line = format!("{k}={v}\n");
            let end = at + line.len();
            ensure!(
                end <= SIZE,
                "the GRUB environment block is full ({SIZE} bytes): shorten the kernel arguments"
            );
            out[at..end].copy_from_slice(line.as_bytes());
            at = end;
        }
        Ok(out)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Set `key` (kept in its place when present, else added at the end).
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<()> {
        check_key(key)?;
        check_value(value)?;
        match self.vars.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.vars.push((key.to_string(), value.to_string())),
        }
        Ok(())
    }

    /// The same variables with `first` (those present) at the front, in that order.
    pub(crate) fn ordered(&self, first: &[&str]) -> Env {
        let rank = |k: &str| first.iter().position(|f| *f == k).unwrap_or(first.len());
        let mut vars = self.vars.clone();
        vars.sort_by_key(|(k, _)| rank(k));
        Env { vars }
    }
}

/// Where in `image` an environment block starts: the one 512-byte-aligned sector that begins
/// with the header and whose 1024 bytes parse. Used on the EFI system partition, whose FAT
/// image is built with the file in one cluster (image/mkboot.sh).
pub(crate) fn find(image: &[u8]) -> Result<usize> {
    let mut found = None;
    for at in (0..image.len().saturating_sub(SIZE - 1)).step_by(512) {
        if image[at..].starts_with(HEADER) && Env::parse(&image[at..at + SIZE]).is_ok() {
            ensure!(
                found.is_none(),
                "two GRUB environment blocks on the EFI system partition"
            );
            found = Some(at);
        }
    }
    found.ok_or_else(|| anyhow::anyhow!("no GRUB environment block on the EFI system partition"))
}

fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ensure!(
        ok,
        "environment variable name {:?}: expected letters, digits and _",
        crate::escape::controls(key)
    );
    Ok(())
}

/// What GRUB reads back unchanged: printable ASCII without `\` (its escape character).
fn check_value(value: &str) -> Result<()> {
    ensure!(
        value
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'\\'),
        "environment value {:?}: expected printable ASCII without `\\`",
        crate::escape::controls(value)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(body: &str) -> Vec<u8> {
        let mut b = HEADER.to_vec();
        b.extend_from_slice(body.as_bytes());
        b.resize(SIZE, b'#');
        b
    }

    #[test]
    fn grub_editenv_output_reads_back() {
        // what `grub-editenv F create; grub-editenv F set a=1 b=x y` writes
        let env = Env::parse(&block("a=1\nb=x y\n")).unwrap();
        assert_eq!(env.get("a"), Some("1"));
        assert_eq!(env.get("b"), Some("x y"));
        assert_eq!(env.render().unwrap().to_vec(), block("a=1\nb=x y\n"));
    }

    #[test]
    fn set_keeps_order_and_empty_reads_as_unset() {
        let mut env = Env::parse(&block("slot_default=A\n")).unwrap();
        env.set("slot_default", "B").unwrap();
        env.set("slot_trial", "").unwrap();
        assert_eq!(env.get("slot_trial"), None);
        let out = env.render().unwrap();
        assert!(out.starts_with(b"# GRUB Environment Block\nslot_default=B\nslot_trial=\n#"));
        assert_eq!(out.len(), SIZE);
    }

    #[test]
    fn bad_blocks_are_errors_naming_the_problem() {
        for (b, want) in [
            (vec![b'#'; SIZE], "not a GRUB environment block"),
            (block("a=1")[..SIZE - 1].to_vec(), "1024 bytes"),
            (block("novalue\n"), "without `=`"),
            (block("a b=1\n"), "letters, digits"),
            (block("a=\\x\n"), "printable ASCII"),
        ] {
            let e = Env::parse(&b).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let mut full = block("");
        full[HEADER.len()..SIZE].fill(b'a');
        assert!(Env::parse(&full)
            .unwrap_err()
            .to_string()
            .contains("newline"));
    }

    #[test]
    fn ordered_puts_the_boot_keys_first() {
        let env = Env::parse(&block("x=1\nb=2\ny=3\na=4\n")).unwrap();
        let out = env.ordered(&["a", "b", "c"]).render().unwrap();
        assert!(out.starts_with(b"# GRUB Environment Block\na=4\nb=2\nx=1\ny=3\n#"));
    }

    #[test]
    fn too_much_does_not_fit() {
        let mut env = Env::default();
        env.set("ovirt_args", &"x".repeat(1000)).unwrap();
        let e = env.render().unwrap_err().to_string();
        assert!(e.contains("full"), "{e}");
        assert!(env.set("k", "a\nb").is_err());
    }

    #[test]
    fn find_takes_the_one_aligned_block() {
        let mut img = vec![0u8; 8192];
        img[3000..3000 + SIZE].copy_from_slice(&block("a=1\n")); // not aligned: ignored
        assert!(find(&img).is_err());
        img[4096..4096 + SIZE].copy_from_slice(&block("a=1\n"));
        assert_eq!(find(&img).unwrap(), 4096);
        img[1024..1024 + SIZE].copy_from_slice(&block("b=1\n"));
        assert!(find(&img).unwrap_err().to_string().contains("two"));
    }
}
