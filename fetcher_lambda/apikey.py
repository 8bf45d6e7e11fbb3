"""Where the Alpha Vantage key comes from.

In AWS the key lives in Secrets Manager (``AV_SECRET_ARN``) and is fetched once per Lambda
container, then cached (``lambda_kit.secret``): a GetSecretValue per minute would cost money and
latency for nothing. Locally ``AV_API_KEY`` is used. There is no default and no key in code; the key is registered with
the log redaction as soon as it is known.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from lambda_kit.secret import clear_cache, secret_value

from .config import ConfigError, Settings
from .logs import register_secret

__all__ = ["JSON_FIELDS", "ConfigError", "clear_cache", "key_from_secret_string", "resolve_api_key"]
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
        key = secret_value(settings.secret_arn, secrets_client or _client(settings), key_from_secret_string)
    elif settings.api_key is not None:
        key = settings.api_key.reveal()
    else:
        raise ConfigError("no Alpha Vantage key: set AV_SECRET_ARN (in AWS) or AV_API_KEY (locally)")
    register_secret(key)
    return key


def _client(settings: Settings) -> Callable[[], Any]:
    def secretsmanager() -> Any:
        from .aws import client

        return client("secretsmanager", settings)
    return secretsmanager
