#!/usr/bin/env bash
# tokenctl end to end, from an empty data directory and no configuration:
# create, list, validate, revoke, validate fails, rotate, purge; plus error handling.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --example tokenctl
bin=${CARGO_TARGET_DIR:-target}/debug/examples/tokenctl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data="$work/tokens"
unset DATAHUB_TOKEN_SERVICE_SIGNING_KEY DATAHUB_TOKEN_SERVICE_SALT ACCESS_TOKEN_ALLOW_NO_EXPIRY || true

passed=0
failed=0
check() { # check NAME COMMAND...: counts a pass or prints the failure
  local name=$1
  shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $name"; fi
}
ctl() { "$bin" --data-dir "$data" "$@"; }

created=$(ctl create --actor urn:li:corpuser:datahub --name bootstrap --duration ONE_DAY \
  --description "first admin token")
token=$(jq -r .accessToken <<<"$created")
id=$(jq -r .metadata.id <<<"$created")
check "create prints an AccessToken" test "$(jq -r .metadata.type <<<"$created")" = ACCESS_TOKEN
check "the owner defaults to the actor" test "$(jq -r .metadata.ownerUrn <<<"$created")" = urn:li:corpuser:datahub
check "the key and salt were generated" test -s "$data/token-service-secrets.json"
check "the key file is private" test "$(stat -c %a "$data/token-service-secrets.json")" = 600
check "the data directory is private" test "$(stat -c %a "$data")" = 700
check "the plaintext token is not on disk" bash -c "! grep -rqF -- '$token' '$data'"

ctl create --actor urn:li:corpuser:alice --owner urn:li:corpuser:admin --name ci --duration-iso PT1H >/dev/null
listed=$(ctl list)
check "list shows both tokens" test "$(jq -r .total <<<"$listed")" = 2
check "list --owner filters" test "$(ctl list --owner urn:li:corpuser:admin | jq -r '.tokens[0].actorUrn')" = urn:li:corpuser:alice
check "list --actor filters" test "$(ctl list --actor urn:li:corpuser:datahub | jq -r '.tokens[0].id')" = "$id"
check "list pages" test "$(ctl list --start 1 --count 5 | jq -r '[.start, .count, .total] | join(",")')" = 1,1,2

validated=$(ctl validate "$token")
check "validate prints the claims" test "$(jq -r .actorUrn <<<"$validated")/$(jq -r .claims.version <<<"$validated")" = urn:li:corpuser:datahub/2
check "validate reads standard input" test "$(ctl validate - <<<"$token" | jq -r .tokenId)" = "$id"
# A reader gone before the output is written (tokenctl ... | head): no panic.
gone_reader() { # gone_reader ARGS...: exit code of tokenctl ARGS writing into a closed pipe
  { sleep 0.5; set +e; ctl "$@" 2>"$work/pipe-err"; echo $? >"$work/pipe-rc"; } | true
  cat "$work/pipe-rc"
}
check "validate into a closed pipe ends quietly" test "$(gone_reader validate "$token")" = 0
check "list into a closed pipe ends quietly" test "$(gone_reader list)/$(wc -c <"$work/pipe-err")" = 0/0
check "other write errors are reported" bash -c "'$bin' --data-dir '$data' list >/dev/full 2>'$work/full'; test \$? = 1 \
  && grep -q 'writing the result to standard output: No space left' '$work/full'"
check "a lost standard error is no panic" bash -c "'$bin' --data-dir '$data' revoke nope 2>/dev/full; test \$? = 1"
check "a lost standard error is no panic, warnings and audit events either" bash -c "'$bin' --data-dir '$data' validate 'eyJhbGciOiJIUzI1NiJ9.e30.AAAA' 2>/dev/full; test \$? = 1"
check "a lost standard error is no panic with DataHub's key" bash -c "DATAHUB_TOKEN_SERVICE_SIGNING_KEY='WnEdIeTG/VVCLQqGwC/BAkqyY0k+H8NEAtWGejrBI94=' DATAHUB_TOKEN_SERVICE_SALT=own '$bin' --data-dir '$work/public2' create --actor urn:li:corpuser:x --name n --duration ONE_DAY >/dev/null 2>/dev/full"
check "audit events are not printed" bash -c "'$bin' --data-dir '$data' validate 'eyJhbGciOiJIUzI1NiJ9.e30.AAAA' 2>'$work/audit'; test \$? = 1 && ! grep -q VALIDATION_FAILED '$work/audit' && grep -q 'tokenctl: error' '$work/audit'"
# A new token nobody received is revoked, and its id named.
lost_create() {
  ctl create --actor urn:li:corpuser:dave --name lost --duration ONE_DAY >/dev/full 2>"$work/lost"
  test $? = 1 && grep -q "could not write the new token to standard output (No space left.*so it was revoked (token id " "$work/lost" \
    && test "$(ctl list --actor urn:li:corpuser:dave | jq -r .total)" = 0
}
check "create that cannot print revokes the token" lost_create
lost_in_pipe() {
  test "$(gone_reader create --actor urn:li:corpuser:dave --name lost --duration ONE_DAY)" = 1 \
    && grep -q "(Broken pipe.*so it was revoked" "$work/pipe-err" \
    && test "$(ctl list --actor urn:li:corpuser:dave | jq -r .total)" = 0
}
check "create into a closed pipe revokes the token" lost_in_pipe

check "revoke prints true" test "$(ctl revoke "$id")" = true
check "a revoked token fails validation" bash -c "! '$bin' --data-dir '$data' validate '$token' 2>'$work/err'"
check "the error names the problem" grep -q "Token has been revoked" "$work/err"
check "revoking again fails" bash -c "! '$bin' --data-dir '$data' revoke '$id' 2>'$work/err2' && grep -q 'no longer exists' '$work/err2'"

# Rotation: a new token with the same name; the old one stops validating.
before=$(ctl create --actor urn:li:corpuser:carol --name rotating --duration ONE_WEEK)
rotated=$(ctl rotate "$(jq -r .metadata.id <<<"$before")")
check "rotate keeps the name" test "$(jq -r .metadata.name <<<"$rotated")" = rotating
check "rotate makes a new id" test "$(jq -r .metadata.id <<<"$rotated")" != "$(jq -r .metadata.id <<<"$before")"
check "the rotated-away token fails validation" bash -c "! '$bin' --data-dir '$data' validate '$(jq -r .accessToken <<<"$before")' 2>/dev/null"
check "the new token validates" test "$(ctl validate "$(jq -r .accessToken <<<"$rotated")" | jq -r .tokenId)" = "$(jq -r .metadata.id <<<"$rotated")"
check "rotate --duration sets the lifetime" test "$(ctl rotate "$(jq -r .metadata.id <<<"$rotated")" --duration ONE_HOUR | jq -r '.metadata.expiresAt - .metadata.createdAt')" = 3600000
carols() { ctl list --actor urn:li:corpuser:carol | jq -r '.tokens[0].id'; }
check "rotate --duration-iso sets the lifetime" test "$(ACCESS_TOKEN_ALLOWED_DURATIONS=PT1H,P2D ctl rotate "$(carols)" --duration-iso P2D | jq -r '.metadata.expiresAt - .metadata.createdAt')" = 172800000
refused_iso() { # an ISO duration the policy does not allow: refused by name, the token kept
  local old
  old=$(carols)
  ! ctl rotate "$old" --duration-iso P2D 2>"$work/iso" && grep -q "duration P2D is not allowed" "$work/iso" \
    && test "$(carols)" = "$old"
}
check "rotate --duration-iso is checked against the policy" refused_iso
both_durations() { # clap refuses --duration with --duration-iso (usage error, exit 2)
  local old
  old=$(carols)
  ctl rotate "$old" --duration ONE_DAY --duration-iso P1D >/dev/null 2>"$work/both"
  test $? = 2 && grep -q "cannot be used with" "$work/both" && test "$(carols)" = "$old"
}
check "rotate takes --duration or --duration-iso, not both" both_durations
# Back to a lifetime the default policy allows, which the rotations below keep.
check "rotate --duration-iso under the default policy" test "$(ctl rotate "$(carols)" --duration-iso PT1H | jq -r '.metadata.expiresAt - .metadata.createdAt')" = 3600000
check "rotations leave one token of the lineage" test "$(ctl list --actor urn:li:corpuser:carol | jq -r .total)" = 1
lost_rotate() { # the old token is gone by then; the new one nobody received is revoked
  local old
  old=$(ctl list --actor urn:li:corpuser:carol | jq -r '.tokens[0].id')
  ctl rotate "$old" >/dev/full 2>"$work/lost"
  test $? = 1 && grep -qF "the rotation already revoked the token it replaced ($old)" "$work/lost" \
    && test "$(ctl list --actor urn:li:corpuser:carol | jq -r .total)" = 0
}
check "rotate that cannot print revokes the new token" lost_rotate

check "nothing expired yet" test "$(ctl purge-expired | jq -r .purged)" = 0
check "bad durations are refused by name" bash -c "! '$bin' --data-dir '$data' create --actor urn:li:corpuser:x --name n --duration FOREVER 2>'$work/err3' && grep -q 'unknown duration' '$work/err3'"
bad_urn() { # bad_urn OPTION ARGS...: create ARGS fails naming OPTION and the bad urn
  local option=$1
  shift
  ! ctl create --name n --duration ONE_DAY "$@" 2>"$work/urn" && grep -q "^tokenctl: error: $option: invalid urn \"datahub\"" "$work/urn"
}
check "a bad --actor is named as such" bad_urn --actor --actor datahub
check "a bad --actor is named with --owner given" bad_urn --actor --actor datahub --owner urn:li:corpuser:x
check "a bad --owner is named as such" bad_urn --owner --actor urn:li:corpuser:x --owner datahub
not_a_user() { # not_a_user OPTION URN ARGS...: create ARGS fails naming OPTION and URN as no user
  local option=$1 urn=$2
  shift 2
  ! ctl create --name n --duration ONE_DAY "$@" 2>"$work/urn" \
    && grep -qF "tokenctl: error: $option: \"$urn\" is not a user urn" "$work/urn"
}
check "a group --actor is named as no user" not_a_user --actor urn:li:corpGroup:x --actor urn:li:corpGroup:x
check "a group --owner is named as no user" not_a_user --owner urn:li:corpGroup:admins --actor urn:li:corpuser:x --owner urn:li:corpGroup:admins
check "a padded --owner is named as no user" not_a_user --owner "urn:li:corpuser: bob" --actor urn:li:corpuser:x --owner "urn:li:corpuser: bob"
check "DataHub's public key is flagged" bash -c "DATAHUB_TOKEN_SERVICE_SIGNING_KEY='WnEdIeTG/VVCLQqGwC/BAkqyY0k+H8NEAtWGejrBI94=' DATAHUB_TOKEN_SERVICE_SALT=own '$bin' --data-dir '$work/public' create --actor urn:li:corpuser:x --name n --duration ONE_DAY 2>'$work/public.err' >/dev/null && grep -q 'WARN INSECURE: the signing key (DATAHUB_TOKEN_SERVICE_SIGNING_KEY)' '$work/public.err'"
check "a duration is required" bash -c "! '$bin' --data-dir '$data' create --actor urn:li:corpuser:x --name n 2>/dev/null"
check "a forged token is refused" bash -c "! '$bin' --data-dir '$data' validate 'eyJhbGciOiJIUzI1NiJ9.e30.AAAA' 2>/dev/null"

# A token whose lifetime has passed: allow one second, wait it out, purge.
short=$(ACCESS_TOKEN_ALLOWED_DURATIONS=PT1S ctl create --actor urn:li:corpuser:bob --name short --duration-iso PT1S)
checked=$(ACCESS_TOKEN_ALLOWED_DURATIONS=PT1S ctl create --actor urn:li:corpuser:bob --name checked --duration-iso PT1S)
sleep 2.2
# As its --help says, validate deletes a stored token it finds expired.
check "validate refuses an expired token" bash -c "! '$bin' --data-dir '$data' validate '$(jq -r .accessToken <<<"$checked")' 2>'$work/exp' \
  && grep -q 'Token has expired' '$work/exp'"
check "... and deletes it" test "$(ctl list --actor urn:li:corpuser:bob | jq -r '[.tokens[].name] | join(",")')" = short
purged=$(ctl purge-expired)
check "purge-expired deletes the expired token" test "$(jq -r '.tokenIds[0]' <<<"$purged")" = "$(jq -r .metadata.id <<<"$short")"
check "one token is left" test "$(ctl list | jq -r .total)" = 1

not_a_log() { # a storage error names its cause once (the message ends with it)
  mkdir "$work/garbage"
  echo garbage >"$work/garbage/tokens.log"
  cp "$data/token-service-secrets.json" "$work/garbage/"
  ! "$bin" --data-dir "$work/garbage" list 2>"$work/garbage-err" \
    && grep -q "^tokenctl: error: token storage failed: .*tokens.log is not a DataHub token log" "$work/garbage-err" \
    && test "$(wc -l <"$work/garbage-err")" = 1
}
check "a storage error is not repeated as its own cause" not_a_log
unreadable() { # a cause the message does not hold is still shown
  mkdir -p "$work/unreadable/tokens.log"
  cp "$data/token-service-secrets.json" "$work/unreadable/"
  ! "$bin" --data-dir "$work/unreadable" list 2>"$work/unreadable-err" \
    && grep -q "^tokenctl: error: token storage failed: reading .*tokens.log" "$work/unreadable-err" \
    && grep -q "^  caused by: Is a directory" "$work/unreadable-err"
}
check "a storage error shows a cause it does not include" unreadable

# Only create starts a store: the rest refuse a directory without one.
no_store() { # no_store ARGS...: ARGS on a missing directory fail by name and create nothing
  ! "$bin" --data-dir "$work/typo" "$@" >/dev/null 2>"$work/typo-err" \
    && grep -q "no token store in $work/typo (create a token first, or check --data-dir)" "$work/typo-err" \
    && test ! -e "$work/typo"
}
for args in list "validate $token" "revoke $id" "rotate $id" purge-expired; do
  # shellcheck disable=SC2086 # split into arguments on purpose
  check "$args needs an existing store" no_store $args
done
cp -r "$data" "$work/nokey"
rm "$work/nokey/token-service-secrets.json"
check "a store without its key file is refused" bash -c "! '$bin' --data-dir '$work/nokey' list 2>'$work/nokey-err' \
  && grep -q 'no key file $work/nokey/token-service-secrets.json' '$work/nokey-err' && test ! -e '$work/nokey/token-service-secrets.json'"
check "... unless the key and salt are set" test "$(DATAHUB_TOKEN_SERVICE_SIGNING_KEY=0123456789abcdef0123456789abcdef \
  DATAHUB_TOKEN_SERVICE_SALT=s "$bin" --data-dir "$work/nokey" list | jq -r .total)" = 1

# The environment's key and salt take precedence over the generated ones.
check "a token from another key is refused" bash -c "! DATAHUB_TOKEN_SERVICE_SIGNING_KEY=0123456789abcdef0123456789abcdef \
  DATAHUB_TOKEN_SERVICE_SALT=s '$bin' --data-dir '$data' validate '$token' 2>/dev/null"

# The same flow on PostgreSQL, when .ci/run has provided a database: a
# schema of this run's own, dropped at the end.
if [ -n "${DATAHUB_TOKENS_TEST_POSTGRES_URL:-}" ]; then
  cargo build --quiet --example tokenctl --features postgres
  schema="tokenctl_e2e_$$_$(date +%s)"
  pg() { "$bin" --data-dir "$data" --postgres-url "$DATAHUB_TOKENS_TEST_POSTGRES_URL" --postgres-schema "$schema" "$@"; }
  made=$(pg create --actor urn:li:corpuser:datahub --name on-postgres --duration ONE_DAY)
  pg_token=$(jq -r .accessToken <<<"$made")
  pg_id=$(jq -r .metadata.id <<<"$made")
  check "postgres: list shows the token" test "$(pg list | jq -r '.tokens[0].id + "/" + (.total | tostring)')" = "$pg_id/1"
  check "postgres: the file store is untouched" test "$(ctl list | jq -r .total)" = 1
  check "postgres: validate" test "$(pg validate - <<<"$pg_token" | jq -r .tokenId)" = "$pg_id"
  check "postgres: revoke" test "$(pg revoke "$pg_id")" = true
  check "postgres: a revoked token fails validation" bash -c "! '$bin' --postgres-url '$DATAHUB_TOKENS_TEST_POSTGRES_URL' \
    --postgres-schema '$schema' --data-dir '$data' validate '$pg_token' 2>'$work/pgerr' && grep -q 'Token has been revoked' '$work/pgerr'"
  check "postgres: purge" test "$(pg purge-expired | jq -r .purged)" = 0
  check "postgres: a bad URL is refused by name" bash -c "! '$bin' --data-dir '$data' --postgres-url mysql://x list 2>'$work/pgerr' \
    && grep -q 'invalid PostgreSQL URL' '$work/pgerr'"
  check "postgres: --postgres-schema without --postgres-url is refused" bash -c "'$bin' --data-dir '$data' --postgres-schema '$schema' list \
    >/dev/null 2>'$work/pgerr'; test \$? = 2 && grep -q 'required arguments were not provided' '$work/pgerr' && grep -q -- --postgres-url '$work/pgerr'"
  check "postgres: no key file and no key set is refused" bash -c "! '$bin' --data-dir '$work/pg-nokey' --postgres-url '$DATAHUB_TOKENS_TEST_POSTGRES_URL' \
    --postgres-schema '$schema' list 2>'$work/pgerr' && grep -q 'no key file $work/pg-nokey/token-service-secrets.json (create a token first' '$work/pgerr' \
    && test ! -e '$work/pg-nokey'"
  pg create --actor urn:li:corpuser:datahub --name kept --duration ONE_DAY >/dev/null
  check "postgres: create with the key file lost, while the database holds tokens, is refused" bash -c "! '$bin' \
    --data-dir '$work/pg-lost' --postgres-url '$DATAHUB_TOKENS_TEST_POSTGRES_URL' --postgres-schema '$schema' \
    create --actor urn:li:corpuser:datahub --name again --duration ONE_DAY 2>'$work/pgerr' \
    && grep -q 'pg-lost/token-service-secrets.json is missing, but the token store holds tokens (1)' '$work/pgerr' \
    && test ! -e '$work/pg-lost/token-service-secrets.json'"
  PGOPTIONS=--client-min-messages=warning psql "$DATAHUB_TOKENS_TEST_POSTGRES_URL" -qc "DROP SCHEMA IF EXISTS \"$schema\" CASCADE"
else
  echo "tokenctl e2e on PostgreSQL NOT RUN: DATAHUB_TOKENS_TEST_POSTGRES_URL is not set"
fi

echo "tokenctl e2e: $passed passed, $failed failed"
test "$failed" -eq 0
