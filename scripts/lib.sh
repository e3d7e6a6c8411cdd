# Sourced by the demo scripts (they define k, their kubectl).

# webhook_answers: true once roster's webhook refuses something only it refuses (an Organization
# not named after its namespace, as a server-side dry run), within 60 s. The API server picks up
# the webhook configuration asynchronously.
webhook_answers() {
    local probe='{"apiVersion":"roster.dev/v1alpha1","kind":"Organization","metadata":{"name":"probe","namespace":"default"},"spec":{"owner":"a@b.example"}}'
    local out
    for _ in $(seq 120); do
        # kubectl fails when the webhook denies: that failure is what we wait for.
        out=$(echo "$probe" | k apply --dry-run=server -f - 2>&1 || true)
        if grep -q "named after its namespace" <<<"$out"; then return 0; fi
        sleep 0.5
    done
    return 1
}
