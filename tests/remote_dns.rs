//! smtp-remote's routing through a fake DNS on loopback: MX preference,
//! fallback, implicit MX, null MX, NXDOMAIN, SERVFAIL, TCP on truncation,
//! smtproutes, and DANE with and without the AD bit. Exchangers live on
//! 127.0.0.2, .3, .4 (all loopback on Linux) on one port set by SMTP_PORT.
#[path = "support/remote.rs"]
mod support;
use std::net::IpAddr;
use support::*;

const MSG: &[u8] = b"Subject: dns\n\nbody\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn zone(ad: bool) -> Zone {
    Zone::new(ad)
        .add("example.test", Rr::Mx(20, "mx2.example.test"))
        .add("example.test", Rr::Mx(10, "mx1.example.test"))
        .add("mx1.example.test", Rr::A(ip("127.0.0.2")))
        .add("mx2.example.test", Rr::A(ip("127.0.0.3")))
        .add("plain.test", Rr::A(ip("127.0.0.4")))
        .add("nomail.test", Rr::Mx(0, "."))
        .add("relay.test", Rr::A(ip("127.0.0.4")))
        .add("xn--bcher-kva.test", Rr::A(ip("127.0.0.4")))
        .add("empty.test", Rr::Mx(10, "nohost.test"))
        .add("nohost.test", Rr::Mx(5, "x.test"))
}

fn go(dns: &FakeDns, port: u16, host: &str, env: &[(&str, &str)]) -> Run {
    let (d, p) = (dns.addr.to_string(), port.to_string());
    let mut e = vec![("DNS_SERVER", d.as_str()), ("SMTP_PORT", p.as_str())];
    e.extend_from_slice(env);
    run(&[host, "a@example.org", "b@example.test"], &e, MSG)
}

fn ok() -> Script {
    Box::new(|_| Act::Default)
}

#[test]
fn mx_preference_order() {
    let dns = fake_dns(zone(false));
    let port = free_port();
    let mx1 = fake_on("127.0.0.2", port, &[], None, ok());
    let mx2 = fake_on("127.0.0.3", port, &[], None, ok());
    let r = go(&dns, port, "example.test", &[]);
    assert_eq!(r.report, "r|K127.0.0.2 accepted message.\nRemote host said: 250 ok queued\n|");
    assert_eq!(mx1.messages().len(), 1);
    assert!(mx2.messages().is_empty());
}

#[test]
fn next_exchanger_when_one_refuses() {
    let dns = fake_dns(zone(false));
    let port = free_port();
    // Nothing listens on 127.0.0.2: connection refused, then mx2.
    let mx2 = fake_on("127.0.0.3", port, &[], None, ok());
    let r = go(&dns, port, "example.test", &[]);
    assert!(r.report.contains("K127.0.0.3 accepted"), "{}", r.report);
    assert_eq!(mx2.messages().len(), 1);
    // A 421 greeting at the first is a connection-level failure too.
    let mx1 = fake_on("127.0.0.2", port, &[], None, Box::new(|c| if c == "CONNECT" { send("421 busy\r\n") } else { Act::Default }));
    let r = go(&dns, port, "example.test", &[]);
    assert!(r.report.contains("K127.0.0.3 accepted"), "{}", r.report);
    assert!(mx1.messages().is_empty());
}

#[test]
fn implicit_mx_null_mx_nxdomain_servfail() {
    let mut z = zone(false);
    z.servfail.push("broken.test".into());
    let dns = fake_dns(z);
    let port = free_port();
    let a = fake_on("127.0.0.4", port, &[], None, ok());
    let r = go(&dns, port, "plain.test", &[]);
    assert!(r.report.contains("K127.0.0.4 accepted"), "{}", r.report);
    assert_eq!(a.messages().len(), 1);
    // A U-label domain is looked up by its A-label.
    let r = go(&dns, port, "b\u{fc}cher.test", &[]);
    assert!(r.report.contains("K127.0.0.4 accepted"), "{}", r.report);
    let r = go(&dns, port, "nomail.test", &[]);
    assert_eq!(r.report, "DSorry, nomail.test does not accept mail (null MX). (#5.1.10)\n|");
    let r = go(&dns, port, "nosuch.test", &[]);
    assert_eq!(r.report, "DSorry, I couldn't find any host named nosuch.test. (#5.1.2)\n|");
    // Exchangers without any address (one exists, one does not).
    let r = go(&dns, port, "empty.test", &[]);
    assert_eq!(r.report, "DSorry, I couldn't find a mail exchanger or IP address. (#5.4.4)\n|");
    let r = go(&dns, port, "nohost.test", &[]);
    assert_eq!(r.report, "DSorry, I couldn't find a mail exchanger or IP address. (#5.4.4)\n|");
    let r = go(&dns, port, "broken.test", &[]);
    assert_eq!(r.report, "ZSorry, I couldn't find any host by that name. (#4.1.2)\n|");
}

#[test]
fn no_dns_server_is_temporary() {
    let port = free_port();
    let r = run(&["example.test", "a@b", "c@d"], &[("DNS_SERVER", &format!("127.0.0.1:{port}")), ("DNS_TIMEOUT", "1")], MSG);
    assert_eq!(r.report, "ZSorry, I couldn't find any host by that name. (#4.1.2)\n|");
}

#[test]
fn tcp_after_truncation() {
    let mut z = zone(false);
    z.truncate = true;
    let dns = fake_dns(z);
    let port = free_port();
    let _mx1 = fake_on("127.0.0.2", port, &[], None, ok());
    let r = go(&dns, port, "example.test", &[]);
    assert!(r.report.contains("K127.0.0.2 accepted"), "{}", r.report);
    assert!(dns.queries.lock().unwrap().iter().any(|q| q == "example.test MX tcp"));
}

#[test]
fn smtproutes_relay_and_exception() {
    let dns = fake_dns(zone(false));
    let port = free_port();
    let relay = fake_on("127.0.0.4", port, &[], None, ok());
    let mx1 = fake_on("127.0.0.2", port, &[], None, ok());
    let d = tempfile::tempdir().unwrap();
    let routes = d.path().join("smtproutes");
    std::fs::write(&routes, format!("example.test:\n:relay.test:{port}\n")).unwrap();
    let rp = routes.to_str().unwrap();
    // example.test has an empty relay: by MX as usual.
    let r = go(&dns, port, "example.test", &[("SMTPROUTES", rp)]);
    assert!(r.report.contains("K127.0.0.2 accepted"), "{}", r.report);
    // Anything else goes to the smarthost (by its address, never its MX).
    let r = go(&dns, port, "elsewhere.test", &[("SMTPROUTES", rp)]);
    assert!(r.report.contains("K127.0.0.4 accepted"), "{}", r.report);
    assert_eq!((relay.messages().len(), mx1.messages().len()), (1, 1));
}


/// A zone where `_port._tcp.mx1.example.test` has `rr` and only mx1 exists.
fn tlsa_zone(ad: bool, port: u16, rr: Rr) -> Zone {
    Zone::new(ad)
        .add("example.test", Rr::Mx(10, "mx1.example.test"))
        .add("mx1.example.test", Rr::A(ip("127.0.0.2")))
        .add(Box::leak(format!("_{port}._tcp.mx1.example.test").into_boxed_str()), rr)
}

#[test]
fn dane_ee_with_ad() {
    let d = tempfile::tempdir().unwrap();
    let (c, k) = cert(d.path(), "mx1.example.test");
    let port = free_port();
    let dns = fake_dns(tlsa_zone(true, port, Rr::Tlsa(3, 1, 1, spki_sha256(&c))));
    let mx1 = fake_on("127.0.0.2", port, &[], Some(server_config(&c, &k)), ok());
    let r = go(&dns, port, "example.test", &[("SMTP_TLS", "dane")]);
    assert!(r.report.contains("K127.0.0.2 accepted"), "{}", r.report);
    assert!(mx1.log().contains(&"TLS".to_string()));
    assert!(dns.queries.lock().unwrap().iter().any(|q| q.starts_with(&format!("_{port}._tcp.mx1.example.test TLSA"))));
}

/// mx1.example.test on 127.0.0.2 with TLS, and a DNS whose TLSA record for
/// it (AD set) matches no certificate: the scratch folder, the port, the
/// DNS and the server.
fn forged_tlsa() -> (tempfile::TempDir, u16, FakeDns, Fake) {
    let d = tempfile::tempdir().unwrap();
    let (c, k) = cert(d.path(), "mx1.example.test");
    let port = free_port();
    let dns = fake_dns(tlsa_zone(true, port, Rr::Tlsa(3, 1, 1, vec![0u8; 32])));
    let mx1 = fake_on("127.0.0.2", port, &[], Some(server_config(&c, &k)), ok());
    (d, port, dns, mx1)
}

#[test]
fn dane_mismatch_with_ad_is_temporary() {
    let (_d, port, dns, mx1) = forged_tlsa();
    let r = go(&dns, port, "example.test", &[("SMTP_TLS", "dane")]);
    assert!(r.report.starts_with("ZConnected to 127.0.0.2 but the TLS handshake failed"), "{}", r.report);
    assert!(r.report.ends_with("(#4.7.5)\n|"), "{}", r.report);
    assert!(mx1.messages().is_empty());
    // Secure TLSA but no STARTTLS offered: temporary too, nothing sent.
    let plain = fake_on("127.0.0.2", free_port(), &[], None, ok());
    let dns2 = fake_dns(tlsa_zone(true, plain.port(), Rr::Tlsa(3, 1, 1, vec![0u8; 32])));
    let r = go(&dns2, plain.port(), "example.test", &[("SMTP_TLS", "dane")]);
    assert_eq!(r.report, "ZConnected to 127.0.0.2 but it does not offer STARTTLS, which my policy requires. (#4.7.0)\n|");
    assert!(plain.messages().is_empty());
}

#[test]
fn dane_without_ad_falls_back_to_may() {
    let d = tempfile::tempdir().unwrap();
    let (c, k) = cert(d.path(), "mx1.example.test");
    let port = free_port();
    let dns = fake_dns(tlsa_zone(false, port, Rr::Tlsa(3, 1, 1, vec![0u8; 32])));
    let mx1 = fake_on("127.0.0.2", port, &[], Some(server_config(&c, &k)), ok());
    let r = go(&dns, port, "example.test", &[("SMTP_TLS", "dane")]);
    assert!(r.report.contains("K127.0.0.2 accepted"), "{}", r.report);
    // Opportunistic TLS still, just unauthenticated.
    assert!(mx1.log().contains(&"TLS".to_string()));
}

#[test]
fn dane_ta_with_ad() {
    let d = tempfile::tempdir().unwrap();
    let (ca, _leaf, key, chain) = ca_and_leaf(d.path(), "mx1.example.test");
    let port = free_port();
    let dns = fake_dns(tlsa_zone(true, port, Rr::Tlsa(2, 0, 1, cert_sha256(&ca))));
    let mx1 = fake_on("127.0.0.2", port, &[], Some(server_config(&chain, &key)), ok());
    let r = go(&dns, port, "example.test", &[("SMTP_TLS", "dane")]);
    assert!(r.report.contains("K127.0.0.2 accepted"), "{}", r.report);
    assert_eq!(mx1.messages().len(), 1);
}

#[test]
fn dane_needs_secure_addresses_too() {
    let d = tempfile::tempdir().unwrap();
    let (c, k) = cert(d.path(), "mx1.example.test");
    let port = free_port();
    let mut z = tlsa_zone(true, port, Rr::Tlsa(3, 1, 1, vec![0u8; 32]));
    z.insecure.push("mx1.example.test".into());
    let dns = fake_dns(z);
    let mx1 = fake_on("127.0.0.2", port, &[], Some(server_config(&c, &k)), ok());
    let r = go(&dns, port, "example.test", &[("SMTP_TLS", "dane")]);
    // The mismatching TLSA is never asked for: opportunistic TLS, delivered.
    assert!(r.report.contains("K127.0.0.2 accepted"), "{}", r.report);
    assert!(!dns.queries.lock().unwrap().iter().any(|q| q.contains("TLSA")));
    assert_eq!(mx1.messages().len(), 1);
}

#[test]
fn dane_for_a_relay_with_secure_addresses() {
    let d = tempfile::tempdir().unwrap();
    let (c, k) = cert(d.path(), "relay.test");
    let port = free_port();
    let good = Zone::new(true)
        .add("relay.test", Rr::A(ip("127.0.0.4")))
        .add(Box::leak(format!("_{port}._tcp.relay.test").into_boxed_str()), Rr::Tlsa(3, 1, 1, spki_sha256(&c)));
    let dns = fake_dns(good);
    let relay = fake_on("127.0.0.4", port, &[], Some(server_config(&c, &k)), ok());
    let routes = d.path().join("smtproutes");
    std::fs::write(&routes, ":relay.test\n").unwrap();
    let r = go(&dns, port, "anywhere.example", &[("SMTP_TLS", "dane"), ("SMTPROUTES", routes.to_str().unwrap())]);
    assert!(r.report.contains("K127.0.0.4 accepted"), "{}", r.report);
    assert!(dns.queries.lock().unwrap().iter().any(|q| q.starts_with(&format!("_{port}._tcp.relay.test TLSA"))));
    assert!(relay.log().contains(&"TLS".to_string()));
}

#[test]
fn a_route_relay_that_does_not_resolve_is_temporary() {
    // The operator's typo in smtproutes must not bounce the day's mail;
    // a domain's own MX that does not exist still is permanent.
    let dns = fake_dns(zone(false));
    let d = tempfile::tempdir().unwrap();
    let routes = d.path().join("smtproutes");
    std::fs::write(&routes, "example.test:relay.tset\nempty.test:nohost.test\n:\n").unwrap();
    let rp = routes.to_str().unwrap();
    let port = free_port();
    let r = go(&dns, port, "example.test", &[("SMTPROUTES", rp)]);
    assert_eq!(r.report, "ZSorry, the relay relay.tset of my smtproutes does not exist in DNS. (#4.1.2)\n|");
    // A relay that exists but has no address: the operator's too.
    let r = go(&dns, port, "empty.test", &[("SMTPROUTES", rp)]);
    assert_eq!(r.report, "ZSorry, the relay nohost.test of my smtproutes has no address. (#4.4.4)\n|");
    let r = go(&dns, port, "nosuch.test", &[("SMTPROUTES", rp)]);
    assert_eq!(r.report, "DSorry, I couldn't find any host named nosuch.test. (#5.1.2)\n|");
}

#[test]
fn the_ad_bit_counts_only_from_a_trusted_resolver() {
    // A forged, mismatching TLSA with AD set. From the fake on 127.0.0.1,
    // trusted by default (loopback), it is believed: temporary failure.
    // With DNS_TRUST_AD naming another address, the AD bit is ignored: no
    // TLSA lookup at all, opportunistic TLS, delivered.
    let (_d, port, dns, mx1) = forged_tlsa();
    let r = go(&dns, port, "example.test", &[("SMTP_TLS", "dane")]);
    assert!(r.report.ends_with("(#4.7.5)\n|"), "{}", r.report);
    dns.queries.lock().unwrap().clear();
    let r = go(&dns, port, "example.test", &[("SMTP_TLS", "dane"), ("DNS_TRUST_AD", "192.0.2.53,::1")]);
    assert!(r.report.contains("K127.0.0.2 accepted"), "{}", r.report);
    assert!(!dns.queries.lock().unwrap().iter().any(|q| q.contains("TLSA")), "{:?}", dns.queries.lock().unwrap());
    assert!(mx1.log().contains(&"TLS".to_string()));
    // Naming the fake's address trusts it again.
    let r = go(&dns, port, "example.test", &[("SMTP_TLS", "dane"), ("DNS_TRUST_AD", "127.0.0.1")]);
    assert!(r.report.ends_with("(#4.7.5)\n|"), "{}", r.report);
}

#[test]
fn an_exchanger_that_is_this_host_on_port_25_is_a_loop() {
    // qmail-remote's and Postfix's check, before any connection: the MX is
    // one of this host's addresses on the port its own smtpd listens on.
    let z = zone(false)
        .add("loop.test", Rr::Mx(10, "mx.loop.test"))
        .add("mx.loop.test", Rr::A(ip("127.0.0.1")))
        .add("mx.loop.test", Rr::A(ip("::1")))
        .add("any.test", Rr::A(ip("0.0.0.0")));
    let dns = fake_dns(z);
    let d = dns.addr.to_string();
    let r = run(&["loop.test", "a@example.org", "b@loop.test"], &[("DNS_SERVER", &d)], MSG);
    assert_eq!(r.report, "DSorry, mail for loop.test loops back to myself: 127.0.0.1 port 25 is this host. (#5.4.6)\n|");
    // 0.0.0.0 reaches this host too; so does a route or a literal to it.
    let r = run(&["any.test", "a@example.org", "b@any.test"], &[("DNS_SERVER", &d)], MSG);
    assert_eq!(r.report, "DSorry, mail for any.test loops back to myself: 0.0.0.0 port 25 is this host. (#5.4.6)\n|");
    let r = run(&["[127.0.0.7]", "a@example.org", "b@[127.0.0.7]"], &[("DNS_SERVER", &d)], MSG);
    assert_eq!(r.report, "DSorry, mail for [127.0.0.7] loops back to myself: 127.0.0.7 port 25 is this host. (#5.4.6)\n|");
    // On another port it is some other local service (a test sink, a
    // content filter): tried as usual; SMTPD_PORTS names the ports of
    // this host's own SMTP servers.
    let port = free_port();
    let mx = fake_on("127.0.0.1", port, &[], None, ok());
    let r = go(&dns, port, "loop.test", &[]);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    let p = port.to_string();
    let r = go(&dns, port, "loop.test", &[("SMTPD_PORTS", &format!("25,{p}"))]);
    assert_eq!(r.report, format!("DSorry, mail for loop.test loops back to myself: 127.0.0.1 port {p} is this host. (#5.4.6)\n|"));
    assert_eq!(mx.messages().len(), 1);
}

/// `f()` once it equals `want`, or after 2 s whatever it is: a fake logs
/// the QUIT a moment after smtp-remote, which does not wait, has exited.
fn settled(want: usize, f: impl Fn() -> usize) -> usize {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while f() != want && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    f()
}

#[test]
fn two_thousand_exchangers_cost_a_few_queries_and_connections() {
    // The answer of 2000 MX records: 4002 queries and a connection
    // to every address before; now SMTP_MAXMX (5) exchangers, each looked
    // up once (A and AAAA), one connection each.
    let mut z = Zone::new(false);
    for i in 0..2000 {
        let name: &'static str = Box::leak(format!("m{i}.l.t").into_boxed_str());
        z = z.add("l.t", Rr::Mx(10, name)).add(name, Rr::A(ip("127.0.0.2")));
    }
    let dns = fake_dns(z);
    let port = free_port();
    let busy = fake_on("127.0.0.2", port, &[], None, Box::new(|c| if c == "CONNECT" { send("421 4.3.2 busy\r\n") } else { Act::Default }));
    let r = go(&dns, port, "l.t", &[]);
    assert_eq!(r.report, "ZConnected to 127.0.0.2 but greeting failed.\nRemote host said: 421 4.3.2 busy\n|");
    let q = dns.queries.lock().unwrap().clone();
    // The MX answer (over UDP, truncated, then TCP), then 5 names x 2.
    assert_eq!(q.len(), 2 + 5 * 2, "{:?}...", &q[..q.len().min(14)]);
    let quits = || busy.log().iter().filter(|l| *l == "QUIT").count();
    assert_eq!(settled(5, quits), 5);
    // Settable: one exchanger, one query pair.
    dns.queries.lock().unwrap().clear();
    go(&dns, port, "l.t", &[("SMTP_MAXMX", "1")]);
    assert_eq!(dns.queries.lock().unwrap().len(), 2 + 2);
    assert_eq!(settled(6, quits), 6);
}

#[test]
fn an_address_cap_per_exchanger() {
    // A name with many addresses: SMTP_MAXADDRS (2) of them are tried.
    let mut z = Zone::new(false).add("many.test", Rr::Mx(10, "mx.many.test"));
    for i in 2..12 {
        z = z.add("mx.many.test", Rr::A(ip(&format!("127.0.1.{i}"))));
    }
    let dns = fake_dns(z);
    let port = free_port();
    let fakes: Vec<Fake> = (2..12).map(|i| fake_on(&format!("127.0.1.{i}"), port, &[], None, Box::new(|c| if c == "CONNECT" { send("421 busy\r\n") } else { Act::Default }))).collect();
    go(&dns, port, "many.test", &[]);
    let quits = || fakes.iter().map(|f| f.log().len()).sum::<usize>();
    assert_eq!(settled(2, quits), 2);
    assert!(fakes[2..].iter().all(|f| f.log().is_empty()));
    go(&dns, port, "many.test", &[("SMTP_MAXADDRS", "3")]);
    assert_eq!(settled(5, quits), 5);
}

#[test]
fn ten_tarpits_end_within_the_attempt_time() {
    // Ten exchangers that accept and never greet, TIMEOUTREMOTE=3: 30 s
    // before; TIMEOUTATTEMPT bounds the attempt whatever the MX count.
    let mut z = Zone::new(false);
    for i in 0..10 {
        let name: &'static str = Box::leak(format!("tar{i}.pit.test").into_boxed_str());
        z = z.add("pit.test", Rr::Mx(10 + i as u16, name)).add(name, Rr::A(ip(&format!("127.0.2.{}", 10 + i))));
    }
    let dns = fake_dns(z);
    let port = free_port();
    let _pits: Vec<Fake> = (0..10).map(|i| fake_on(&format!("127.0.2.{}", 10 + i), port, &[], None, Box::new(|c| if c == "CONNECT" { Act::Hang } else { Act::Default }))).collect();
    let t = std::time::Instant::now();
    let r = go(&dns, port, "pit.test", &[("TIMEOUTREMOTE", "3"), ("TIMEOUTATTEMPT", "4"), ("SMTP_MAXMX", "10")]);
    let took = t.elapsed();
    assert_eq!(r.report, "ZConnected to 127.0.2.11 but the connection timed out. (#4.4.2)\n|");
    assert!(took < std::time::Duration::from_secs(7), "{took:?}");
    assert!(took >= std::time::Duration::from_secs(4), "{took:?}");
}
