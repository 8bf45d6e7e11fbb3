"""Where the Alpha Vantage key comes from.

In AWS the key lives in Secrets Manager (``ALPHAVANTAGE_SECRET_ARN``) and is fetched once per Lambda
container, then cached: a GetSecretValue per minute would cost money and latency for nothing. Locally
``ALPHAVANTAGE_API_KEY`` is used. There is no default and no key in code; the key is registered with
the log redaction as soon as it is known.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from .config import ConfigError, Settings
from .logs import register_secret

_cache: dict[str, str] = {}
_lock = threading.Lock()
# Field names accepted when the secret is a JSON object rather than the bare key.
JSON_FIELDS = ("ALPHAVANTAGE_API_KEY", "apikey", "api_key", "key")


def key_from_secret_string(secret: str) -> str:
    """The key from a SecretString: either the bare key or a JSON object with one of ``JSON_FIELDS``."""
    text = secret.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            raise ConfigError("the Alpha Vantage secret looks like JSON but does not parse; "
                              "store the bare key or {\"ALPHAVANTAGE_API_KEY\": \"...\"}") from None
        for field in JSON_FIELDS:
            if isinstance(document, dict) and isinstance(document.get(field), str) and document[field].strip():
                return document[field].strip()
        raise ConfigError(f"the Alpha Vantage secret JSON has none of the fields {', '.join(JSON_FIELDS)}")
    if not text:
        raise ConfigError("the Alpha Vantage secret is empty: store the API key in it")
    return text


def resolve_api_key(settings: Settings, secrets_client: Callable[[], Any] | None = None) -> str:
    """The API key: Secrets Manager when ``secret_arn`` is set (cached), else the local variable."""
    if settings.secret_arn:
        with _lock:
            if settings.secret_arn not in _cache:
                _cache[settings.secret_arn] = _fetch_secret(settings, secrets_client)
            key = _cache[settings.secret_arn]
    elif settings.api_key is not None:
        key = settings.api_key.reveal()
    else:
        raise ConfigError("no Alpha Vantage key: set ALPHAVANTAGE_SECRET_ARN (in AWS) "
                          "or ALPHAVANTAGE_API_KEY (locally)")
    register_secret(key)
    return key


def _fetch_secret(settings: Settings, secrets_client: Callable[[], Any] | None) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    from .aws import client, error_code

    sm = secrets_client() if secrets_client else client("secretsmanager", settings)
    try:
        response = sm.get_secret_value(SecretId=settings.secret_arn)
    except (BotoCoreError, ClientError) as err:  # the message names the ARN, never the value
        raise ConfigError(
            f"cannot read secret {settings.secret_arn}: {error_code(err) or type(err).__name__}; "
            "check the ARN and that the function's role may call secretsmanager:GetSecretValue"
        ) from None
    secret = response.get("SecretString")
    if not isinstance(secret, str):
        raise ConfigError(f"secret {settings.secret_arn} has no SecretString: store the key as text")
    return key_from_secret_string(secret)


def clear_cache() -> None:
    """Forget cached keys (tests; a rotated secret is picked up by the next container)."""
    with _lock:
        _cache.clear()
