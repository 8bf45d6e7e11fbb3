"""What the fetcher and alerts Lambdas share: settings parsing, secrets and JSON log lines.

- ``env``: ``ConfigError`` and one parser per kind of value (text, choice, boolean, number, URL,
  log level), with the naming conventions of every Lambda setting, and ``with_renamed``, which
  reads an old variable name as its new one with a warning line.
- ``renamed``: the variables renamed in this release, per Lambda.
- ``secret``: ``Secret`` (a value that hides itself) and a Secrets Manager read cached per container.
- ``logs``: ``log_event`` (one ``{"event": ...}`` JSON line), the ``JsonLines`` formatter,
  ``configure_logging`` and redaction of secrets.

Standard library only at import time (boto3 is imported on the first secret read), so both
handlers' cold starts stay short and the package adds a few kilobytes to each zip.

Powertools for AWS Lambda (``aws-lambda-powertools`` 3.x) was weighed part by part and not taken:

- Logger: its lines are ``{"level", "location", "message", "timestamp", "service", ...}`` with the
  text under ``message``; ours are ``{"event": ..., "level": ..., **fields}``, which the tests and
  the local tools read and a Logs Insights query filters on (``filter event = "summary"``). It
  would not replace the redaction either: that must rewrite urllib3's own records on their
  loggers, before any handler (the Alpha Vantage key is in every request URL), and keep the AWS
  SDK's loggers at WARNING; both would stay ours, beside a second formatter. Importing
  ``aws_lambda_powertools.logging`` took 0.12 to 0.21 s here, against the fetcher handler's whole
  cold-import target of 0.3 s (README, *Performance*).
- Parameters (``get_secret`` with caching): it imports boto3 at load (0.3 to 0.4 s here), which the
  handlers deliberately defer to first use, and re-reads the secret every 5 minutes by default,
  where one read per container is enough; a failed read would still need turning into a
  ``ConfigError`` that names the ARN and the permission to check. It would save about twenty lines.
- Metrics (EMF): not built here; the fetcher's metrics are their own change.
- The package would add 4.4 MB unpacked (with jmespath) to each zip for the parts above.
"""
