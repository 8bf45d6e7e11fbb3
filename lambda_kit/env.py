"""Settings from environment variables: one parser per kind of value, errors that name the variable.

The conventions every Lambda setting follows (README, *Settings of the Lambdas*):

- booleans are ``true``/``false``; ``1``/``0``, ``yes``/``no`` and ``on``/``off`` are accepted, in any
  case, and anything else is an error (never silently false);
- a duration or an age carries its unit as a suffix (``_SECONDS``, ``_DAYS``), never bare;
- a resource is named for what it holds (``BARS_STREAM_NAME``, ``ALERTS_TABLE_NAME``,
  ``AV_SECRET_ARN``); a setting of one component carries its prefix (``AV_`` Alpha Vantage,
  ``FETCHER_``, ``ALERTS_``); shared ones (``LOG_LEVEL``, ``AWS_REGION``, endpoints) have none.

A blank value counts as unset, so ``NAME=`` in a shell or an empty CloudFormation parameter falls
back to the default instead of failing the parse.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping

from lambda_kit.logs import log_event

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable and a valid example."""


def optional(env: Mapping[str, str], name: str) -> str | None:
    """The stripped value of ``name``, or None when it is unset or blank."""
    value = env.get(name, "").strip()
    return value or None


def text(env: Mapping[str, str], name: str, default: str) -> str:
    return optional(env, name) or default


def choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str,
           normalise: Callable[[str], str] = str.lower) -> str:
    """One of ``allowed`` (compared after ``normalise``), else a ConfigError listing them."""
    value = optional(env, name)
    if value is None:
        return default
    value = normalise(value)
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = optional(env, name)
    if value is None:
        return default
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise ConfigError(f"{name} must be true or false; got {value!r}")


def number(env: Mapping[str, str], name: str, default: float, minimum: float = 0, integer: bool = False) -> float:
    """A number of at least ``minimum``; with ``integer``, a whole one."""
    value = optional(env, name)
    if value is None:
        return default
    try:
        parsed = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, e.g. {default}; got {value!r}") from None
    if parsed != parsed or parsed < minimum:  # NaN compares false with everything: refuse it too
        raise ConfigError(f"{name} must be at least {minimum}; got {value!r}")
    if integer and not parsed.is_integer():
        raise ConfigError(f"{name} must be a whole number, e.g. {int(default)}; got {value!r}")
    return parsed


def log_level(env: Mapping[str, str], default: str = "INFO") -> str:
    return choice(env, "LOG_LEVEL", LOG_LEVELS, default, normalise=str.upper)


def http_url(env: Mapping[str, str], name: str, default: str | None, example: str) -> str | None:
    """An ``http://`` or ``https://`` URL (or ``default``), as given."""
    value = optional(env, name) or default
    if value is None:
        return None
    if not value.startswith(("http://", "https://")):
        # The value itself is not echoed: a webhook's URL may carry its token.
        scheme = value.split("://", 1)[0] if "://" in value else "none"
        raise ConfigError(f"{name} must start with http:// or https://, e.g. {example}; got scheme {scheme!r}")
    return value


def with_renamed(environ: Mapping[str, str], renamed: Mapping[str, str],
                 logger: logging.Logger = log) -> dict[str, str]:
    """``environ`` with each old name of ``renamed`` (``{old: new}``) read as its new name.

    Every old name in use is reported by one warning line naming old and new; if both are set, the
    new one wins and the line says the old one was ignored. The warning goes out while the settings
    are parsed, before the entry point configures logging: it still reaches the Lambda runtime's
    handler, and locally Python's last-resort handler writes the same JSON line to stderr.
    """
    env = dict(environ)
    for old, new in renamed.items():
        old_value = optional(environ, old)
        if old_value is None:
            continue
        ignored = optional(environ, new) is not None
        if not ignored:
            env[new] = old_value
        hint = (f"{old} is ignored because {new} is set: remove {old}" if ignored else
                f"set {new} instead of {old}; {old} stops working in the next release")
        log_event(logger, logging.WARNING, "setting_renamed", old=old, new=new, old_ignored=ignored, hint=hint)
    return env
