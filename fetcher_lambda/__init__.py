"""Alpha Vantage TIME_SERIES_INTRADAY -> Kinesis fetcher.

Runs as an AWS Lambda (``fetcher_lambda.handler.lambda_handler``, scheduled every minute by EventBridge)
and locally as ``python -m fetcher_lambda`` (loop, once, monthly backfill, or replay of the shipped
sample data set). Every record it puts on the stream follows the bar contract of ``stock_stream_data``.

Dependencies: boto3/botocore (provided by the Lambda runtime), requests and urllib3 >= 2 (the retry
options used need urllib3 2; bundle both next to this package in the Lambda zip). Nothing else.
"""
