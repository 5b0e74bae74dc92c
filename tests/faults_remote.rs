//! Fault injection (issue 7): the remote server vanishes (FIN or RST) at
//! every stage of smtp-remote's delivery. Before the final dot has gone out
//! the result is Z (temporary, the message is tried again), never K or D;
//! once the dot was sent and no reply came, Z with "Possible duplicate!" as
//! qmail-remote reports it. Recipients accepted before the failure keep
//! their `r`. Bounded: every run ends well within its timeout.
#[path = "support/remote.rs"]
mod support;

use nix::sys::socket::{setsockopt, sockopt};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// Where the server goes away.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    OnConnect,
    AfterGreeting,
    OnEhlo,
    OnMail,
    OnRcpt,
    OnData,
    /// After the 354, once 20 kB of an 8 MB message have arrived.
    InMessage,
    /// After the final dot, before the reply.
    AfterDot,
    /// After the 250 to the dot: the message was delivered.
    AfterAccept,
}

fn vanish(s: &mut TcpStream, reset: bool) {
    if reset {
        let _ = setsockopt(&*s, sockopt::Linger, &nix::libc::linger { l_onoff: 1, l_linger: 0 });
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
}

/// A one-connection SMTP server that disappears at `stage`.
fn server(stage: Stage, reset: bool) -> (u16, thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        if stage == Stage::OnConnect {
            return vanish(&mut s, reset);
        }
        let _ = s.write_all(b"220 sink.test ESMTP\r\n");
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut in_data = false;
        let mut got = 0usize;
        let mut line = Vec::new();
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                return;
            }
            if in_data {
                got += line.len();
                if stage == Stage::InMessage && got > 20_000 {
                    // Stop reading so that the client's writes block (the
                    // message is far bigger than the socket buffers), then go.
                    thread::sleep(Duration::from_millis(300));
                    return vanish(&mut s, reset);
                }
                if line == b".\r\n" {
                    in_data = false;
                    if stage == Stage::AfterDot {
                        return vanish(&mut s, reset);
                    }
                    let _ = s.write_all(b"250 ok queued\r\n");
                    if stage == Stage::AfterAccept {
                        return vanish(&mut s, reset);
                    }
                }
                continue;
            }
            let cmd = String::from_utf8_lossy(&line).to_ascii_uppercase();
            let (at, reply): (Stage, &[u8]) = match cmd.get(..4).unwrap_or("") {
                "EHLO" => (Stage::OnEhlo, b"250-sink.test\r\n250 8BITMIME\r\n"),
                "MAIL" => (Stage::OnMail, b"250 ok\r\n"),
                "RCPT" => (Stage::OnRcpt, b"250 ok\r\n"),
                "DATA" => (Stage::OnData, b"354 go\r\n"),
                "QUIT" => (Stage::AfterAccept, b"221 bye\r\n"),
                _ => (Stage::OnConnect, b"502 no\r\n"),
            };
            if stage == Stage::AfterGreeting || at == stage {
                return vanish(&mut s, reset);
            }
            let _ = s.write_all(reply);
            in_data = at == Stage::OnData;
        }
    });
    (port, h)
}

#[test]
fn server_vanishing_at_every_stage() {
    use Stage::*;
    let line = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
    let msg: Vec<u8> = line.iter().copied().cycle().take(line.len() * 130_000).collect();
    let died = "ZConnected to 127.0.0.1 but connection died. (#4.4.2)\n|";
    let dup = "ZConnected to 127.0.0.1 but connection died. Possible duplicate! (#4.4.2)\n|";
    for stage in [OnConnect, AfterGreeting, OnEhlo, OnMail, OnRcpt, OnData, InMessage, AfterDot, AfterAccept] {
        for reset in [false, true] {
            let (port, h) = server(stage, reset);
            let t = Instant::now();
            let r = run(&["[127.0.0.1]", "a@example.org", "x@example.net"], &[("SMTP_PORT", &port.to_string()), ("TIMEOUTREMOTE", "5")], &msg);
            let took = t.elapsed();
            let _ = h.join();
            let what = format!("{stage:?} (reset {reset}): {:?} in {took:?}", r.report);
            eprintln!("{what}");
            assert_eq!(r.code, 0, "{what}");
            assert!(took < Duration::from_secs(4), "{what}: waited for the timeout");
            match stage {
                // Before any recipient was accepted: one Z for the whole delivery.
                OnConnect | AfterGreeting | OnEhlo | OnMail | OnRcpt => {
                    assert!(r.report.starts_with('Z') && !r.report.contains("duplicate"), "{what}");
                    assert_eq!(r.report.matches('|').count(), 1, "{what}");
                }
                OnData | InMessage => assert_eq!(r.report, format!("r|{died}"), "{what}"),
                AfterDot => assert_eq!(r.report, format!("r|{dup}"), "{what}"),
                AfterAccept => assert!(r.report.starts_with("r|K127.0.0.1 accepted message."), "{what}"),
            }
        }
    }
}
