//! The address `register` publishes when none is given: the source address the kernel would
//! pick for the default route (what other hosts see this container as), else the first
//! non-loopback interface address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use nix::net::if_::InterfaceFlags;

/// Documentation addresses (RFC 5737, RFC 3849). Connecting a UDP socket sends nothing: it
/// only asks the kernel which route, and so which source address, it would use.
const PROBE_V4: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 9);
const PROBE_V6: SocketAddr = SocketAddr::new(
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    9,
);

/// This host's primary address: IPv4 of the default route, else IPv6 of the default route,
/// else the first non-loopback interface address (IPv4 first). `None` if there is none.
pub fn primary() -> Option<IpAddr> {
    route_source(PROBE_V4)
        .or_else(|| route_source(PROBE_V6))
        .or_else(first_interface_address)
}

/// Whether other hosts could reach us at `ip`.
fn usable(ip: IpAddr) -> bool {
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    !ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast() && !link_local
}

fn route_source(probe: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = match probe {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).ok()?;
    socket.connect(probe).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    usable(ip).then_some(ip)
}

fn first_interface_address() -> Option<IpAddr> {
    let mut found: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .ok()?
        .filter(|a| {
            a.flags.contains(InterfaceFlags::IFF_UP)
                && !a.flags.contains(InterfaceFlags::IFF_LOOPBACK)
        })
        .filter_map(|a| a.address)
        .filter_map(|s| {
            s.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .filter(|ip| usable(*ip))
        .collect();
    // IPv4 first; otherwise the kernel's interface order (the sort is stable)
    found.sort_by_key(IpAddr::is_ipv6);
    found.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reachable_addresses_are_usable() {
        for bad in [
            "127.0.0.1",
            "0.0.0.0",
            "169.254.1.1",
            "::1",
            "::",
            "fe80::1",
            "224.0.0.1",
        ] {
            assert!(!usable(bad.parse().unwrap()), "{bad}");
        }
        for good in ["10.0.0.5", "192.168.1.2", "fd00::5", "2001:db8::7"] {
            assert!(usable(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn primary_is_usable_when_found() {
        if let Some(ip) = primary() {
            assert!(usable(ip), "{ip}");
        }
    }
}
