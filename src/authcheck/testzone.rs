//! An in-memory DNS zone for the unit tests of spf.rs and dmarc.rs: names
//! absent answer NXDOMAIN, names present answer what was put (NODATA for
//! other types), names marked temporary fail. Test-only; no I/O.

use crate::dns::{Error, Lookup};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Default)]
pub struct Zone {
    names: HashMap<String, Node>,
}

#[derive(Debug, Default)]
struct Node {
    txt: Vec<Vec<u8>>,
    a: Vec<Ipv4Addr>,
    aaaa: Vec<Ipv6Addr>,
    mx: Vec<(u16, String)>,
    ptr: Vec<String>,
    temp: bool,
}

impl Zone {
    fn node(&mut self, name: &str) -> &mut Node {
        self.names.entry(name.to_ascii_lowercase()).or_default()
    }
    pub fn set_txt(&mut self, name: &str, t: &str) {
        self.node(name).txt.push(t.as_bytes().to_vec());
    }
    pub fn set_a(&mut self, name: &str, a: &str) {
        match a.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(v)) => self.node(name).a.push(v),
            Ok(std::net::IpAddr::V6(v)) => self.node(name).aaaa.push(v),
            Err(e) => panic!("{a}: {e}"),
        }
    }
    pub fn set_mx(&mut self, name: &str, pref: u16, host: &str) {
        self.node(name).mx.push((pref, host.to_string()));
    }
    pub fn set_ptr(&mut self, name: &str, host: &str) {
        self.node(name).ptr.push(host.to_string());
    }
    pub fn set_temp(&mut self, name: &str) {
        self.node(name).temp = true;
    }
    fn get(&self, name: &str) -> Result<&Node, Error> {
        let n = self.names.get(&name.trim_end_matches('.').to_ascii_lowercase()).ok_or(Error::NoName)?;
        if n.temp {
            return Err(Error::Temp("timeout".into()));
        }
        Ok(n)
    }
}

impl Lookup for Zone {
    fn txt(&self, name: &str) -> Result<Vec<Vec<u8>>, Error> {
        Ok(self.get(name)?.txt.clone())
    }
    fn a(&self, name: &str) -> Result<Vec<Ipv4Addr>, Error> {
        Ok(self.get(name)?.a.clone())
    }
    fn aaaa(&self, name: &str) -> Result<Vec<Ipv6Addr>, Error> {
        Ok(self.get(name)?.aaaa.clone())
    }
    fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, Error> {
        Ok(self.get(name)?.mx.clone())
    }
    fn ptr(&self, name: &str) -> Result<Vec<String>, Error> {
        Ok(self.get(name)?.ptr.clone())
    }
}
