#!/usr/bin/env bash
# Deploy, start and tear down the stack of infra/cloudformation.yaml.
#
#   infra/deploy.sh deploy        upload dist/*.zip and the template, then create or update the
#                                 stack (which also puts the OpenSearch index templates, from inside its VPC)
#   infra/deploy.sh start         start the Flink application (from its latest snapshot if any);
#                                 does nothing when it is already running or starting
#   infra/deploy.sh index-templates   put the index templates again (idempotent)
#   infra/deploy.sh set-api-key   store the Alpha Vantage key read from stdin
#   infra/deploy.sh dashboards-tunnel   forward https://localhost:$TUNNEL_PORT to the domain
#                                 (needs DASHBOARDS_TUNNEL=true at deploy time)
#   infra/deploy.sh destroy       delete the stack and wait until it is gone
#
# Settings come from the environment (the Makefile passes them through):
#   STACK_NAME (default stock-analytics), AWS_REGION (required), ARTIFACT_BUCKET (deploy),
#   TUNNEL_PORT (default 8443), NAME_PREFIX, SYMBOLS, FETCHER_GROUPS, AV_CALLS_PER_MINUTE,
#   FETCHER_MEMORY, INTERVAL, STREAM_MODE, SHARD_COUNT, OPENSEARCH_INSTANCE_TYPE,
#   OPENSEARCH_INSTANCE_COUNT, PARALLELISM, ALERT_EMAIL, VPC_CIDR, DASHBOARDS_TUNNEL,
#   FETCHER_RESERVED_CONCURRENCY, SIGNAL_ALERT_EMAIL, SIGNAL_ALERT_RULES, PYTHON_EXECUTION_MODE,
#   OPENSEARCH_VOLUME_SIZE, RETENTION_DAYS (optional stack parameters).
set -euo pipefail

cd "$(dirname "$0")/.."
STACK_NAME="${STACK_NAME:-stock-analytics}"
TEMPLATE=infra/cloudformation.yaml
DIST="${DIST:-dist}"

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

# A stack output that must exist; $2 says what to do when it does not.
required_output() {
    local value
    value="$(stack_output "$1")"
    [[ -n "$value" && "$value" != "None" ]] || die "stack $STACK_NAME has no output $1: $2"
    echo "$value"
}

# OpenSearch creates network interfaces in the VPC through its service-linked role, which an
# account gets once; CloudFormation cannot create it idempotently, so it is made here.
ensure_opensearch_service_role() {
    aws iam get-role --role-name AWSServiceRoleForAmazonOpenSearchService >/dev/null 2>&1 && return
    echo "creating the OpenSearch service-linked role (once per account)"
    aws iam create-service-linked-role --aws-service-name opensearchservice.amazonaws.com >/dev/null
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
    ensure_opensearch_service_role
    # Unset settings are read as the template's defaults (an update keeps the stack's current values).
    .venv/bin/python -m infra.sizing --symbols "${SYMBOLS:-}" --volume-gib "${OPENSEARCH_VOLUME_SIZE:-}" \
        --nodes "${OPENSEARCH_INSTANCE_COUNT:-}" --retention "${RETENTION_DAYS:-}" || die "RETENTION_DAYS is malformed"
    local flink_key lambda_key loader_key alerts_key
    flink_key="$(upload flink-app.zip)"
    lambda_key="$(upload fetcher-lambda.zip)"
    loader_key="$(upload index-templates-loader.zip)"
    alerts_key="$(upload alerts-lambda.zip)"
    local params=(
        "ArtifactBucket=${ARTIFACT_BUCKET}"
        "FlinkCodeKey=${flink_key}"
        "LambdaCodeKey=${lambda_key}"
        "LoaderCodeKey=${loader_key}"
        "AlertsCodeKey=${alerts_key}"
    )
    # Optional parameters: unset ones keep the template default (or the stack's current value).
    local pair
    for pair in NamePrefix:NAME_PREFIX Symbols:SYMBOLS FetcherGroups:FETCHER_GROUPS \
        AlphaVantageCallsPerMinute:AV_CALLS_PER_MINUTE FetcherMemorySize:FETCHER_MEMORY \
        Interval:INTERVAL StreamMode:STREAM_MODE \
        ShardCount:SHARD_COUNT OpenSearchInstanceType:OPENSEARCH_INSTANCE_TYPE \
        OpenSearchInstanceCount:OPENSEARCH_INSTANCE_COUNT OpenSearchVolumeSize:OPENSEARCH_VOLUME_SIZE \
        RetentionDays:RETENTION_DAYS Parallelism:PARALLELISM AlertEmail:ALERT_EMAIL \
        PythonExecutionMode:PYTHON_EXECUTION_MODE \
        VpcCidr:VPC_CIDR DashboardsTunnel:DASHBOARDS_TUNNEL \
        FetcherReservedConcurrency:FETCHER_RESERVED_CONCURRENCY SignalAlertEmail:SIGNAL_ALERT_EMAIL \
        SignalAlertRules:SIGNAL_ALERT_RULES; do
        local var="${pair#*:}"
        if [[ -n "${!var:-}" ]]; then
            params+=("${pair%%:*}=${!var}")
        fi
    done
    # The template goes through the bucket too: passed inline it would meet CloudFormation's
    # 51,200-byte limit on template bodies as it grows.
    aws cloudformation deploy --stack-name "$STACK_NAME" --template-file "$TEMPLATE" \
        --s3-bucket "$ARTIFACT_BUCKET" --s3-prefix "$STACK_NAME" \
        --capabilities CAPABILITY_NAMED_IAM --no-fail-on-empty-changeset \
        --parameter-overrides "${params[@]}"
    aws cloudformation describe-stacks --stack-name "$STACK_NAME" --query "Stacks[0].Outputs" --output table
}

# The stack puts the templates on every deploy that changes them; this puts them again, e.g. after
# someone deleted one. The domain is reachable from the VPC only, so the stack's function does it.
index_templates() {
    local loader result
    loader="$(required_output IndexTemplatesFunctionName "run \`make deploy\` first")"
    result="$(mktemp)"
    trap 'rm -f "$result"' RETURN
    aws lambda invoke --function-name "$loader" --payload '{}' --cli-binary-format raw-in-base64-out \
        --query FunctionError --output text "$result" | grep -qx None \
        || die "$loader failed: $(cat "$result"); its log: aws logs tail /aws/lambda/$loader"
    echo "index templates in place: $(cat "$result")"
}

start() {
    local app status snapshots restore
    app="$(required_output ApplicationName "run \`make deploy\` first")"
    status="$(aws kinesisanalyticsv2 describe-application --application-name "$app" \
        --query ApplicationDetail.ApplicationStatus --output text)"
    case "$status" in
        READY) ;;
        RUNNING | STARTING | UPDATING | AUTOSCALING)
            echo "$app is already $status: nothing to start"
            return ;;
        *) die "$app is $status and can be started only when READY: wait, then run \`make start\` again" ;;
    esac
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
    secret="$(required_output AlphaVantageSecretArn "run \`make deploy\` first")"
    [[ -t 0 ]] && echo "paste the Alpha Vantage API key, then Ctrl-D:" >&2
    # From stdin, so the key never appears in a command line or the shell history.
    aws secretsmanager put-secret-value --secret-id "$secret" --secret-string file:///dev/stdin >/dev/null
    echo "stored; the fetcher uses it from its next run"
}

# Dashboards has no public endpoint: SSH through the stack's EC2 Instance Connect Endpoint to its
# tunnel host and forward a local port to the domain. The AWS CLI pushes a one-time key.
dashboards_tunnel() {
    local host endpoint host_name port="${TUNNEL_PORT:-8443}"
    host="$(required_output TunnelHostId "deploy with DASHBOARDS_TUNNEL=true first")"
    endpoint="$(required_output OpenSearchEndpoint "run \`make deploy\` first")"
    host_name="${endpoint#https://}"
    echo "Dashboards: https://localhost:${port}/_dashboards (accept the browser's certificate warning:"
    echo "  the certificate names ${host_name}). With '127.0.0.1 ${host_name}' in /etc/hosts,"
    echo "  https://${host_name}:${port}/_dashboards works without a warning, also for \`make dashboards\`."
    echo "Login: aws secretsmanager get-secret-value --query SecretString --output text --secret-id \\"
    echo "  $(stack_output OpenSearchMasterSecretArn)"
    echo "Leave this session open while you use it; exit ends the tunnel."
    aws ec2-instance-connect ssh --instance-id "$host" --connection-type eice \
        --local-forwarding "${port}:${host_name}:443"
}

destroy() {
    aws cloudformation delete-stack --stack-name "$STACK_NAME"
    echo "deleting $STACK_NAME (20-45 minutes: the domain, and the network interfaces Lambda releases late)..."
    aws cloudformation wait stack-delete-complete --stack-name "$STACK_NAME"
    echo "deleted; the zips under s3://${ARTIFACT_BUCKET:-<bucket>}/${STACK_NAME}/ are left in place"
}

case "${1:-}" in
    deploy) deploy ;;
    start) start ;;
    index-templates) index_templates ;;
    set-api-key) set_api_key ;;
    dashboards-tunnel) dashboards_tunnel ;;
    destroy) destroy ;;
    *) die "usage: $0 deploy|start|index-templates|set-api-key|dashboards-tunnel|destroy" ;;
esac
