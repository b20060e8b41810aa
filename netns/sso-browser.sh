#!/usr/bin/env bash
# The "external browser" of the lab: `openconnect --external-browser=netns/sso-browser.sh`
# runs it (posix_spawn, so it must be executable) with the headend's sso-v2-login URL.
# With curl only, it walks the SAML login the way a person's browser would:
#
#   GET URL  (headend)  -> 302 to the IdP SSO URL with SAMLRequest + RelayState
#   IdP                 -> 302 to its login form (SimpleSAMLphp: loginuserpass.php)
#   POST user/password  -> the IdP's auto-submitting form: action = the ACS,
#                          hidden SAMLResponse (+ RelayState)
#   POST it to the ACS  -> headend 302 to http://localhost:29786/api/sso/<blob>
#   GET that URL as is  -> openconnect's own listener ([::1]:29786) answers 200/302: done
#
# Redirects (Location, and <meta http-equiv=refresh>) are followed one by one, so every
# step is logged and the last URL is requested exactly as the server wrote it
# (--globoff --path-as-is, no re-encoding). One cookie jar for the whole walk.
#
# Usage: sso-browser.sh URL
# Environment:
#   SSO_USER            user name for the IdP login form (required when a form shows up)
#   SSO_PASSWORD        its password, or
#   SSO_PASSWORD_FILE   a file whose first line is the password (e.g. the lab's password-USER)
#   SSO_LOG             append the step log here (default: stderr)
#   SSO_COOKIE_JAR      cookie jar to use and keep (default: a temporary one); a kept jar
#                       carries the IdP session to the next run, as a real browser would
#   SSO_SAML_OUT        directory: write the IdP's SAMLResponse (as posted, base64),
#                       its decoded XML, the RelayState and the ACS URL there
#                       (SAMLResponse, SAMLResponse.xml, RelayState, acs)
#   SSO_STOP_AT_ACS=1   stop (exit 0) once the IdP produced the SAMLResponse, without
#                       posting it to the ACS (to test the IdP without a headend)
#   SSO_ACS_HOST        post the SAMLResponse to the ACS at this host[:port] instead of
#                       the form's (as DNS load balancing sends it to another headend)
#   SSO_MAX_STEPS       request limit (default 20); SSO_TIMEOUT per request (default 20 s)
# Exit status: 0 the last request succeeded (2xx, or the listener's 302); 1 usage;
#   2 the IdP rejected the credentials (the login form came back); 3 an HTTP error or a
#   page this script does not understand; 4 too many steps; 5 curl failed (network).
set -uo pipefail

LOG=${SSO_LOG:-/dev/stderr}
MAX_STEPS=${SSO_MAX_STEPS:-20}
TIMEOUT=${SSO_TIMEOUT:-20}

log() { printf '%s sso-browser[%d]: %s\n' "$(date -u +%H:%M:%S.%3N)" "$$" "$*" >>"$LOG"; }

if [ $# -ne 1 ] || [ -z "$1" ]; then
  log "usage: $0 URL (got $# arguments)"
  exit 1
fi
START_URL=$1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sso-browser.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
JAR=${SSO_COOKIE_JAR:-$WORK/cookies}

PASSWORD=${SSO_PASSWORD:-}
if [ -z "$PASSWORD" ] && [ -n "${SSO_PASSWORD_FILE:-}" ]; then
  if ! IFS= read -r PASSWORD <"$SSO_PASSWORD_FILE"; then
    [ -n "$PASSWORD" ] || { log "cannot read a password from SSO_PASSWORD_FILE=$SSO_PASSWORD_FILE"; exit 1; }
  fi
fi

# --- helpers ---------------------------------------------------------------------------

# HTML attribute value -> text (the entities SimpleSAMLphp's htmlspecialchars produces,
# plus the numeric forms other IdPs use for '/', ':', '=', '+').
html_unescape() {
  sed -e 's/&quot;/"/g' -e "s/&#0*39;/'/g" -e "s/&apos;/'/g" -e 's/&lt;/</g' -e 's/&gt;/>/g' \
    -e 's/&#x2[fF];/\//g' -e 's/&#0*47;/\//g' -e 's/&#x3[aA];/:/g' -e 's/&#0*58;/:/g' \
    -e 's/&#x3[dD];/=/g' -e 's/&#0*61;/=/g' -e 's/&#x2[bB];/+/g' -e 's/&#0*43;/+/g' \
    -e 's/&amp;/\&/g'
}

# The tags named $1 (e.g. input, form) of HTML file $2, one per line.
tags() {
  tr '\r\n\t' '   ' <"$2" | grep -o -i "<$1[[:space:]][^>]*>" || true
}

# Attribute $1 of one tag given on stdin (double or single quotes), unescaped.
attr() {
  local tag v
  tag=$(cat)
  v=$(printf '%s' "$tag" | sed -n -E "s/.*[[:space:]]$1[[:space:]]*=[[:space:]]*\"([^\"]*)\".*/\\1/Ip")
  [ -n "$v" ] || v=$(printf '%s' "$tag" | sed -n -E "s/.*[[:space:]]$1[[:space:]]*=[[:space:]]*'([^']*)'.*/\\1/Ip")
  printf '%s' "$v" | html_unescape
}

# Resolves reference $2 against URL $1 (enough of RFC 3986 for form actions).
resolve() {
  local base=$1 ref=$2 scheme origin nopath noquery
  case "$ref" in
    http://* | https://*) printf '%s' "$ref"; return ;;
  esac
  scheme=${base%%://*}
  origin=$(printf '%s' "$base" | sed -E 's#^([a-zA-Z]+://[^/?#]*).*#\1#')
  noquery=${base%%\#*}
  noquery=${noquery%%\?*}
  case "$ref" in
    '') printf '%s' "${base%%\#*}" ;;
    //*) printf '%s:%s' "$scheme" "$ref" ;;
    /*) printf '%s%s' "$origin" "$ref" ;;
    \?*) printf '%s%s' "$noquery" "$ref" ;;
    \#*) printf '%s' "${base%%\#*}" ;;
    *)
      nopath=${noquery#"$origin"}
      printf '%s%s/%s' "$origin" "${nopath%/*}" "$ref"
      ;;
  esac
}

# Everything after the first '?' with secrets and SAML blobs shortened, for the log.
short() {
  printf '%s' "$1" | sed -E 's/((SAMLRequest|SAMLResponse|AuthState|Signature)=[^&]{0,24})[^&]*/\1.../g'
}

STEP=0
CODE=000
LOCATION=
URL=
BODY=
# request METHOD URL [curl args...]: one request, no redirects followed. Sets CODE,
# LOCATION (absolute), URL (the URL requested), BODY (file).
request() {
  local method=$1 url=$2 hdr rc raw redirect
  shift 2
  STEP=$((STEP + 1))
  if [ "$STEP" -gt "$MAX_STEPS" ]; then
    log "giving up: more than $MAX_STEPS requests"
    exit 4
  fi
  hdr=$WORK/headers.$STEP
  BODY=$WORK/body.$STEP
  URL=$url
  local tls=()
  case "$url" in https://*) tls=(-k) ;; esac
  redirect=$(curl -sS --globoff --path-as-is --noproxy '*' --proto =http,https \
    --connect-timeout 5 --max-time "$TIMEOUT" "${tls[@]}" \
    -A 'Mozilla/5.0 (X11; Linux x86_64) lab-sso-browser/1 curl' \
    -b "$JAR" -c "$JAR" -D "$hdr" -o "$BODY" -w '%{http_code} %{redirect_url}' \
    -X "$method" "$@" "$url" 2>"$WORK/curl.err")
  rc=$?
  CODE=${redirect%% *}
  redirect=${redirect#* }
  [ "$redirect" != "$CODE" ] || redirect=
  if [ $rc -ne 0 ]; then
    log "step $STEP: $method $(short "$url") -> curl failed (exit $rc): $(tr '\n' ' ' <"$WORK/curl.err")"
    exit 5
  fi
  # The raw Location (curl's redirect_url may normalise it); relative ones resolved.
  raw=$(sed -n -E 's/^[Ll]ocation:[[:space:]]*//p' "$hdr" | tail -n 1 | tr -d '\r')
  case "$raw" in
    '') LOCATION=$redirect ;;
    http://* | https://*) LOCATION=$raw ;;
    *) LOCATION=$(resolve "$url" "$raw") ;;
  esac
  log "step $STEP: $method $(short "$url") -> $CODE${LOCATION:+ Location: $(short "$LOCATION")}"
}

fail_page() {
  log "$1; response body (first 2000 bytes, tags stripped):"
  tr '\r\n\t' '   ' <"$BODY" | sed -e 's/<script[^>]*>.*<\/script>//Ig' -e 's/<[^>]*>/ /g' \
    -e 's/  */ /g' | head -c 2000 >>"$LOG"
  printf '\n' >>"$LOG"
  exit "$2"
}

# The openconnect listener: the last request, exactly as given.
is_listener() {
  case "$1" in
    http://localhost:29786/* | http://127.0.0.1:29786/* | 'http://[::1]:29786/'*) return 0 ;;
  esac
  return 1
}

# --- the walk ----------------------------------------------------------------------------

log "start: $(short "$START_URL") (user ${SSO_USER:-<none>}, jar $JAR)"
POSTED_LOGIN=0
method=GET
next=$START_URL
data=()
while :; do
  request "$method" "$next" "${data[@]}"
  method=GET
  data=()

  if is_listener "$URL"; then
    case "$CODE" in
      2?? | 3??)
        log "done: openconnect's listener answered $CODE${LOCATION:+ (return to $(short "$LOCATION"))}"
        exit 0
        ;;
      *) fail_page "openconnect's listener answered $CODE" 3 ;;
    esac
  fi

  case "$CODE" in
    301 | 302 | 303 | 307 | 308)
      [ -n "$LOCATION" ] || fail_page "redirect $CODE without Location" 3
      next=$LOCATION
      continue
      ;;
    2??) ;;
    *) fail_page "HTTP $CODE from $(short "$URL")" 3 ;;
  esac

  inputs=$(tags input "$BODY")

  # 1. An auto-submitting SAML POST form (the IdP's answer): post it on.
  if printf '%s\n' "$inputs" | grep -q -i -E "name[[:space:]]*=[[:space:]]*[\"']SAMLResponse[\"']"; then
    action=$(tags form "$BODY" | head -n 1 | attr action)
    action=$(resolve "$URL" "$action")
    saml=
    relay=
    have_relay=0
    while IFS= read -r tag; do
      [ -n "$tag" ] || continue
      name=$(printf '%s' "$tag" | attr name)
      [ -n "$name" ] || continue
      value=$(printf '%s' "$tag" | attr value)
      case "$name" in
        SAMLResponse) saml=$value ;;
        RelayState) relay=$value; have_relay=1 ;;
      esac
      data+=(--data-urlencode "$name=$value")
    done <<<"$inputs"
    relay_note=", no RelayState"
    [ "$have_relay" -eq 0 ] || relay_note=", RelayState of ${#relay} chars"
    log "IdP produced a SAMLResponse (${#saml} base64 chars) for ACS $(short "$action")$relay_note"
    if [ -n "${SSO_SAML_OUT:-}" ]; then
      mkdir -p "$SSO_SAML_OUT"
      printf '%s' "$saml" >"$SSO_SAML_OUT/SAMLResponse"
      printf '%s' "$saml" | base64 -d >"$SSO_SAML_OUT/SAMLResponse.xml" 2>/dev/null ||
        log "warning: SAMLResponse is not valid base64"
      [ "$have_relay" -eq 0 ] || printf '%s' "$relay" >"$SSO_SAML_OUT/RelayState"
      printf '%s' "$action" >"$SSO_SAML_OUT/acs"
      log "saved the SAMLResponse, RelayState and ACS URL in $SSO_SAML_OUT"
    fi
    if [ "${SSO_STOP_AT_ACS:-0}" = 1 ]; then
      log "done: SSO_STOP_AT_ACS=1, not posting to the ACS"
      exit 0
    fi
    method=POST
    next=$action
    if [ -n "${SSO_ACS_HOST:-}" ]; then
      # DNS load balancing: the name in the ACS URL resolves to another headend.
      next=$(printf '%s' "$action" | sed -E "s#^(https?://)[^/]+#\1$SSO_ACS_HOST#")
      log "SSO_ACS_HOST: posting to $(short "$next") instead"
    fi
    continue
  fi

  # 2. A login form (an input of type password): fill it in, once.
  if printf '%s\n' "$inputs" | grep -q -i -E "type[[:space:]]*=[[:space:]]*[\"']password[\"']"; then
    if [ "$POSTED_LOGIN" -eq 1 ]; then
      fail_page "the IdP showed the login form again: credentials rejected for user ${SSO_USER:-?}" 2
    fi
    [ -n "${SSO_USER:-}" ] || fail_page "login form but SSO_USER is not set" 1
    [ -n "$PASSWORD" ] || fail_page "login form but neither SSO_PASSWORD nor SSO_PASSWORD_FILE is set" 1
    action=$(tags form "$BODY" | grep -i -E "method[[:space:]]*=[[:space:]]*[\"']post[\"']" | head -n 1 | attr action)
    action=$(resolve "$URL" "$action")
    user_field=
    pass_field=
    while IFS= read -r tag; do
      [ -n "$tag" ] || continue
      name=$(printf '%s' "$tag" | attr name)
      [ -n "$name" ] || continue
      type=$(printf '%s' "$tag" | attr type | tr '[:upper:]' '[:lower:]')
      case "$type" in
        password) pass_field=$name ;;
        text | email | '')
          [ -n "$user_field" ] || user_field=$name ;;
        hidden) data+=(--data-urlencode "$name=$(printf '%s' "$tag" | attr value)") ;;
      esac
    done <<<"$inputs"
    [ -n "$user_field" ] || fail_page "login form without a user name field" 3
    data+=(--data-urlencode "$user_field=$SSO_USER" --data-urlencode "$pass_field=$PASSWORD")
    log "login form: posting $user_field=$SSO_USER and $pass_field=<${#PASSWORD} chars> to $(short "$action")"
    POSTED_LOGIN=1
    method=POST
    next=$action
    continue
  fi

  # 3. A meta refresh (some IdPs and headends redirect that way with a 200).
  refresh=$(tags meta "$BODY" | grep -i 'http-equiv[[:space:]]*=[[:space:]]*["'"'"']refresh' | head -n 1 | attr content)
  if [ -n "$refresh" ]; then
    target=$(printf '%s' "$refresh" | sed -n -E "s/^[0-9]*[[:space:]]*;[[:space:]]*[Uu][Rr][Ll][[:space:]]*=[[:space:]]*['\"]?([^'\"]*)['\"]?[[:space:]]*$/\\1/p")
    if [ -n "$target" ]; then
      next=$(resolve "$URL" "$target")
      log "meta refresh to $(short "$next")"
      continue
    fi
  fi

  fail_page "page $(short "$URL") ($CODE) is neither a SAML POST form, a login form nor a redirect" 3
done
