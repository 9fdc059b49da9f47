#!/usr/bin/env python3
"""An independent MCP client for the daemon's Streamable HTTP endpoint: the
Python `mcp` SDK (mcp.client.streamable_http), beside its stdio client on a
`serve` of the same data dir.

Usage:
  mcp_http_check.py check BINARY URL TOKEN DATA_DIR SCHEMA_DIR
  mcp_http_check.py save URL TOKEN CONTENT

`check`:
1. Over HTTP (with the bearer token) and over stdio: initialize, list the
   tools; the two lists must be identical (names, descriptions, schemas,
   annotations), and each valid against the official 2025-11-25 schema.
2. A save over HTTP and one over stdio get the same kind of reply; the
   stdio one saved again over HTTP is found as the same entry (one queue).
3. The guard, with plain HTTP requests: no token or a wrong one -> 401
   with `WWW-Authenticate: Bearer`; a foreign Origin -> 403, token or not;
   a foreign Host -> 403; the daemon's own Origin -> accepted.
4. Two clients, each in its own session, saving at once: every save
   queued, every id distinct, and the queue counts them all.

`save`: prints "calling" and calls mem0_save with CONTENT over HTTP; the
Rust test kills it in the middle of the call.

Exit 0: all good. Exit 1: a check failed. Exit 3: the SDK is missing
(prints "SKIPPED: ..."; the Rust test decides what that means).
"""

import json
import os
import sys

try:
    import anyio
    try:
        import httpx2 as httpx  # what mcp 2.x brings
    except ImportError:
        import httpx  # mcp 1.x
    import jsonschema
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"SKIPPED: python mcp SDK missing ({e}); pip install mcp jsonschema")
    sys.exit(3)

REVISION = "2025-11-25"
TIMEOUT_S = 90
PER_CLIENT = 25
CORE_TOOLS = {"mem0_save", "mem0_queue_status", "mem0_recent"}


def text_of(result):
    return "\n".join(b.text for b in result.content if getattr(b, "type", None) == "text")


def dump(model):
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


class Schema:
    def __init__(self, schema_dir):
        with open(os.path.join(schema_dir, f"{REVISION}.json"), encoding="utf-8") as f:
            self.root = json.load(f)

    def check(self, name, instance, what):
        schema = {
            "$schema": self.root.get("$schema", "https://json-schema.org/draft/2020-12/schema"),
            "$defs": self.root["$defs"],
            "$ref": f"#/$defs/{name}",
        }
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(instance))
        if errors:
            raise AssertionError(f"{what} is not a valid {REVISION} {name}: {errors[0].message[:300]}")


def http_session(url, token):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    return http, streamable_http_client(url, http_client=http)


async def http_tools_and_saves(url, token, schema):
    http, transport = http_session(url, token)
    async with http, transport as (read, write, *_):
        async with ClientSession(read, write) as s:
            init = await s.initialize()
            assert init.server_info.name == "mem0-queue", init.server_info
            tools = await s.list_tools()
            schema.check("ListToolsResult", dump(tools), "tools/list over HTTP")
            saved = await s.call_tool("mem0_save", {"content": "saved over HTTP by the python SDK", "project": "http"})
            schema.check("CallToolResult", dump(saved), "mem0_save over HTTP")
            return [dump(t) for t in tools.tools], saved


async def stdio_tools_and_save(binary, data, home):
    params = StdioServerParameters(
        command=binary,
        args=["--data-dir", data, "serve"],
        env={"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                tools = await s.list_tools()
                saved = await s.call_tool("mem0_save", {"content": "saved over stdio by the python SDK", "project": "http"})
                status = await s.call_tool("mem0_queue_status", {})
                return [dump(t) for t in tools.tools], saved, status


async def http_calls(url, token, calls):
    """Runs (tool, args) calls in one session, one after the other."""
    http, transport = http_session(url, token)
    out = []
    async with http, transport as (read, write, *_):
        async with ClientSession(read, write) as s:
            await s.initialize()
            for tool, args in calls:
                out.append(await s.call_tool(tool, args))
    return out


async def concurrent_savers(url, token):
    ids = {}

    async def client(n):
        calls = [("mem0_save", {"content": f"client {n} memory {i}: saved at once", "project": "two-clients"})
                 for i in range(PER_CLIENT)]
        http, transport = http_session(url, token)
        async with http, transport as (read, write, *_):
            async with ClientSession(read, write) as s:
                await s.initialize()

                async def one(tool, args):
                    r = await s.call_tool(tool, args)
                    assert not r.is_error, text_of(r)
                    assert r.structured_content["status"] == "queued", r.structured_content
                    ids[args["content"]] = r.structured_content["id"]

                async with anyio.create_task_group() as tg:
                    for tool, args in calls:
                        tg.start_soon(one, tool, args)

    async with anyio.create_task_group() as tg:
        tg.start_soon(client, 1)
        tg.start_soon(client, 2)
    return ids


def guard_checks(url, token):
    port = url.split(":")[2].split("/")[0]
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": REVISION, "capabilities": {}, "clientInfo": {"name": "guard", "version": "0"}},
    }
    base = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

    def post(extra):
        with httpx.Client(timeout=30) as c:
            return c.post(url, headers={**base, **extra}, content=json.dumps(init))

    r = post({})
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.headers.get("www-authenticate", "").startswith("Bearer"), r.headers
    r = post({"Authorization": "Bearer " + "0" * len(token)})
    assert r.status_code == 401, (r.status_code, r.text)
    r = post({"Authorization": "Basic " + token})
    assert r.status_code == 401, (r.status_code, r.text)
    good = {"Authorization": f"Bearer {token}"}
    r = post({**good, "Origin": "http://evil.example"})
    assert r.status_code == 403, (r.status_code, r.text)
    r = post({"Origin": "http://evil.example"})
    assert r.status_code == 403, ("a foreign Origin is refused before the token", r.status_code)
    r = post({**good, "Origin": f"http://localhost:{int(port) + 1}"})
    assert r.status_code == 403, ("another port of localhost is another origin", r.status_code)
    r = post({**good, "Host": "evil.example"})
    assert r.status_code == 403, ("a rebinding Host", r.status_code, r.text)
    r = post({**good, "Origin": f"http://127.0.0.1:{port}"})
    assert r.status_code == 200, ("the daemon's own origin", r.status_code, r.text)
    assert r.headers.get("mcp-session-id"), r.headers


def check(binary, url, token, data, schema_dir):
    schema = Schema(schema_dir)
    home = os.path.join(os.path.dirname(data), "home")
    os.makedirs(home, exist_ok=True)

    async def run():
        with anyio.fail_after(TIMEOUT_S):
            h_tools, h_saved = await http_tools_and_saves(url, token, schema)
            s_tools, s_saved, s_status = await stdio_tools_and_save(binary, data, home)
            return h_tools, h_saved, s_tools, s_saved, s_status

    h_tools, h_saved, s_tools, s_saved, s_status = anyio.run(run)
    names = [t["name"] for t in h_tools]
    assert set(names) >= CORE_TOOLS, names
    assert h_tools == s_tools, "the tools differ between HTTP and stdio:\n" + json.dumps(
        [a for a, b in zip(h_tools, s_tools) if a != b][:1], indent=1)[:3000]
    print(f"ok: tools/list over HTTP and stdio identical ({len(names)} tools)")

    for r in (h_saved, s_saved):
        assert not r.is_error, text_of(r)
        assert text_of(r).startswith("queued: saved on local disk as "), text_of(r)
    assert set(h_saved.structured_content) == set(s_saved.structured_content), (
        h_saved.structured_content, s_saved.structured_content)

    async def more():
        with anyio.fail_after(TIMEOUT_S):
            return await http_calls(url, token, [
                ("mem0_save", {"content": "saved over stdio by the python SDK", "project": "http"}),
                ("mem0_queue_status", {}),
            ])

    again, h_status = anyio.run(more)
    assert again.structured_content["id"] == s_saved.structured_content["id"], "one queue behind both transports"
    assert again.structured_content["deduplicated"] is True
    assert h_status.structured_content["counts"] == s_status.structured_content["counts"], (
        h_status.structured_content["counts"], s_status.structured_content["counts"])
    assert h_status.structured_content["daemon"]["running"] is True, h_status.structured_content["daemon"]
    print("ok: saves over HTTP and stdio get the same replies, into one queue")

    guard_checks(url, token)
    print("ok: 401 without or with a wrong token, 403 for a foreign Origin or Host")

    async def two():
        with anyio.fail_after(TIMEOUT_S):
            return await concurrent_savers(url, token)

    ids = anyio.run(two)
    assert len(ids) == 2 * PER_CLIENT and len(set(ids.values())) == 2 * PER_CLIENT, ids

    async def status():
        with anyio.fail_after(TIMEOUT_S):
            return (await http_calls(url, token, [("mem0_queue_status", {})]))[0]

    counts = anyio.run(status).structured_content["counts"]
    assert counts["pending"] == 2 + 2 * PER_CLIENT, counts
    print(f"ok: two clients saved {PER_CLIENT} memories each at once: all queued, ids distinct")
    print("PASSED: python mcp SDK over Streamable HTTP")
    return 0


def save(url, token, content):
    async def run():
        http, transport = http_session(url, token)
        async with http, transport as (read, write, *_):
            async with ClientSession(read, write) as s:
                await s.initialize()
                print("calling", flush=True)
                r = await s.call_tool("mem0_save", {"content": content, "project": "killed"})
                print("answered:", text_of(r), flush=True)

    anyio.run(run)
    return 0


def main():
    if len(sys.argv) == 7 and sys.argv[1] == "check":
        return check(*sys.argv[2:7])
    if len(sys.argv) == 5 and sys.argv[1] == "save":
        return save(*sys.argv[2:5])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
