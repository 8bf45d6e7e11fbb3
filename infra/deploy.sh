#!/usr/bin/env bash
# Deploy, start and tear down the stack of infra/cloudformation.yaml.
#
#   infra/deploy.sh deploy        upload dist/*.zip, then create or update the stack
#   infra/deploy.sh start         put the OpenSearch index templates, then start the Flink
#                                 application (from its latest snapshot if any)
#   infra/deploy.sh index-templates   only put the index templates (idempotent)
#   infra/deploy.sh set-api-key   store the Alpha Vantage key read from stdin
#   infra/deploy.sh destroy       delete the stack and wait until it is gone
#
# Settings come from the environment (the Makefile passes them through):
#   STACK_NAME (default stock-analytics), AWS_REGION (required), ARTIFACT_BUCKET (deploy),
#   NAME_PREFIX, SYMBOLS, INTERVAL, STREAM_MODE, SHARD_COUNT, OPENSEARCH_INSTANCE_TYPE,
#   OPENSEARCH_INSTANCE_COUNT, PARALLELISM, ALERT_EMAIL (optional stack parameters).
set -euo pipefail

cd "$(dirname "$0")/.."
STACK_NAME="${STACK_NAME:-stock-analytics}"
TEMPLATE=infra/cloudformation.yaml
DIST="${DIST:-dist}"
PYTHON="${PYTHON:-.venv/bin/python}"

die() { echo "error: $*" >&2; exit 1; }

require() {
    local name="$1" hint="$2"
    [[ -n "${!name:-}" ]] || die "$name is not set: $hint"
}

command -v aws >/dev/null || die "the AWS CLI v2 is not installed (https://docs.aws.amazon.com/cli/)"
require AWS_REGION "export AWS_REGION=us-east-1 (or your region)"
export AWS_REGION

stack_output() {
    aws cloudformation describe-stacks --stack-name "$STACK_NAME" \
        --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}

# Upload one zip under a key derived from its content: a changed zip gets a new key, which is
# what makes CloudFormation update the Lambda code and the Flink application.
upload() {
    local file="$DIST/$1" hash key
    [[ -f "$file" ]] || die "$file not found: run \`make package\` first"
    hash="$(sha256sum "$file" | cut -c1-16)"
    key="${STACK_NAME}/${1%.zip}-${hash}.zip"
    aws s3 cp --only-show-errors "$file" "s3://${ARTIFACT_BUCKET}/${key}" >&2
    echo "$key"
}

deploy() {
    require ARTIFACT_BUCKET "pass an S3 bucket you own in $AWS_REGION: make deploy ARTIFACT_BUCKET=my-bucket"
    local flink_key lambda_key
    flink_key="$(upload flink-app.zip)"
    lambda_key="$(upload fetcher-lambda.zip)"
    local params=(
        "ArtifactBucket=${ARTIFACT_BUCKET}"
        "FlinkCodeKey=${flink_key}"
        "LambdaCodeKey=${lambda_key}"
    )
    # Optional parameters: unset ones keep the template default (or the stack's current value).
    local pair
    for pair in NamePrefix:NAME_PREFIX Symbols:SYMBOLS Interval:INTERVAL StreamMode:STREAM_MODE \
        ShardCount:SHARD_COUNT OpenSearchInstanceType:OPENSEARCH_INSTANCE_TYPE \
        OpenSearchInstanceCount:OPENSEARCH_INSTANCE_COUNT Parallelism:PARALLELISM AlertEmail:ALERT_EMAIL; do
        local var="${pair#*:}"
        if [[ -n "${!var:-}" ]]; then
            params+=("${pair%%:*}=${!var}")
        fi
    done
    aws cloudformation deploy --stack-name "$STACK_NAME" --template-file "$TEMPLATE" \
        --capabilities CAPABILITY_NAMED_IAM --no-fail-on-empty-changeset \
        --parameter-overrides "${params[@]}"
    aws cloudformation describe-stacks --stack-name "$STACK_NAME" --query "Stacks[0].Outputs" --output table
}

# The job's indices need their mappings before the first document arrives (flink_job/index_templates).
index_templates() {
    local endpoint secret credentials
    endpoint="$(stack_output OpenSearchEndpoint)"
    secret="$(stack_output OpenSearchMasterSecretArn)"
    [[ -n "$endpoint" && "$endpoint" != "None" ]] || die "stack $STACK_NAME has no OpenSearch domain: run \`make deploy\` first"
    [[ -x "$PYTHON" ]] || die "$PYTHON not found: run \`make setup\` (or set PYTHON=...)"
    credentials="$(aws secretsmanager get-secret-value --secret-id "$secret" --query SecretString --output text)"
    # Through the environment, not the command line, so the password stays out of `ps`.
    OPENSEARCH_CREDENTIALS="$credentials" OPENSEARCH_ENDPOINT="$endpoint" "$PYTHON" -c '
import json, os
from stack.resources import ensure_index_templates
user = json.loads(os.environ["OPENSEARCH_CREDENTIALS"])
names = ensure_index_templates(os.environ["OPENSEARCH_ENDPOINT"], (user["username"], user["password"]))
print("index templates in place:", ", ".join(names))
'
}

start() {
    local app snapshots restore
    index_templates
    app="$(stack_output ApplicationName)"
    [[ -n "$app" && "$app" != "None" ]] || die "stack $STACK_NAME has no application: run \`make deploy\` first"
    snapshots="$(aws kinesisanalyticsv2 list-application-snapshots --application-name "$app" \
        --query 'length(SnapshotSummaries)' --output text)"
    # Keep the per-symbol indicator state across restarts when a snapshot exists.
    if [[ "$snapshots" -gt 0 ]]; then
        restore=RESTORE_FROM_LATEST_SNAPSHOT
    else
        restore=SKIP_RESTORE_FROM_SNAPSHOT
    fi
    aws kinesisanalyticsv2 start-application --application-name "$app" \
        --run-configuration "{\"ApplicationRestoreConfiguration\": {\"ApplicationRestoreType\": \"$restore\"}}"
    echo "starting $app ($restore); follow it with: aws kinesisanalyticsv2 describe-application --application-name $app"
}

set_api_key() {
    local secret
    secret="$(stack_output AlphaVantageSecretArn)"
    [[ -n "$secret" && "$secret" != "None" ]] || die "stack $STACK_NAME not found: run \`make deploy\` first"
    [[ -t 0 ]] && echo "paste the Alpha Vantage API key, then Ctrl-D:" >&2
    # From stdin, so the key never appears in a command line or the shell history.
    aws secretsmanager put-secret-value --secret-id "$secret" --secret-string file:///dev/stdin >/dev/null
    echo "stored; the fetcher uses it from its next run"
}

destroy() {
    aws cloudformation delete-stack --stack-name "$STACK_NAME"
    echo "deleting $STACK_NAME (OpenSearch takes 10-20 minutes)..."
    aws cloudformation wait stack-delete-complete --stack-name "$STACK_NAME"
    echo "deleted; the zips under s3://${ARTIFACT_BUCKET:-<bucket>}/${STACK_NAME}/ are left in place"
}

case "${1:-}" in
    deploy) deploy ;;
    start) start ;;
    index-templates) index_templates ;;
    set-api-key) set_api_key ;;
    destroy) destroy ;;
    *) die "usage: $0 deploy|start|index-templates|set-api-key|destroy" ;;
esac
