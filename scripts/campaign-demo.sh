#!/usr/bin/env bash
# A whole outbound campaign on loopback, in fast mode: `switchboard simulate-provider` plays the phone
# network for N contacts (people confirming, rescheduling and opting out by voice, answering machines,
# busy lines, unanswered phones), `switchboard serve` dials them with the real models, and the campaign's
# results and the provider's record are printed at the end.
#
#   scripts/campaign-demo.sh [CONTACTS]      (default 100; needs `make build models` first)
#
# Everything lives in a temporary directory (kept, and printed, for a look at the call log afterwards).
set -euo pipefail

contacts=${1:-100}
bin=${SWITCHBOARD:-target/release/switchboard}
dir=$(mktemp -d -t switchboard-demo.XXXXXX)
sid=AC0123456789abcdef0123456789abcdef
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Daytime somewhere: the zone whose local hour is closest to 14:00, so the calling window is open.
zone=$(python3 - <<'EOF'
from datetime import datetime
from zoneinfo import ZoneInfo
zones = ["Pacific/Honolulu", "America/Los_Angeles", "America/Chicago", "America/New_York", "America/Sao_Paulo",
         "Atlantic/Azores", "Europe/London", "Europe/Paris", "Europe/Moscow", "Asia/Dubai", "Asia/Karachi",
         "Asia/Dhaka", "Asia/Bangkok", "Asia/Shanghai", "Asia/Tokyo", "Australia/Brisbane", "Pacific/Noumea",
         "Pacific/Auckland", "Pacific/Kiritimati"]
print(min(zones, key=lambda z: abs(datetime.now(ZoneInfo(z)).hour + datetime.now(ZoneInfo(z)).minute / 60 - 14)))
EOF
)

# Who does what: a repeating mix, one entry per number.
{
  echo '[default]'
  echo 'answer = "no_answer"'
  echo 'name,phone,time_zone,consent,consent_source,appointment_time' > "$dir/contacts.csv"
  for i in $(seq 1 "$contacts"); do
    phone=$(printf '+44207946%04d' "$i")
    echo "Contact $i,$phone,$zone,yes,demo,Tuesday at 10 AM" >> "$dir/contacts.csv"
    echo
    echo "[numbers.\"$phone\"]"
    case $((i % 10)) in
      0|1) echo 'answer = "human"'; echo 'turns = [{ say = "Yes, speaking." }, { say = "Yes, I will be there." }]' ;;
      2) echo 'answer = "human"'
         echo 'turns = [{ say = "Yes, speaking." }, { say = "I cannot make it, I need to reschedule." }, { say = "On Friday at 3 PM." }, { say = "Yes, that is right." }]' ;;
      3) echo 'answer = "human"'; echo 'turns = [{ say = "Please stop calling me." }]' ;;
      4|5) echo 'answer = "voicemail"'; echo 'greeting_seconds = 1' ;;
      6|7) echo 'answer = "busy"' ;;
      8) echo 'attempts = [{ answer = "busy" }, { answer = "human", turns = [{ say = "Yes, speaking." }, { dtmf = "1" }] }]' ;;
      9) echo 'answer = "no_answer"' ;;
    esac
  done
} > "$dir/numbers.toml"

"$bin" simulate-provider --port 0 --fast --account-sid "$sid" --numbers "$dir/numbers.toml" \
  --report "$dir/provider.json" > "$dir/provider.out" 2> "$dir/provider.log" &
pids+=($!)
until provider=$(grep -o 'http://[^ ]*' "$dir/provider.out" 2>/dev/null | head -1) && [ -n "$provider" ]; do sleep 0.2; done

cat > "$dir/serve.toml" <<EOF
[provider]
account_sid = "$sid"
rest_base_url = "$provider"

[campaigns]
tick_ms = 250
EOF
"$bin" serve --port 0 --data-dir "$dir" --config "$dir/serve.toml" > "$dir/serve.out" 2> "$dir/serve.log" &
pids+=($!)
until grep 'listening on' "$dir/serve.out" > /dev/null 2>&1; do sleep 0.5; done

store=(--data-dir "$dir")
id=$("$bin" campaign create "${store[@]}" --name "demo of $contacts" --flow outbound_appointment \
  --caller-id +442071230000 --days mon-sun --max-attempts 3 --max-attempts-per-day 3 --retry-busy 0 \
  --retry-no-answer 0 --retry-voicemail 0 --retry-failed 0 --max-concurrent 4 --calls-per-second 5 | tail -1)
"$bin" campaign import "${store[@]}" "$id" "$dir/contacts.csv"
start=$(date +%s)
"$bin" campaign start "${store[@]}" "$id"
echo "campaign $id: $contacts contacts in $zone; provider $provider; files in $dir"
while ! "$bin" campaign status "${store[@]}" "$id" | grep 'status *completed' > /dev/null; do
  sleep 5
  echo "  $(( $(date +%s) - start )) s: $("$bin" campaign status "${store[@]}" "$id" | grep 'contacts' || true)"
done
echo "completed in $(( $(date +%s) - start )) s"
"$bin" campaign status "${store[@]}" "$id"
