#!/usr/bin/env bash
# The containerised federation, end to end (run by .ci/run when a Docker engine answers):
#   1. a record ingested at the commune gets receipted copies at the two other territories;
#   2. the commune is cut off the network: its released public record is still read, byte
#      for byte, at the département's gateway;
#   3. a holder is killed, the commune ingests meanwhile, the holder restarts and converges;
#   4. the commune's volume is wiped and the node restored from its peers with its recovery
#      kit: every record identical.
# Everything is torn down at the end, whether a step failed or not.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
deploy="$(dirname "$here")"
project=archipel-federation
compose=(docker-compose -p "$project" -f "$deploy/compose.yaml")
work="$(mktemp -d)"
passphrase="correct horse battery staple, Plougastel"

teardown() {
  status=$?
  if [ $status -ne 0 ]; then
    echo "FAILED (exit $status); last logs:" >&2
    "${compose[@]}" logs --tail 30 >&2 || true
  fi
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$work" "$here/generated"
  exit $status
}
trap teardown EXIT

step() { echo "== $*"; }
cli() { "${compose[@]}" exec -T "$1" archipel --node /var/lib/archipel "${@:2}"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq 1 $((limit * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "timed out after ${limit}s waiting for: $what" >&2
  return 1
}
container() { docker ps -aq --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1"; }
put_file() { docker cp "$2" "$(container "$1"):/tmp/$(basename "$2")"; }
holders() { cli commune status "$1" --json | json 'len(d["holders"])'; }
two_holders() { [ "$(holders "$1")" = 2 ]; }

"$here/setup.sh"

step "1. ingest at the commune; copies receipted at the département and the région"
head -c 3000000 /dev/urandom >"$work/deliberations-1998.pdf"
head -c 200000 /dev/urandom >"$work/etat-civil-2020.pdf"
put_file commune "$work/deliberations-1998.pdf"
put_file commune "$work/etat-civil-2020.pdf"
public=$(cli commune --json ingest /tmp/deliberations-1998.pdf --title "Registre des délibérations 1998" \
  --communicability immediate --metadata-public | json 'd["id"]')
closed=$(cli commune --json ingest /tmp/etat-civil-2020.pdf --title "Naissances 2020" \
  --communicability l213-2-4 --date 2020-03-01 | json 'd["id"]')
wait_for 120 "2 holders of $public" two_holders "$public"
wait_for 120 "2 holders of $closed" two_holders "$closed"
for holder in departement region; do
  n=$(cli "$holder" --json federation | json '[p for p in d["peers"] if p["territory"].startswith("Commune")][0]["records_we_hold"]')
  [ "$n" -ge 2 ] || { echo "$holder holds $n records of the commune" >&2; exit 1; }
done

step "2. the commune cut off the network: its public record at the département's gateway"
gw="http://127.0.0.1:${DEPARTEMENT_GATEWAY_PORT:-18082}"
released() { curl -fsS "$gw/api/records/$public" >/dev/null; }
wait_for 120 "the département's gateway to serve the released record" released
docker network disconnect "${project}_federation" "$(container commune)"
curl -fsS -o "$work/fetched.pdf" "$gw/records/$public/files/deliberations-1998.pdf"
cmp "$work/fetched.pdf" "$work/deliberations-1998.pdf"
code=$(curl -s -o /dev/null -w '%{http_code}' "$gw/records/$closed/files/etat-civil-2020.pdf")
[ "$code" = 404 ] || [ "$code" = 403 ] || { echo "closed record answered $code" >&2; exit 1; }
docker network connect "${project}_federation" "$(container commune)"

step "3. a holder killed; ingest meanwhile; it restarts and converges"
docker kill "$(container departement)" >/dev/null
head -c 500000 /dev/urandom >"$work/permis.pdf"
put_file commune "$work/permis.pdf"
later=$(cli commune --json ingest /tmp/permis.pdf --title "Permis de construire" | json 'd["id"]')
"${compose[@]}" start departement >/dev/null
wait_for 180 "the restarted holder to take its copy of $later" two_holders "$later"

step "4. the commune wiped and restored from its peers with its recovery kit"
wait_for 60 "the log to be witnessed" bash -c "[ \"\$(${compose[*]} exec -T departement archipel --node /var/lib/archipel --json federation | python3 -c 'import json,sys; print(max(p[\"cosigned_size\"] for p in json.load(sys.stdin)[\"peers\"]))')\" != 0 ]"
"${compose[@]}" exec -T -e ARCHIPEL_PASSPHRASE="$passphrase" commune \
  archipel-node export-kit --data /var/lib/archipel --out /tmp/kit.age >/dev/null
docker cp "$(container commune):/tmp/kit.age" "$work/kit.age"
before=$(cli commune --json ls | json 'sorted(r["id"] for r in d)')
"${compose[@]}" rm -sf commune >/dev/null
docker volume rm "${project}_commune" >/dev/null
chmod 0644 "$work/kit.age"
"${compose[@]}" run --rm --no-deps -e ARCHIPEL_PASSPHRASE="$passphrase" -v "$work/kit.age:/kit.age:ro" \
  --entrypoint /usr/local/bin/archipel-node commune \
  restore --kit /kit.age --data /var/lib/archipel --peer departement:7443 --peer region:7443
"${compose[@]}" up -d commune >/dev/null
wait_for 30 "the restored commune to answer" cli commune status
after=$(cli commune --json ls | json 'sorted(r["id"] for r in d)')
[ "$before" = "$after" ] || { echo "records differ: $before / $after" >&2; exit 1; }
cli commune verify >/dev/null
for f in deliberations-1998.pdf etat-civil-2020.pdf permis.pdf; do
  id=$public; [ $f = etat-civil-2020.pdf ] && id=$closed; [ $f = permis.pdf ] && id=$later
  cli commune get "$id" -o "/tmp/out-$f" >/dev/null
  docker cp "$(container commune):/tmp/out-$f" "$work/out-$f"
  cmp "$work/out-$f" "$work/$f"
done
echo "federation test: all steps passed"
