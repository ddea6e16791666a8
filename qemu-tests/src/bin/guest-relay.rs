//! `guest-relay HOST:PORT`: the command QEMU runs for each guest connection to a `guestfwd`
//! address (`guestfwd=tcp:ADDR:PORT-cmd:guest-relay 127.0.0.1:PORT`), relaying it to a server
//! on the host's loopback (docs/qemu-harness.md §7).
//!
//! It replaces `socat - TCP:…` for one reason: latency. QEMU's user-mode network hands the
//! command its end of a loopback TCP connection (stdin, stdout and stderr), and QEMU's own end
//! sends with Nagle's algorithm on. A guest that writes two small records in a row (TLS
//! ChangeCipherSpec then Finished, an HTTP head then its body) had its second one held until
//! socat's kernel sent its delayed ACK, about 40 ms later, and the same in the other direction:
//! four to six such waits per registration. Here both host sockets send at once
//! (`TCP_NODELAY`) and every read of the guest's side is acknowledged at once
//! (`TCP_QUICKACK`, which the kernel clears again by itself, so it is set after each read).
//!
//! Nothing may reach stderr, the guest's connection too: fd 2 is pointed at /dev/null first.
//! Exit status 1 when the server cannot be reached (the guest sees its connection closed), 2
//! on bad usage.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Duration;

/// A connection silent this long in one direction is over (the simulator's own idle timeout
/// is far shorter): the relay never outlives a test.
const IDLE: Duration = Duration::from_secs(600);

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(target), None) = (args.next(), args.next()) else {
        std::process::exit(2);
    };
    quiet_stderr();
    // SAFETY: QEMU starts the command with its connection on fds 0-2; fd 0 is owned by this
    // process from here on and nothing else in it uses fd 0.
    let guest = unsafe { TcpStream::from_raw_fd(0) };
    let Ok(server) = TcpStream::connect(target.as_str()) else {
        std::process::exit(1);
    };
    let (Ok(guest_out), Ok(server_in)) = (guest.try_clone(), server.try_clone()) else {
        std::process::exit(1);
    };
    for s in [&guest, &server] {
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(IDLE));
    }
    let up = std::thread::spawn(move || pump(guest, server_in));
    pump(server, guest_out);
    let _ = up.join();
}

/// Copies until end of stream (or an error) on `from`, then ends the writing side of `to`.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                quick_ack(&from);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// fd 2 becomes /dev/null: a panic message must not reach the guest as data.
fn quiet_stderr() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 of a valid descriptor onto fd 2, which nothing in this process holds.
        unsafe { libc::dup2(null.as_raw_fd(), 2) };
    }
}

/// Acknowledges what was just read now rather than after the delayed-ACK timer.
fn quick_ack(s: &TcpStream) {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket, a pointer to a live c_int and its size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            std::ptr::addr_of!(one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
