"""Signal alerts: each signal on ``stock_sma_stream`` that passes the rules becomes one alert.

- ``records``: an enriched record (the job's output contract) into the signals it carries.
- ``rules``: which signals alert (symbols, types, directions, minimum strength, cooldown).
- ``message``: an alert's subject, body and JSON form.
- ``store``: once per signal id and the cooldowns, in DynamoDB (conditional writes, TTL).
- ``deliver``: the batch loop shared by the Lambda and the local runner.
- ``publish``: SNS on AWS; ``webhook``: an optional HTTP POST locally.
- ``handler``: the Lambda entry point; ``local``: ``python -m alerts``, polling the local Kinesis.

Nothing here imports the job or the fetcher: they meet only through Kinesis and the record contract.
"""
