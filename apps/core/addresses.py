"""Which network addresses the node calls when someone else names the URL (a node asking to
peer, a webhook's owner): public ones only, unless a deployment or a staff member allows
private networks. A host is resolved once; the caller connects to the addresses checked here,
so a name that resolves elsewhere a moment later is never reached."""

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(ValueError):
    """A host that cannot be resolved, or resolves to an address the node does not call."""


def address_kind(ip: IPAddress) -> str | None:
    """What makes an address non-public ("a loopback address", ...), or None for a public one."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local:
            # fec0::/10: deprecated, but still routed inside some networks.
            return "a site-local address"
        # ::ffff:127.0.0.1 reaches 127.0.0.1, and 6to4's 2002:a00:1:: reaches 10.0.0.1
        # through a relay: the IPv4 address inside decides.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            ip = embedded
    kinds = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
    )
    for matches, kind in kinds:
        if matches:
            return kind
    if not ip.is_global:
        return "an address that is not public"
    return None


def host_resolve(host: str, port: int | None = None) -> list[IPAddress]:
    """Every address `host` resolves to (a literal address is itself), in resolver order."""
    host = host.strip("[]")
    if not host:
        raise AddressRefused("The URL names no host.")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as error:
        raise AddressRefused(f"{host} cannot be resolved.") from error
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise AddressRefused(f"{host} cannot be resolved.")
    return addresses


def public_addresses(host: str, port: int | None = None, *, allow_private: bool) -> list[IPAddress]:
    """The addresses of `host`, all of them public (or any, where private ones are allowed).
    One non-public address refuses the host: a resolver may hand out either."""
    addresses = host_resolve(host, port)
    if allow_private:
        return addresses
    for ip in addresses:
        kind = address_kind(ip)
        if kind is not None:
            shown = host.strip("[]")
            named = shown if shown == str(ip) else f"{shown} ({ip})"
            raise AddressRefused(
                f"{named} is {kind}, not a public address; this node calls only public ones."
            )
    return addresses
