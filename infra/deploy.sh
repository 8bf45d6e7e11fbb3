#!/usr/bin/env bash
# Deploy, start and tear down the stack of infra/cloudformation.yaml.
#
#   infra/deploy.sh deploy        print the monthly cost estimate, upload dist/*.zip and the template,
#                                 then create or update the stack (which also puts the OpenSearch index
#                                 templates, from inside its VPC); a new stack is created in two steps,
#                                 the domain's log publishing second
#   infra/deploy.sh start         start the Flink application (from its latest snapshot if any);
#                                 does nothing when it is already running or starting
#   infra/deploy.sh index-templates   put the index templates again (idempotent)
#   infra/deploy.sh set-api-key   store the Alpha Vantage key read from stdin (in a secret kept
#                                 outside the stack, so no template change can overwrite it)
#   infra/deploy.sh dashboards-tunnel   forward https://localhost:$TUNNEL_PORT to the domain
#                                 (needs DASHBOARDS_TUNNEL=true at deploy time)
#   infra/deploy.sh destroy       delete the stack, wait until it is gone, then schedule the API
#                                 key's secret for deletion (recoverable for 7 days)
#
# Settings come from the environment (the Makefile passes them through):
#   STACK_NAME (default stock-analytics), AWS_REGION (required), ARTIFACT_BUCKET (deploy),
#   TUNNEL_PORT (default 8443), NAME_PREFIX, SYMBOLS, FETCHER_GROUPS, AV_CALLS_PER_MINUTE,
#   FETCHER_MEMORY, INTERVAL, STREAM_MODE, SHARD_COUNT, OPENSEARCH_INSTANCE_TYPE,
#   OPENSEARCH_INSTANCE_COUNT, PARALLELISM, ALERT_EMAIL, VPC_CIDR, DASHBOARDS_TUNNEL,
#   FETCHER_RESERVED_CONCURRENCY, SIGNAL_ALERT_EMAIL, SIGNAL_ALERT_RULES, PYTHON_EXECUTION_MODE,
#   OPENSEARCH_VOLUME_SIZE, RETENTION_DAYS, AVAILABILITY_ZONES, DOMAIN_LOGS, AV_ENTITLEMENT,
#   AV_CALLS_PER_DAY, STALE_MINUTES, EXTENDED_HOURS (optional stack parameters).
set -euo pipefail

cd "$(dirname "$0")/.."
STACK_NAME="${STACK_NAME:-stock-analytics}"
TEMPLATE=infra/cloudformation.yaml
DIST="${DIST:-dist}"
PY=.venv/bin/python
# Days a destroyed stack's API key stays recoverable (Secrets Manager's minimum).
KEY_RECOVERY_DAYS=7

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

# The stack's status, or NONE when it does not exist (any other error stops the script).
stack_status() {
    local out
    if out="$(aws cloudformation describe-stacks --stack-name "$STACK_NAME" \
        --query "Stacks[0].StackStatus" --output text 2>&1)"; then
        echo "$out"
    elif [[ "$out" == *"does not exist"* ]]; then
        echo NONE
    else
        die "cannot read stack $STACK_NAME: $out"
    fi
}

# Stops unless the stack can be created or updated; a stack whose first create failed names the
# resources that failed and the command that clears it.
check_deployable() {
    local status="$1" reasons
    case "$status" in
        ROLLBACK_COMPLETE)
            reasons="$(aws cloudformation describe-stack-events --stack-name "$STACK_NAME" \
                --query "StackEvents[?ResourceStatus=='CREATE_FAILED'].[LogicalResourceId,ResourceStatusReason]" \
                --output text | grep -v "Resource creation cancelled" | head -n 5 | sed 's/^/    /' || true)"
            die "stack $STACK_NAME is in ROLLBACK_COMPLETE: its first create failed and was rolled back, and
  CloudFormation cannot update a stack in that state.
  What failed:
${reasons:-    (see aws cloudformation describe-stack-events --stack-name $STACK_NAME)}
  Clear it (it holds no data yet), then deploy again:
    make destroy      # or: aws cloudformation delete-stack --stack-name $STACK_NAME && aws cloudformation wait stack-delete-complete --stack-name $STACK_NAME
    make deploy ARTIFACT_BUCKET=..." ;;
        ROLLBACK_FAILED | DELETE_FAILED)
            die "stack $STACK_NAME is in $status: delete it with \`make destroy\` (if a resource refuses, see
  aws cloudformation describe-stack-events --stack-name $STACK_NAME), then deploy again" ;;
        UPDATE_ROLLBACK_FAILED)
            die "stack $STACK_NAME is in UPDATE_ROLLBACK_FAILED: finish the rollback with
  aws cloudformation continue-update-rollback --stack-name $STACK_NAME, then deploy again" ;;
        NONE | REVIEW_IN_PROGRESS | *_COMPLETE) ;;
        *_IN_PROGRESS)
            die "stack $STACK_NAME is $status: wait until it ends (aws cloudformation describe-stacks
  --stack-name $STACK_NAME shows its status), then deploy again" ;;
        *) die "stack $STACK_NAME is in $status, which this script does not deploy over" ;;
    esac
}

# The name of the secret holding the Alpha Vantage key: kept outside the stack, named after its prefix.
api_key_secret() {
    echo "${1}stock-analytics/alphavantage-key"
}

# Creates the key's secret with a placeholder when missing (the fetcher then reports a missing key
# until `set-api-key`), and takes it back when a destroy scheduled it for deletion.
ensure_api_key_secret() {
    local name="$1" out
    if out="$(aws secretsmanager describe-secret --secret-id "$name" --query DeletedDate --output text 2>&1)"; then
        if [[ "$out" != "None" ]]; then
            echo "restoring the API key's secret $name (scheduled for deletion by a destroy)"
            aws secretsmanager restore-secret --secret-id "$name" >/dev/null
        fi
    elif [[ "$out" == *ResourceNotFoundException* ]]; then
        echo "creating the API key's secret $name (store the key with: infra/deploy.sh set-api-key)"
        aws secretsmanager create-secret --name "$name" --tags "Key=stack,Value=$STACK_NAME" \
            --description "Alpha Vantage API key of the $STACK_NAME fetcher (infra/deploy.sh set-api-key)" \
            --secret-string '{"ALPHAVANTAGE_API_KEY": ""}' >/dev/null
    else
        die "cannot read secret $name: $out"
    fi
}

# The first 16 hex digits of a file's SHA-256, the same on Linux and macOS (which lacks sha256sum).
content_hash() {
    "$PY" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()[:16])' "$1"
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
    hash="$(content_hash "$file")"
    key="${STACK_NAME}/${1%.zip}-${hash}.zip"
    aws s3 cp --only-show-errors "$file" "s3://${ARTIFACT_BUCKET}/${key}" >&2
    echo "$key"
}

# The stack's NamePrefix: NAME_PREFIX when set, else the existing stack's (an update keeps it).
name_prefix() {
    local status="$1" current
    if [[ -n "${NAME_PREFIX+set}" || "$status" == NONE ]]; then
        echo "${NAME_PREFIX:-}"
        return
    fi
    current="$(aws cloudformation describe-stacks --stack-name "$STACK_NAME" \
        --query "Stacks[0].Parameters[?ParameterKey=='NamePrefix'].ParameterValue" --output text)"
    [[ "$current" == None ]] && current=""
    echo "$current"
}

deploy() {
    require ARTIFACT_BUCKET "pass an S3 bucket you own in $AWS_REGION: make deploy ARTIFACT_BUCKET=my-bucket"
    local status
    status="$(stack_status)"
    check_deployable "$status"
    if [[ -n "${AVAILABILITY_ZONES:-}" && ! "$AVAILABILITY_ZONES" =~ ^[a-z0-9-]+,[a-z0-9-]+$ ]]; then
        die "AVAILABILITY_ZONES must name two zones of $AWS_REGION, e.g. ${AWS_REGION}b,${AWS_REGION}c; got '$AVAILABILITY_ZONES'"
    fi
    # Nothing is created before these two. Unset settings are read as the template's defaults (an
    # update keeps the stack's current values).
    "$PY" -m infra.sizing --symbols "${SYMBOLS:-}" --volume-gib "${OPENSEARCH_VOLUME_SIZE:-}" \
        --nodes "${OPENSEARCH_INSTANCE_COUNT:-}" --retention "${RETENTION_DAYS:-}" || die "RETENTION_DAYS is malformed"
    "$PY" -m infra.cost --symbols "${SYMBOLS:-}" --volume-gib "${OPENSEARCH_VOLUME_SIZE:-}" \
        --nodes "${OPENSEARCH_INSTANCE_COUNT:-}" --retention "${RETENTION_DAYS:-}" \
        --instance-type "${OPENSEARCH_INSTANCE_TYPE:-}" --stream-mode "${STREAM_MODE:-}" --shards "${SHARD_COUNT:-}" \
        --parallelism "${PARALLELISM:-}" --execution-mode "${PYTHON_EXECUTION_MODE:-}" \
        --fetcher-memory "${FETCHER_MEMORY:-}" --fetcher-groups "${FETCHER_GROUPS:-}" \
        --calls-per-minute "${AV_CALLS_PER_MINUTE:-}" --extended-hours "${EXTENDED_HOURS:-}" \
        --entitlement "${AV_ENTITLEMENT:-}" --tunnel "${DASHBOARDS_TUNNEL:-}" \
        || echo "warning: no cost estimate (see above); deploying anyway" >&2
    ensure_opensearch_service_role
    ensure_api_key_secret "$(api_key_secret "$(name_prefix "$status")")"
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
        Interval:INTERVAL StreamMode:STREAM_MODE ExtendedHours:EXTENDED_HOURS \
        ShardCount:SHARD_COUNT OpenSearchInstanceType:OPENSEARCH_INSTANCE_TYPE \
        OpenSearchInstanceCount:OPENSEARCH_INSTANCE_COUNT OpenSearchVolumeSize:OPENSEARCH_VOLUME_SIZE \
        RetentionDays:RETENTION_DAYS Parallelism:PARALLELISM AlertEmail:ALERT_EMAIL \
        PythonExecutionMode:PYTHON_EXECUTION_MODE AvailabilityZones:AVAILABILITY_ZONES \
        AvEntitlement:AV_ENTITLEMENT AvCallsPerDay:AV_CALLS_PER_DAY StaleMinutes:STALE_MINUTES \
        VpcCidr:VPC_CIDR DashboardsTunnel:DASHBOARDS_TUNNEL \
        FetcherReservedConcurrency:FETCHER_RESERVED_CONCURRENCY SignalAlertEmail:SIGNAL_ALERT_EMAIL \
        SignalAlertRules:SIGNAL_ALERT_RULES; do
        local var="${pair#*:}"
        if [[ -n "${!var:-}" ]]; then
            params+=("${pair%%:*}=${!var}")
        fi
    done
    local logs="${DOMAIN_LOGS:-}"
    if [[ "$status" == NONE || "$status" == REVIEW_IN_PROGRESS ]] && [[ "$logs" != off ]]; then
        # A new stack: first everything but the domain's log publishing, which would race the log
        # group's resource policy (CloudFormation creates them seconds apart); then publishing, once
        # the policy has existed for the whole of the domain's creation.
        echo "creating $STACK_NAME (step 1 of 2: everything but the domain's log publishing)"
        cfn_deploy "${params[@]}" DomainLogs=prepare
        echo "step 2 of 2: the domain publishes its error log"
        cfn_deploy "${params[@]}" "DomainLogs=${logs:-publish}" || {
            echo "warning: the stack is up and works, but the domain's log publishing was rolled back. Run
  \`make deploy\` again to retry it; if CloudWatch Logs refuses a new resource policy (10 per region),
  deploy with DOMAIN_LOGS=off" >&2
        }
    else
        cfn_deploy "${params[@]}" ${logs:+"DomainLogs=$logs"}
    fi
    aws cloudformation describe-stacks --stack-name "$STACK_NAME" --query "Stacks[0].Outputs" --output table
}

# One `aws cloudformation deploy` with these parameter overrides. The template goes through the
# bucket too: passed inline it would meet CloudFormation's 51,200-byte limit on template bodies.
cfn_deploy() {
    aws cloudformation deploy --stack-name "$STACK_NAME" --template-file "$TEMPLATE" \
        --s3-bucket "$ARTIFACT_BUCKET" --s3-prefix "$STACK_NAME" \
        --capabilities CAPABILITY_NAMED_IAM --no-fail-on-empty-changeset \
        --parameter-overrides "$@"
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
    local status secret
    status="$(stack_status)"
    secret="$(api_key_secret "$(name_prefix "$status")")"
    ensure_api_key_secret "$secret"
    [[ -t 0 ]] && echo "paste the Alpha Vantage API key, then Ctrl-D:" >&2
    # From stdin, so the key never appears in a command line or the shell history.
    aws secretsmanager put-secret-value --secret-id "$secret" --secret-string file:///dev/stdin >/dev/null
    echo "stored in $secret; the fetcher uses it from its next run"
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
    local status secret
    status="$(stack_status)"
    secret="$(api_key_secret "$(name_prefix "$status")")"
    if [[ "$status" != NONE ]]; then
        aws cloudformation delete-stack --stack-name "$STACK_NAME"
        echo "deleting $STACK_NAME (20-45 minutes: the domain, and the network interfaces Lambda releases late)..."
        aws cloudformation wait stack-delete-complete --stack-name "$STACK_NAME"
    fi
    # The key's secret lives outside the stack, so that no template change rewrites it.
    if aws secretsmanager describe-secret --secret-id "$secret" --query DeletedDate --output text 2>/dev/null \
        | grep -qx None; then
        aws secretsmanager delete-secret --secret-id "$secret" --recovery-window-in-days "$KEY_RECOVERY_DAYS" >/dev/null
        echo "the API key's secret $secret is scheduled for deletion in $KEY_RECOVERY_DAYS days; a \`make deploy\`"
        echo "  before then restores it with the key (or: aws secretsmanager restore-secret --secret-id $secret)"
    fi
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
