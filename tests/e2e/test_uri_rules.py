"""Resource rules over normalised URIs: a deny written as a glob over URIs
holds whatever way a client spells the URI. The gateway judges (and sends
on) the URI in normal form (RFC 3986: case, percent-encoding, dot segments;
runs of `/`), refuses with -32602 a URI that climbs above its root or hides a
separator as %2F, and applies denies to templates, reads through templates
and completions alike.

The server is the real server-everything. Its SDK resolves a URI with
WHATWG's URL parser before looking it up, which removes dot segments (also
`%2e%2e`) and lowercases the scheme: without normalisation in the gateway,
each of those spellings of a denied document reaches it and is served."""

import pytest

from conftest import BASE_SERVERS, RawSession

DOCS = "demo://resource/static/document/"
SECRET = DOCS + "instructions.md"
TEXT = "demo://resource/dynamic/text/"
BLOB = "demo://resource/dynamic/blob/"


@pytest.fixture(scope="module")
def ruled(gateway):
    """Everything allowed, but server-everything's static documents, its blob
    template (all of it) and one text resource of the text template."""
    rules = {
        "default": "allow",
        "rules": [{"name": "no-secrets", "deny": {"resources": [DOCS + "*", BLOB + "*", TEXT + "2"]}}],
    }
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "a catalog denying resources", authorization=rules)
    yield
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "the base catalog back")


def forwarded(gateway) -> int:
    return gateway.envoy_stat("cluster.mcp_everything.upstream_rq_total")


def session(gateway) -> RawSession:
    s = RawSession(gateway.url)
    s.initialize()
    return s


def read(s: RawSession, uri: str) -> dict:
    return s.request("resources/read", {"uri": uri})


def test_every_spelling_of_a_denied_uri_is_refused_as_unknown(gateway, ruled):
    s = session(gateway)
    # The deny holds as written...
    assert read(s, SECRET)["error"]["code"] == -32002
    before = forwarded(gateway)
    escapes = [
        "demo://resource/dynamic/../static/document/instructions.md",
        "demo://resource/dynamic/%2e%2e/static/document/instructions.md",
        "demo://resource/dynamic/%2E%2E/static/document/instructions.md",
        "DEMO://resource/static/document/instructions.md",
        "demo://resource//static/document/instructions.md",
        "demo://resource/static/./document/instructions.md",
        "demo://resource/%73tatic/document/instructions.md",
        TEXT + "1/../../blob/1",
        TEXT + "1/../2",
    ]
    for uri in escapes:
        answer = read(s, uri)
        assert "result" not in answer, f"{uri} escaped the deny: {answer}"
        # Exactly as an unknown resource, naming the URI as the client wrote it.
        assert answer["error"]["code"] == -32002, (uri, answer)
        assert answer["error"]["message"] == f"Resource not found: no server behind this gateway serves {uri}"
    assert forwarded(gateway) == before, "a refused read reached the server"


def test_uris_without_a_canonical_form_are_refused_and_say_why(gateway, ruled):
    s = session(gateway)
    before = forwarded(gateway)
    for uri, why in [
        ("demo://resource/../../static/document/instructions.md", 'its path climbs above the root with ".."'),
        ("demo://resource/static%2Fdocument/instructions.md", "its path encodes a separator or NUL (%2F) inside a segment"),
        ("demo://resource/static/document/instructions.md%00.txt", "its path encodes a separator or NUL (%00) inside a segment"),
        ("demo://resource/%zz", "it has a malformed percent-encoding"),
    ]:
        error = read(s, uri)["error"]
        assert error["code"] == -32602, (uri, error)
        assert why in error["message"] and uri in error["message"], error
    assert forwarded(gateway) == before, "a refused read reached the server"


def test_allowed_reads_work_and_the_server_reads_the_normal_form(gateway, ruled):
    s = session(gateway)
    text = read(s, TEXT + "1")["result"]["contents"][0]
    assert text["uri"] == TEXT + "1" and text["text"].startswith("Resource 1:")
    # Another spelling of an allowed URI is read, in normal form: the server
    # answers for the URI the rules judged.
    for uri in (TEXT + "./1", "DEMO://resource/dynamic/text/3/../1", "demo://resource/dynamic//text/%31"):
        contents = read(s, uri)["result"]["contents"][0]
        assert (contents["uri"], contents["text"][:11]) == (TEXT + "1", "Resource 1:"), uri


def test_denies_reach_templates_and_completions(gateway, ruled):
    s = session(gateway)
    templates = {t["uriTemplate"] for t in s.request("resources/templates/list")["result"]["resourceTemplates"]}
    # A deny covering all of a template hides it; one on part of it does not.
    assert BLOB + "{resourceId}" not in templates
    assert TEXT + "{resourceId}" in templates
    assert not any(r["uri"].startswith(DOCS) for r in s.request("resources/list")["result"]["resources"])

    def complete(template: str) -> dict:
        return s.request("completion/complete", {"ref": {"type": "ref/resource", "uri": template}, "argument": {"name": "resourceId", "value": "1"}})

    before = forwarded(gateway)
    for template in (BLOB + "{resourceId}", "demo://resource/dynamic/text/../blob/{resourceId}", "Demo://resource/dynamic/blob/{resourceId}"):
        assert complete(template)["error"]["code"] == -32002, template
    assert forwarded(gateway) == before, "a refused completion reached the server"
    # Reads through the partly denied template are judged URI by URI.
    assert read(s, TEXT + "2")["error"]["code"] == -32002
    assert "result" in complete(TEXT + "{resourceId}")
