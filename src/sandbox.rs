//! The network worker's sandbox, on top of its unprivileged uid (src/worker.rs): it dies with
//! its parent, inherits no descriptor but its pipes and stderr, and cannot create, remove,
//! rename or re-permission a file (a classic-BPF seccomp filter; it needs none of that).
//!
//! [`in_child`] runs between fork and exec; [`deny_file_creation`] in the worker itself,
//! before it reads its job.

use anyhow::{bail, Result};
use libc::{c_long, sock_filter, sock_fprog};
use rustix::process::{Pid, Signal};

// ------------------------------------------------------------------ between fork and exec

/// The child's half of `Command::pre_exec`. std has already put the pipes on 0/1 and changed
/// uid/gid (the kernel clears the death signal on a credential change, so it is set here,
/// after). Async-signal-safe calls only: no allocation, no locks.
///
/// The death signal fires when the *thread* that forked exits: the flow starts every worker
/// from the main thread, which lives as long as the process.
pub(crate) fn in_child(parent: Pid) -> std::io::Result<()> {
    rustix::thread::set_no_new_privs(true)?;
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    // The parent may have died before the line above: then nothing would ever kill us.
    if rustix::process::getppid() != Some(parent) {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    cloexec_from(3)
}

/// Mark every descriptor from `first` on close-on-exec. Marked, not closed: std reports a
/// failed exec through a close-on-exec pipe of its own that must stay open until then.
fn cloexec_from(first: u32) -> std::io::Result<()> {
    // SAFETY: a plain syscall with integer arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Before Linux 5.11 (EL8 has 4.18): one fcntl per possible descriptor.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20);
    for fd in first..u32::try_from(limit).unwrap_or(u32::MAX).min(1 << 30) {
        cloexec_one(fd as i32)?;
    }
    Ok(())
}

fn cloexec_one(fd: i32) -> std::io::Result<()> {
    // SAFETY: fcntl on a number: a descriptor that is not open answers EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 || flags & libc::FD_CLOEXEC != 0 {
        return Ok(());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

// ------------------------------------------------------------------------ seccomp filter

/// `AUDIT_ARCH_*` of the syscalls the filter accepts: EM_* | 64-bit | little endian.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_003E);
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
const AUDIT_ARCH: Option<u32> = Some(0xC000_00B7);
#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_endian = "little")
)))]
const AUDIT_ARCH: Option<u32> = None;

/// `fchmodat2` has the same number everywhere (the unified table); libc lacks it on aarch64.
const SYS_FCHMODAT2: c_long = 452;

/// Opens whose flags decide: (syscall, index of the flags argument).
#[cfg(target_arch = "x86_64")]
const OPENS: &[(c_long, u32)] = &[(libc::SYS_open, 1), (libc::SYS_openat, 2)];
#[cfg(not(target_arch = "x86_64"))]
const OPENS: &[(c_long, u32)] = &[(libc::SYS_openat, 2)];

/// Flags that make an open create a file: `O_CREAT`, and `O_TMPFILE`'s own bit.
const CREATE_FLAGS: u32 = (libc::O_CREAT | (libc::O_TMPFILE & !libc::O_DIRECTORY)) as u32;

/// Refused outright, with the errno returned. `openat2` passes its flags in a struct the
/// filter cannot read: ENOSYS makes libc fall back to `openat`, which is checked. io_uring
/// would run opens where no seccomp filter sees them. `ftruncate`, like `write`, only acts
/// on a descriptor already open for writing, so it stays.
const REFUSED_ALL: &[(c_long, i32)] = &[
    (libc::SYS_openat2, libc::ENOSYS),
    (libc::SYS_io_uring_setup, libc::ENOSYS),
    (libc::SYS_mkdirat, libc::EPERM),
    (libc::SYS_mknodat, libc::EPERM),
    (libc::SYS_linkat, libc::EPERM),
    (libc::SYS_symlinkat, libc::EPERM),
    (libc::SYS_renameat2, libc::EPERM),
    (libc::SYS_unlinkat, libc::EPERM),
    (libc::SYS_truncate, libc::EPERM),
    (libc::SYS_fchmod, libc::EPERM),
    (libc::SYS_fchmodat, libc::EPERM),
    (SYS_FCHMODAT2, libc::EPERM),
    (libc::SYS_fchown, libc::EPERM),
    (libc::SYS_fchownat, libc::EPERM),
];

/// The older path calls that only some architectures have.
#[cfg(target_arch = "x86_64")]
const REFUSED_ARCH: &[c_long] = &[
    libc::SYS_creat,
    libc::SYS_mkdir,
    libc::SYS_mknod,
    libc::SYS_link,
    libc::SYS_symlink,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_unlink,
    libc::SYS_rmdir,
    libc::SYS_chmod,
    libc::SYS_chown,
    libc::SYS_lchown,
];
/// aarch64 keeps `renameat` (38 in the generic table; libc's glibc list lacks the name).
#[cfg(target_arch = "aarch64")]
const REFUSED_ARCH: &[c_long] = &[38];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const REFUSED_ARCH: &[c_long] = &[];

/// On x86_64 the x32 ABI shares the architecture value; its syscall numbers carry this bit.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data`: nr (u32), arch (u32), ip (u64), args (6 × u64).
const NR: u32 = 0;
const ARCH: u32 = 4;
/// The low 32 bits of argument `i` (both architectures are little endian).
const fn arg_low(i: u32) -> u32 {
    16 + 8 * i
}

/// Install the filter for the rest of the worker's life (and every thread it starts).
/// Needs `no_new_privs`, set before exec. An architecture without a filter runs without one,
/// saying so; a kernel that refuses the filter fails the job.
pub fn deny_file_creation() -> Result<()> {
    let Some(arch) = AUDIT_ARCH else {
        log::warn!(
            "network worker: no seccomp filter for {} (x86_64 and aarch64 only); running without it",
            std::env::consts::ARCH
        );
        return Ok(());
    };
    let mut program = program(arch);
    let fprog = sock_fprog {
        len: u16::try_from(program.len()).unwrap_or(u16::MAX),
        filter: program.as_mut_ptr(),
    };
    // SAFETY: the kernel copies the program; `fprog` and `program` outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const sock_fprog,
        )
    };
    if r != 0 {
        bail!(
            "the network worker cannot install its seccomp filter: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The filter: a foreign architecture or the x32 ABI kills the process; the calls above
/// answer their errno; everything else is allowed.
fn program(arch: u32) -> Vec<sock_filter> {
    let mut p = vec![
        load(ARCH),
        jump_eq(arch, 1, 0),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
        load(NR),
    ];
    if cfg!(target_arch = "x86_64") {
        p.extend([
            jump(libc::BPF_JGE, X32_SYSCALL_BIT, 0, 1),
            ret(libc::SECCOMP_RET_KILL_PROCESS),
        ]);
    }
    for &(nr, flags_arg) in OPENS {
        // Not this call: skip the four below, the number still loaded.
        p.extend([
            jump_eq(nr as u32, 0, 4),
            load(arg_low(flags_arg)),
            jump(libc::BPF_JSET, CREATE_FLAGS, 0, 1),
            ret(errno(libc::EPERM)),
            ret(libc::SECCOMP_RET_ALLOW),
        ]);
    }
    let refused = REFUSED_ALL
        .iter()
        .copied()
        .chain(REFUSED_ARCH.iter().map(|&nr| (nr, libc::EPERM)));
    for (nr, code) in refused {
        p.extend([jump_eq(nr as u32, 0, 1), ret(errno(code))]);
    }
    p.push(ret(libc::SECCOMP_RET_ALLOW));
    p
}

fn errno(code: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (code as u32 & libc::SECCOMP_RET_DATA)
}

fn load(offset: u32) -> sock_filter {
    statement(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset)
}

fn ret(action: u32) -> sock_filter {
    statement(libc::BPF_RET | libc::BPF_K, action)
}

fn statement(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump_eq(k: u32, jt: u8, jf: u8) -> sock_filter {
    jump(libc::BPF_JEQ, k, jt, jf)
}

/// A conditional jump against the constant `k`: skip `jt` instructions if true, `jf` if not.
fn jump(op: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: (libc::BPF_JMP | op | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

// --------------------------------------------------------------------------- test probe

/// What the worker's `TryCreate` test job does: every kind of creation the filter refuses,
/// in `dir` (which must hold a file `existing` the worker's uid owns), and two opens it must
/// allow. Each result is the errno, or `None` for success.
#[cfg(feature = "test-hooks")]
pub fn try_create(dir: &str) -> Vec<(String, Option<i32>)> {
    use rustix::fs::{self, Mode, OFlags, CWD};
    let at = |name: &str| format!("{dir}/{name}");
    let existing = at("existing");
    let open = |path: &str, flags: OFlags| fs::openat(CWD, path, flags, Mode::from(0o644));
    let tries: Vec<(&str, rustix::io::Result<()>)> = vec![
        (
            "openat O_CREAT",
            open(&at("new"), OFlags::WRONLY | OFlags::CREATE).map(drop),
        ),
        (
            "openat O_TMPFILE",
            open(dir, OFlags::WRONLY | OFlags::TMPFILE).map(drop),
        ),
        ("mkdirat", fs::mkdirat(CWD, at("dir"), Mode::from(0o755))),
        (
            "mknodat fifo",
            fs::mknodat(CWD, at("fifo"), fs::FileType::Fifo, Mode::from(0o644), 0),
        ),
        ("symlinkat", fs::symlinkat(&existing, CWD, at("symlink"))),
        (
            "linkat",
            fs::linkat(CWD, &existing, CWD, at("hardlink"), fs::AtFlags::empty()),
        ),
        ("renameat", fs::renameat(CWD, &existing, CWD, at("moved"))),
        (
            "unlinkat",
            fs::unlinkat(CWD, &existing, fs::AtFlags::empty()),
        ),
        ("truncate", truncate(&existing)),
        ("chmod", fs::chmod(&existing, Mode::from(0o600))),
        (
            "chown",
            fs::chown(
                &existing,
                Some(rustix::process::geteuid()),
                Some(rustix::process::getegid()),
            ),
        ),
        (
            "openat existing O_RDONLY",
            open(&existing, OFlags::RDONLY).map(drop),
        ),
        (
            "openat existing O_WRONLY",
            open(&existing, OFlags::WRONLY).map(drop),
        ),
    ];
    let mut out: Vec<(String, Option<i32>)> = tries
        .into_iter()
        .map(|(what, r)| (what.to_string(), r.err().map(|e| e.raw_os_error())))
        .collect();
    out.extend(legacy_tries(&at("legacy")));
    out
}

/// `truncate(2)` by path (rustix only has `ftruncate`).
#[cfg(feature = "test-hooks")]
fn truncate(path: &str) -> rustix::io::Result<()> {
    let c = std::ffi::CString::new(path).map_err(|_| rustix::io::Errno::INVAL)?;
    // SAFETY: a valid C string; truncate does not keep it.
    match unsafe { libc::truncate(c.as_ptr(), 0) } {
        0 => Ok(()),
        _ => Err(
            rustix::io::Errno::from_io_error(&std::io::Error::last_os_error())
                .unwrap_or(rustix::io::Errno::IO),
        ),
    }
}

/// The x86_64 calls without `at`, straight through `syscall(2)` (libc would use the `at`
/// forms): `open(O_CREAT)`, `creat`, `mkdir`.
#[cfg(all(feature = "test-hooks", target_arch = "x86_64"))]
fn legacy_tries(path: &str) -> Vec<(String, Option<i32>)> {
    let Ok(c) = std::ffi::CString::new(path) else {
        return Vec::new();
    };
    let calls: [(&str, c_long, c_long); 3] = [
        (
            "open O_CREAT",
            libc::SYS_open,
            (libc::O_WRONLY | libc::O_CREAT) as c_long,
        ),
        ("creat", libc::SYS_creat, 0o644),
        ("mkdir", libc::SYS_mkdir, 0o755),
    ];
    calls
        .iter()
        .map(|&(what, nr, arg)| {
            // SAFETY: path calls with a valid C string and integer arguments.
            let r = unsafe { libc::syscall(nr, c.as_ptr(), arg, 0o644 as c_long) };
            let e = (r < 0).then(|| std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
            if r >= 0 && nr != libc::SYS_mkdir {
                // SAFETY: the descriptor the call just returned.
                unsafe { libc::close(r as i32) };
            }
            (what.to_string(), e)
        })
        .collect()
}

#[cfg(all(feature = "test-hooks", not(target_arch = "x86_64")))]
fn legacy_tries(_path: &str) -> Vec<(String, Option<i32>)> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn every_descriptor_from_three_on_is_marked_close_on_exec() {
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let fd = f.as_raw_fd();
        // SAFETY: our own open descriptor.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        let flags = || unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_eq!(flags() & libc::FD_CLOEXEC, 0, "inheritable before");
        // The fallback for kernels without close_range, then close_range itself.
        for i in 3..=fd as u32 {
            cloexec_one(i as i32).unwrap();
        }
        assert_ne!(flags() & libc::FD_CLOEXEC, 0, "fallback");
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        cloexec_from(3).unwrap();
        assert_ne!(flags() & libc::FD_CLOEXEC, 0, "close_range");
    }

    /// Runs the classic-BPF program the way the kernel would, on one `seccomp_data`
    /// (nr, arch, the low halves of the arguments); only the instructions we emit.
    fn verdict(p: &[sock_filter], nr: u32, arch: u32, args: [u32; 6]) -> u32 {
        let word = |off: u32| match off {
            NR => nr,
            ARCH => arch,
            o if (16..64).contains(&o) && o % 8 == 0 => args[((o - 16) / 8) as usize],
            o => panic!("load from {o}"),
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = p[pc];
            let code = u32::from(i.code);
            pc += 1;
            if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
                acc = word(i.k);
            } else if code == libc::BPF_RET | libc::BPF_K {
                return i.k;
            } else {
                let taken = match code & !(libc::BPF_JMP | libc::BPF_K) {
                    op if op == libc::BPF_JEQ => acc == i.k,
                    op if op == libc::BPF_JGE => acc >= i.k,
                    op if op == libc::BPF_JSET => acc & i.k != 0,
                    op => panic!("instruction {op:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
        }
    }

    #[test]
    fn the_filter_refuses_creation_and_allows_the_rest() {
        let arch = AUDIT_ARCH.expect("tests run on x86_64 or aarch64");
        let p = program(arch);
        let run = |nr: c_long, args: [u32; 6]| verdict(&p, nr as u32, arch, args);
        let flags_at = |i: usize, f: i32| {
            let mut a = [0; 6];
            a[i] = f as u32;
            a
        };
        let eperm = errno(libc::EPERM);
        let allow = libc::SECCOMP_RET_ALLOW;
        assert_eq!(run(libc::SYS_openat, flags_at(2, libc::O_RDONLY)), allow);
        assert_eq!(run(libc::SYS_openat, flags_at(2, libc::O_WRONLY)), allow);
        assert_eq!(
            run(
                libc::SYS_openat,
                flags_at(2, libc::O_WRONLY | libc::O_CREAT)
            ),
            eperm
        );
        assert_eq!(run(libc::SYS_openat, flags_at(2, libc::O_TMPFILE)), eperm);
        assert_eq!(run(libc::SYS_openat, flags_at(2, libc::O_DIRECTORY)), allow);
        assert_eq!(run(libc::SYS_openat2, [0; 6]), errno(libc::ENOSYS));
        for nr in [libc::SYS_mkdirat, libc::SYS_renameat2, libc::SYS_unlinkat] {
            assert_eq!(run(nr, [0; 6]), eperm, "syscall {nr}");
        }
        for nr in [libc::SYS_read, libc::SYS_socket, libc::SYS_ftruncate] {
            assert_eq!(run(nr, [0; 6]), allow, "syscall {nr}");
        }
        let kill = libc::SECCOMP_RET_KILL_PROCESS;
        assert_eq!(verdict(&p, 0, arch ^ 1, [0; 6]), kill, "foreign arch");
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(run(libc::SYS_open, flags_at(1, libc::O_CREAT)), eperm);
            assert_eq!(run(libc::SYS_open, flags_at(1, libc::O_RDONLY)), allow);
            assert_eq!(run(libc::SYS_rename, [0; 6]), eperm);
            assert_eq!(verdict(&p, X32_SYSCALL_BIT, arch, [0; 6]), kill, "x32");
        }
    }

    #[test]
    fn create_flags_are_o_creat_and_the_tmpfile_bit() {
        assert_eq!(CREATE_FLAGS, 0o100 | 0o20000000);
    }
}
