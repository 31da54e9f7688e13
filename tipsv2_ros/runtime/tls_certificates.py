# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Throwaway certificates for the TLS link on loopback: a CA, a server and a client.

For tests, the benchmark and trying TLS out on one machine; a fleet uses certificates from
its own CA. Made with the ``cryptography`` package (ECDSA P-256, valid for ``days``); the
private keys are written owner-only.
"""
import datetime
import ipaddress
import os
import pathlib
from typing import NamedTuple, Sequence


class Certificates(NamedTuple):
    """PEM files written by ``write_certificates``."""

    ca: pathlib.Path  # the CA certificate: triton.root_cert / --grpc-root-cert
    server: pathlib.Path
    server_key: pathlib.Path
    client: pathlib.Path
    client_key: pathlib.Path


def write_certificates(folder, hosts: Sequence[str] = ('127.0.0.1', 'localhost'),
                       days: int = 2, name: str = 'tipsv2 test CA') -> Certificates:
    """Write a fresh CA and a server (for ``hosts``) and client certificate it signs."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def subject(common_name):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def issue(common_name, issuer, issuer_key, key, ca=False, usage=None, names=()):
        builder = (x509.CertificateBuilder().subject_name(subject(common_name))
                   .issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), False)
        return builder.sign(issuer_key, hashes.SHA256())

    def write(path, data, private=False):
        path = folder / path
        if private:  # created owner-only, never readable by others even for a moment
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, 'wb') as handle:
                handle.write(data)
        else:
            path.write_bytes(data)
        return path

    def key_pem(key):
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def cert_pem(cert):
        return cert.public_bytes(serialization.Encoding.PEM)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue(name, subject(name), ca_key, ca_key, ca=True)
    alt = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    server = issue('tipsv2 triton server', ca.subject, ca_key, server_key,
                   usage=ExtendedKeyUsageOID.SERVER_AUTH, names=alt)
    client = issue('tipsv2 robot', ca.subject, ca_key, client_key,
                   usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return Certificates(write('ca.pem', cert_pem(ca)), write('server.pem', cert_pem(server)),
                        write('server.key', key_pem(server_key), True),
                        write('client.pem', cert_pem(client)),
                        write('client.key', key_pem(client_key), True))
