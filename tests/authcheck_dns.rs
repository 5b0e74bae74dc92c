//! dns::CachedResolver against a small DNS server on loopback: TXT records
//! of several character-strings arrive joined, a second question is
//! answered from the cache (positive for its TTL, NXDOMAIN and NODATA for
//! the SOA's negative TTL), a SERVFAIL is asked again, and a TTL of 0 is
//! not kept. The plain Resolver asks every time.

use domain::base::iana::{Class, Rcode, Rtype};
use domain::base::{Message, MessageBuilder, Name, Serial, Ttl};
use domain::rdata::{Soa, Txt, A};
use smtpd::dns::{CachedResolver, Error, Lookup, Resolver};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Answers each UDP question from a fixed table and counts the questions
/// per name. Runs until the test process ends (a daemon thread, loopback).
fn server() -> (SocketAddr, Arc<Mutex<HashMap<String, u32>>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else { return };
            let q = Message::from_octets(buf[..n].to_vec()).unwrap();
            let question = q.first_question().unwrap();
            let name = question.qname().to_string().to_ascii_lowercase();
            *s2.lock().unwrap().entry(name.clone()).or_insert(0) += 1;
            let _ = sock.send_to(&answer(&q, &name, question.qtype()), peer);
        }
    });
    (addr, seen)
}

fn answer(q: &Message<Vec<u8>>, name: &str, qtype: Rtype) -> Vec<u8> {
    let rcode = match name {
        "nx.example.test" | "nx-nosoa.example.test" => Rcode::NXDOMAIN,
        "fail.example.test" => Rcode::SERVFAIL,
        _ => Rcode::NOERROR,
    };
    let mut b = MessageBuilder::new_vec().start_answer(q, rcode).unwrap();
    let owner = Name::<Vec<u8>>::from_str(name).unwrap();
    match (name, qtype) {
        ("spf.example.test", Rtype::TXT) => {
            let t = Txt::<Vec<u8>>::from_octets(b"\x0bv=spf1 ip4:\x0d192.0.2.0/24 \x04-all".to_vec()).unwrap();
            b.push((&owner, Class::IN, 300, t)).unwrap();
        }
        ("zero.example.test", Rtype::A) => b.push((&owner, Class::IN, 0, A::from_octets(192, 0, 2, 9))).unwrap(),
        _ => {}
    }
    let mut auth = b.authority();
    if name != "nx-nosoa.example.test" && rcode != Rcode::SERVFAIL {
        let zone = Name::<Vec<u8>>::from_str("example.test").unwrap();
        let soa = Soa::new(
            zone.clone(),
            zone.clone(),
            Serial(1),
            Ttl::from_secs(3600),
            Ttl::from_secs(600),
            Ttl::from_secs(86400),
            Ttl::from_secs(60),
        );
        auth.push((&zone, Class::IN, 3600, soa)).unwrap();
    }
    auth.finish()
}

#[test]
fn cached_resolver_over_udp() {
    let (addr, seen) = server();
    let count = |n: &str| *seen.lock().unwrap().get(n).unwrap_or(&0);
    let r = CachedResolver::new(Resolver::with_servers(vec![addr], Duration::from_secs(2)));
    for _ in 0..3 {
        assert_eq!(r.txt("spf.example.test").unwrap(), vec![b"v=spf1 ip4:192.0.2.0/24 -all".to_vec()]);
        assert_eq!(r.txt("SPF.Example.Test.").unwrap().len(), 1);
        assert_eq!(r.txt("nx.example.test"), Err(Error::NoName));
        assert!(r.a("spf.example.test").unwrap().is_empty());
        assert_eq!(r.txt("nx-nosoa.example.test"), Err(Error::NoName));
        assert!(matches!(r.txt("fail.example.test"), Err(Error::Temp(_))));
        assert_eq!(r.a("zero.example.test").unwrap().len(), 1);
    }
    // Cached: asked once. NXDOMAIN without SOA, SERVFAIL (asked again on
    // each try: 2 attempts a question) and TTL 0: asked every time.
    assert_eq!(count("spf.example.test"), 2, "TXT once and A (NODATA) once");
    assert_eq!(count("nx.example.test"), 1);
    assert_eq!(count("nx-nosoa.example.test"), 3);
    assert_eq!(count("fail.example.test"), 6);
    assert_eq!(count("zero.example.test"), 3);
    // The plain resolver asks every time.
    let plain = Resolver::with_servers(vec![addr], Duration::from_secs(2));
    for _ in 0..2 {
        assert_eq!(Lookup::txt(&plain, "spf.example.test").unwrap().len(), 1);
    }
    assert_eq!(count("spf.example.test"), 4);
}
