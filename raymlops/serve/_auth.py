"""Bearer-token checks: replicas hold the token's digest only, and compare in constant time."""

import hashlib
import hmac
import os

from raymlops.config import ProjectConfig


def token_sha256(config: ProjectConfig) -> str | None:
    """The SHA-256 of the bearer token in the driver's environment, or None.

    Replicas get only this digest and compare digests in constant time: the
    token itself never enters a runtime env, an actor's arguments or a Ray log.
    """
    name = config.serving.auth_token_env
    token = os.environ.get(name) if name else None
    return hashlib.sha256(token.encode()).hexdigest() if token else None


def token_digest(config: ProjectConfig, sha256_hex: str | None) -> bytes | None:
    """The digest a replica checks requests against: from the driver, else its own environment."""
    name = config.serving.auth_token_env
    if not name:
        return None
    if sha256_hex:
        return bytes.fromhex(sha256_hex)
    token = os.environ.get(name)
    if not token:
        # fail closed: a replica that was told to require a token never serves without one
        raise RuntimeError(
            f"serving.auth_token_env names {name!r}, but that environment variable is empty in the "
            "replica and in the process that deployed it; set it there (or remove serving.auth_token_env)"
        )
    return hashlib.sha256(token.encode()).digest()


def bearer_matches(authorization: str, digest: bytes) -> bool:
    """Whether an ``Authorization`` header carries the token whose SHA-256 is ``digest``."""
    scheme, _, value = authorization.partition(" ")
    given = hashlib.sha256(value.strip().encode()).digest()
    return scheme.lower() == "bearer" and hmac.compare_digest(given, digest)
