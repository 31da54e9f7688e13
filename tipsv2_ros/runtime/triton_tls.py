# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""TLS on the Triton link: the robot's settings, reading handshake failures, server flags.

A robot sends camera frames to a shared server; over plain gRPC anyone on the network reads
them and any host answering on the port gets them. With ``triton.ssl`` the gRPC channel is
TLS: the server's certificate must be signed by ``triton.root_cert`` (else the system's
CAs) and name the host of ``triton.url``; with ``triton.client_cert`` and ``triton.client_key``
the robot also proves who it is (mutual TLS). The files are read at every connection attempt,
so certificates rotated on disk are picked up by the reconnection loop without a restart.

A failed handshake surfaces from gRPC as an UNAVAILABLE status whose text holds the OpenSSL
reason; ``explain`` turns it into what to fix. ``server_flags`` prints the matching
``tritonserver`` options, including the restricted protocols that keep model control and
shared-memory registration behind a header only the operator holds.
"""
import os
from typing import List, NamedTuple, Optional

from tipsv2_ros.runtime.base import BackendError

# What robots never need: model loading/unloading, shared-memory registration (only a node on
# the server's own host uses it), statistics, tracing and log settings. Health, metadata,
# model configuration (checked at connection) and inference stay open to robots.
RESTRICTED = ('model-repository', 'shared-memory', 'statistics', 'trace', 'logging')
ADMIN_HEADER = 'tipsv2-admin-key'


class TlsSettings(NamedTuple):
    """The TLS parameters of backend triton (``triton.*``); all empty: plain gRPC."""

    ssl: bool = False
    root_cert: str = ''
    client_cert: str = ''
    client_key: str = ''

    @classmethod
    def from_options(cls, options) -> 'TlsSettings':
        """Read ``triton.ssl`` and the certificate parameters (``check`` validates them)."""
        return cls(bool(options.get('triton.ssl', False)),
                   *(str(options.get(f'triton.{n}') or '').strip()
                     for n in ('root_cert', 'client_cert', 'client_key')))

    def check(self, url: str) -> None:
        """Raise BackendError for settings that would silently weaken or break the link."""
        named = [f'triton.{n}' for n in ('root_cert', 'client_cert', 'client_key')
                 if getattr(self, n)]
        if named and not self.ssl:
            raise BackendError(f'{", ".join(named)} set but triton.ssl is false: the frames '
                               'would go in clear text; set triton.ssl: true')
        if self.ssl and url.startswith('http://'):
            raise BackendError(f'triton.ssl is for gRPC; triton.url {url} is HTTP: give the '
                               "server's gRPC address (host:port)")
        if bool(self.client_cert) != bool(self.client_key):
            raise BackendError('mutual TLS needs both triton.client_cert and '
                               'triton.client_key (the certificate and its private key)')
        for name in named:
            path = getattr(self, name.split('.', 1)[1])
            if not os.path.isfile(path):
                raise BackendError(f'{name}: no such file {path!r}')

    @property
    def mutual(self) -> bool:
        return bool(self.client_cert)

    def client_kwargs(self) -> dict:
        """Keyword arguments of ``tritonclient.grpc.InferenceServerClient`` (file paths)."""
        if not self.ssl:
            return {}
        return {'ssl': True, 'root_certificates': self.root_cert or None,
                'private_key': self.client_key or None,
                'certificate_chain': self.client_cert or None}

    def describe(self) -> str:
        if not self.ssl:
            return 'plain gRPC'
        return 'mutual TLS' if self.mutual else 'TLS'


def explain(text: str, settings: TlsSettings, host: str) -> Optional[str]:
    """Return what a TLS failure in a gRPC error ``text`` means and how to fix it, or None."""
    roots = (f'triton.root_cert ({settings.root_cert})' if settings.root_cert
             else "the system's certificate authorities (set triton.root_cert)")
    upper = text.upper()
    if not settings.ssl:
        # A TLS server answers a plain HTTP/2 preface by closing the connection.
        if any(s in upper for s in ('SOCKET CLOSED', 'CONNECTION RESET', 'END OF FILE',
                                    'HANDSHAKE')):
            return ('the server closed the plain gRPC connection: it probably expects TLS '
                    '(set triton.ssl: true and triton.root_cert)')
        return None
    if 'WRONG_VERSION_NUMBER' in upper or 'PACKET_LENGTH_TOO_LONG' in upper:
        return ('the server does not speak TLS (start it with --grpc-use-ssl=true, or set '
                'triton.ssl: false on a trusted network)')
    if 'PEER NAME' in upper or 'HOSTNAME' in upper or 'NOT IN PEER CERTIFICATE' in upper:
        return (f"the server's certificate does not name {host!r}, the host of triton.url: "
                'connect by a name its certificate lists (subjectAltName) or reissue it')
    if 'CERTIFICATE_VERIFY_FAILED' in upper or 'CERTIFICATE VERIFY FAILED' in upper:
        return (f"the server's certificate is not signed by {roots}: refusing to send "
                'frames to a server that cannot prove who it is')
    refused = (f'the server refused the client certificate {settings.client_cert!r} (not '
               'signed by the CA it trusts, --grpc-root-cert, or expired)' if settings.mutual
               else 'the server requires a client certificate (mutual TLS): set '
               'triton.client_cert and triton.client_key')
    if any(s in upper for s in ('UNKNOWN_CA', 'BAD_CERTIFICATE', 'CERTIFICATE_UNKNOWN',
                                'CERTIFICATE_REQUIRED', 'DECRYPT_ERROR', 'ACCESS_DENIED')):
        return refused
    if 'SOCKET CLOSED' in upper or 'CONNECTION RESET' in upper:
        # TLS 1.3: the client's handshake completes before the server checks the client
        # certificate; a refusal then shows as a closed connection.
        return f'the server closed the connection after the TLS handshake: {refused}'
    if 'HANDSHAKE' in upper or 'SSL' in upper:
        return 'the TLS handshake failed: ' + refused.replace('the server', 'perhaps it', 1)
    return None


def server_flags(mutual: bool = True, restrict: bool = True) -> List[str]:
    """Return the ``tritonserver`` options of a locked-down fleet server.

    Certificate paths and the admin key are shell variables the operator sets.
    """
    flags = ['--grpc-use-ssl=true', '--grpc-server-cert=$TLS_DIR/server.pem',
             '--grpc-server-key=$TLS_DIR/server.key']
    if mutual:
        flags += ['--grpc-use-ssl-mutual=true', '--grpc-root-cert=$TLS_DIR/ca.pem']
    if restrict:
        flags.append(f'--grpc-restricted-protocol={",".join(RESTRICTED)}:'
                     f'{ADMIN_HEADER}=$TRITON_ADMIN_KEY')
    # HTTP has no TLS in tritonserver: robots use gRPC, so close it.
    flags += ['--allow-http=false']
    return flags


def serve_hint(repository) -> str:
    """Return how to serve ``repository`` to a fleet locked down (``tipsv2 export`` prints it)."""
    lines = [f'tritonserver --model-repository={repository}', *server_flags()]
    return ('Serve it to a fleet over mutual TLS, model control and shared memory closed to '
            'robots (README "Security"):\n  ' + ' \\\n    '.join(lines) + '\n'
            'Robots: triton.ssl: true, triton.root_cert: ca.pem, triton.client_cert: '
            'robot.pem, triton.client_key: robot.key. The operator sends the header '
            f'{ADMIN_HEADER}: $TRITON_ADMIN_KEY to load, unload or register shared memory.')
