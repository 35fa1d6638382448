#!/usr/bin/env bash
# Writes the seed inputs in corpus/<target>/seed-*: valid MCP traffic, in
# each target's input layout (see src/lib.rs and each target's header).
# The seeds are committed; rerun this after changing a layout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
mkdir -p corpus && cd corpus

seed() {  # seed TARGET NAME FORMAT [ARGS...]: printf FORMAT ARGS > TARGET/seed-NAME
    mkdir -p "$1"
    printf "$3" "${@:4}" > "$1/seed-$2"
}

INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{}},"clientInfo":{"name":"c","version":"1"}}}'
CALL='{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"a__echo","arguments":{"message":"hi"}}}'
LIST='{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"cursor":"MjphX19lY2hv"}}'
READ='{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"notes://1/text"}}'
PROMPT='{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"b__ask","arguments":{}}}'
COMPLETE='{"jsonrpc":"2.0","id":5,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a__greet"},"argument":{"name":"n","value":"x"}}}'
CANCEL='{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}'
ANSWER='{"jsonrpc":"2.0","id":"mcpgw:a:7","result":{"roots":[]}}'
SETLEVEL='{"jsonrpc":"2.0","id":6,"method":"logging/setLevel","params":{"level":"info"}}'
DISCOVER='{"jsonrpc":"2.0","id":7,"method":"server/discover"}'

for body in INIT CALL LIST READ PROMPT COMPLETE CANCEL ANSWER SETLEVEL; do
    seed parse "${body,,}" '%s' "${!body}"
done

# decide: 9 selectors, 4 strings, the body. Selectors 00 00 01 00 00 00 02 00 00:
# stateful gateway, POST /mcp, a valid session, Alice's API key, no JWT, no
# client certificate.
AS_ALICE='\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00'
for body in CALL LIST READ PROMPT COMPLETE CANCEL ANSWER SETLEVEL; do
    seed decide "${body,,}" "$AS_ALICE%s" "${!body}"
done
# No session yet: initialize.
seed decide init '\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00%s' "$INIT"
# A JWT caller (selector 6 = 0: the good payload; credential: a token).
seed decide jwt '\x00\x00\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00%s' "$CALL"
# A client certificate and no credential (selector 5 = 3: none).
seed decide mtls '\x00\x00\x01\x00\x00\x03\x02\x00\x01\x00\x00\x00\x00%s' "$CALL"
# The stateless gateway, as a 2026-07-28 client without a session.
seed decide stateless '\x01\x00\x00\x02\x00\x00\x02\x00\x00\x00\x00\x00\x00%s' "$DISCOVER"
seed decide stateless-call '\x01\x00\x00\x02\x00\x00\x02\x00\x00\x00\x00\x00\x00%s' "$CALL"

# sse: cut count, cut lengths, the stream.
STREAM='event: message\nid: 1\ndata: {"jsonrpc":"2.0","id":0,"method":"sampling/createMessage","params":{}}\n\n: ping\n\ndata: {"jsonrpc":"2.0","id":1,\r\ndata: "result":{}}\r\n\r\n'
seed sse whole "\x00$STREAM"
seed sse cut "\x03\x05\x20\x0d$STREAM"
# A request whose "method" key is escaped, cut after its event: it was once
# rewritten only when cut otherwise (see relay::may_have_method).
ESCAPED='data: {"jsonrpc":"2.0","id":1,"metho\\u0064":"x"}\n\n'
seed sse escaped-method "\x01\x32${ESCAPED}id: 5\ndata: {}\n\n"

# policy: selector, pattern, text, principal, group, bucket state, time.
seed policy allow '\x00time__*\x00time__now\x00alice\x00dev\x00\x40\x42\x0f\x00\x00\x00\x00\x00\xe8\x03\x00\x00\x00\x00\x00\x00\x10\x27\x00\x00\x00\x00\x00\x00'
seed policy deny '\x02*__delete_?\x00m__delete_x\x00bob\x00ops\x00'

# session: a string as sent, and the plaintext that seals to a valid id.
seed session state '{"t":1000000,"n":7,"v":"2025-06-18","u":{"a":{"i":"sid-a","v":"2025-06-18"},"b":{"e":"down"}}}'
seed session token 'k.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'

# uri: a resource URI as a client might spell it, escapes of a deny included.
seed uri plain 'file:///etc/passwd'
seed uri dots 'file:///tmp/../etc/passwd'
seed uri slashes 'file:////etc/passwd'
seed uri encoded-dots 'file:///%%2e%%2e/etc'
seed uri localhost 'file://localhost/etc/%%65'
seed uri http 'HTTPS://Example.COM/a/./b/../c?q=%%7e#f'
seed uri template 'notes://{id}/text'
seed uri urn 'urn:isbn:0451450523'
seed uri encoded-slash 'file:///etc%%2Fpasswd'
