"""Secrets: a value that hides itself, and a Secrets Manager read cached per container.

A secret is read once per Lambda container and kept: a GetSecretValue per invocation would cost
money and latency for nothing, and a rotated secret is picked up by the next container. The value
is registered with the log redaction as soon as it is read; an error names the ARN, never the value,
and says what to check.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

from lambda_kit.env import ConfigError
from lambda_kit.logs import register_secret


class Secret:
    """A string that does not show itself in ``repr``/``str``, logs or tracebacks of the settings."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


T = TypeVar("T")
_cache: dict[str, Any] = {}
_lock = threading.Lock()


def secret_value(arn: str, client: Callable[[], Any], parse: Callable[[str], T]) -> T:
    """``parse`` of the SecretString of ``arn``, read through ``client()`` (a Secrets Manager client)
    on first use and kept. A value that ``parse`` refuses (a ``ConfigError``) is not kept, so a fixed
    secret is read again by the next call.

    The lock is held during the read so that concurrent first calls make one request, not many.
    """
    with _lock:
        if arn not in _cache:
            _cache[arn] = parse(_read(arn, client))
        return _cache[arn]


def _read(arn: str, client: Callable[[], Any]) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client().get_secret_value(SecretId=arn)
    except (BotoCoreError, ClientError) as err:  # the message names the ARN, never the value
        code = getattr(err, "response", {}).get("Error", {}).get("Code") or type(err).__name__
        raise ConfigError(f"cannot read secret {arn}: {code}; check the ARN and that the function's "
                          "role may call secretsmanager:GetSecretValue") from None
    secret = response.get("SecretString")
    if not isinstance(secret, str):
        raise ConfigError(f"secret {arn} has no SecretString: store the value as text")
    register_secret(secret)
    return secret


def clear_cache() -> None:
    """Forget cached secrets (tests; a rotated secret is picked up by the next container)."""
    with _lock:
        _cache.clear()
