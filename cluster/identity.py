"""What a peer keeps about itself in its data directory: its node id and the cluster secret."""

import logging
import os
import secrets

log = logging.getLogger(__name__)

NODE_ID_FILE = "node_id"
SECRET_FILE = "cluster.secret"


class ConfigurationError(Exception):
    """The peer cannot start as configured; the message says what to change."""


def prepare_data_dir(path):
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as error:
        raise ConfigurationError(f"cannot create data directory {path}: {error.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigurationError(f"data directory {path} is not writable by this user")
    return path


def node_id(data_dir, configured=None):
    """OB_NODE_ID when given, else the id generated on first start and kept since."""
    if configured:
        return configured
    path = os.path.join(data_dir, NODE_ID_FILE)
    try:
        with open(path, encoding="utf-8") as existing:
            kept = existing.read().strip()
        if kept:
            return kept
    except FileNotFoundError:
        pass
    generated = "node_" + secrets.token_hex(8)
    write_private(path, generated + "\n")
    log.info("generated node id %s (kept in %s)", generated, path)
    return generated


def cluster_secret(data_dir, configured, *, multi_peer):
    """The secret that becomes PySyncObj's password.

    A multi-peer cluster must be given one (all peers share it). A single peer generates one
    and keeps it, so its Raft port never accepts unauthenticated pickles either.
    """
    if configured:
        return configured
    path = os.path.join(data_dir, SECRET_FILE)
    if os.path.exists(path):
        return read_secret_file(path)
    if multi_peer:
        raise ConfigurationError(
            "a multi-peer cluster needs its cluster secret: set REGISTRY_CLUSTER_SECRET or "
            "--cluster-secret-file to the same secret on every peer (PySyncObj would otherwise "
            "accept unauthenticated pickled objects on the Raft port)"
        )
    generated = secrets.token_urlsafe(32)
    write_private(path, generated + "\n")
    log.info("single-peer cluster: generated a cluster secret in %s", path)
    return generated


def read_secret_file(path):
    try:
        with open(path, encoding="utf-8") as source:
            value = source.read().strip()
    except OSError as error:
        raise ConfigurationError(f"cannot read cluster secret file {path}: {error.strerror}") from None
    if len(value) < 16:
        raise ConfigurationError(f"cluster secret in {path} is shorter than 16 characters; use a long random one")
    return value


def write_private(path, text):
    """Write a file only its owner can read, replacing it atomically."""
    temporary = path + ".tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
