#!/usr/bin/env python3
"""An independent MCP client for `mem0-queue serve`: the Python `mcp` SDK.

Usage: mcp_client_check.py BINARY SCHEMA_DIR

1. Starts BINARY over stdio with the SDK (mcp.client.stdio), initializes
   (the SDK's handshake version, 2025-11-25), lists the tools, calls
   mem0_save, mem0_queue_status, mem0_recent and every lifecycle tool
   (mem0_get, mem0_list, mem0_update, mem0_delete, mem0_forget,
   mem0_entities), and validates every raw
   response the server sent against the official schema of the negotiated
   revision (SCHEMA_DIR/<revision>.json): the envelope, and the result
   against InitializeResult, ListToolsResult or CallToolResult.
2. Over a raw stdin/stdout pipe, sends `server/discover` and then tools/list
   and tools/call the stateless 2026-07-28 way (version and capabilities in
   each request's _meta), and validates every reply against the 2026-07-28
   schema (DiscoverResult, ListToolsResult, CallToolResult).

The server runs in a fresh temp dir with a clean environment. Exit 0: all
good. Exit 1: a check failed. Exit 3: the SDK or jsonschema is missing
(prints "SKIPPED: ..."; the Rust test decides what that means).
"""

import json
import os
import select
import subprocess
import sys
import tempfile
import time

try:
    import anyio
    import jsonschema
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"SKIPPED: python mcp SDK missing ({e}); pip install mcp jsonschema")
    sys.exit(3)

HANDSHAKE_VERSION = "2025-11-25"
STATELESS_VERSION = "2026-07-28"
SECRET = "python-sdk-memory-4b1d: tabs over spaces"
TIMEOUT_S = 60
CORE_TOOLS = {"mem0_save", "mem0_queue_status", "mem0_recent"}
LIFECYCLE_TOOLS = {"mem0_get", "mem0_list", "mem0_update", "mem0_delete", "mem0_forget", "mem0_entities"}


def load_schema(schema_dir, revision):
    path = os.path.join(schema_dir, f"{revision}.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class Schemas:
    """Validators for `#/$defs/NAME` of one revision's schema.json."""

    def __init__(self, root, revision):
        self.root = root
        self.revision = revision
        self.cache = {}

    def check(self, name, instance, what):
        defs = self.root["$defs"]
        if name not in defs:
            raise AssertionError(f"{self.revision} schema has no $defs/{name}")
        v = self.cache.get(name)
        if v is None:
            schema = {
                "$schema": self.root.get("$schema", "https://json-schema.org/draft/2020-12/schema"),
                "$defs": defs,
                "$ref": f"#/$defs/{name}",
            }
            v = jsonschema.Draft202012Validator(schema)
            self.cache[name] = v
        errors = sorted(v.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            detail = "\n".join(
                f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:10]
            )
            raise AssertionError(
                f"{what} does not match {self.revision} $defs/{name}:\n{detail}\n"
                f"instance: {json.dumps(instance)[:2000]}"
            )


RESULT_DEF = {
    "initialize": "InitializeResult",
    "tools/list": "ListToolsResult",
    "tools/call": "CallToolResult",
    "server/discover": "DiscoverResult",
}


def check_reply(schemas, msg, method, revision=""):
    """Checks a reply to `method`: a protocol error fails, naming it; a
    result is checked as an envelope and as the method's result type.
    `revision` (" (VERSION)") is added to the messages when given."""
    if "error" in msg:
        schemas.check("JSONRPCErrorResponse", msg, f"the error reply to {method}")
        raise AssertionError(f"{method}{revision} got a protocol error: {msg['error']}")
    schemas.check("JSONRPCResultResponse", msg, f"the {method} reply envelope")
    schemas.check(RESULT_DEF[method], msg["result"], f"the {method} result{revision}")


def server_env(home):
    # The SDK merges this over its small default environment (HOME, PATH,
    # ...); no MEM0_* variable is passed on, and HOME is the temp dir's.
    return {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def structured_text(result):
    return "\n".join(b.text for b in result.content if getattr(b, "type", None) == "text")


async def sdk_session(binary, data, home, stderr_file, schemas_by_revision):
    params = StdioServerParameters(
        command=binary, args=["--data-dir", data, "serve"], env=server_env(home)
    )
    sent_methods = {}  # request id -> method
    received = []  # raw JSON-RPC messages from the server
    async with stdio_client(params, errlog=stderr_file) as (read, write):
        tap_in_send, tap_in_recv = anyio.create_memory_object_stream(0)
        tap_out_send, tap_out_recv = anyio.create_memory_object_stream(0)

        async def pump_in():
            async with tap_in_send:
                async for msg in read:
                    if isinstance(msg, Exception):
                        raise AssertionError(f"the transport failed on a server message: {msg!r}")
                    received.append(msg.message.model_dump(by_alias=True, mode="json", exclude_unset=True))
                    await tap_in_send.send(msg)

        async def pump_out():
            async with tap_out_recv:
                async for msg in tap_out_recv:
                    m = msg.message.model_dump(by_alias=True, mode="json", exclude_unset=True)
                    if "method" in m and "id" in m:
                        sent_methods[m["id"]] = m["method"]
                    await write.send(msg)

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump_in)
            tg.start_soon(pump_out)
            async with ClientSession(tap_in_recv, tap_out_send) as session:
                init = await session.initialize()
                assert init.protocol_version == HANDSHAKE_VERSION, init.protocol_version
                assert init.server_info.name == "mem0-queue", init.server_info

                tools = await session.list_tools()
                names = {t.name for t in tools.tools}
                assert names >= CORE_TOOLS, names

                saved = await session.call_tool(
                    "mem0_save", {"content": SECRET, "project": "python-sdk", "metadata": {"tags": ["sdk"]}}
                )
                assert not saved.is_error, structured_text(saved)
                sc = saved.structured_content
                assert sc["status"] == "queued" and sc["deduplicated"] is False, sc
                assert structured_text(saved).startswith("queued"), structured_text(saved)
                again = await session.call_tool("mem0_save", {"content": SECRET, "project": "python-sdk"})
                assert again.structured_content["id"] == sc["id"], again.structured_content
                assert again.structured_content["deduplicated"] is True

                refused = await session.call_tool("mem0_save", {"content": 5})
                assert refused.is_error, structured_text(refused)
                assert structured_text(refused).startswith("NOT QUEUED"), structured_text(refused)

                status = await session.call_tool("mem0_queue_status", {})
                assert not status.is_error, structured_text(status)
                assert "not configured" in structured_text(status), structured_text(status)
                assert status.structured_content["counts"]["pending"] == 1, status.structured_content

                recent = await session.call_tool("mem0_recent", {"limit": 5})
                assert not recent.is_error, structured_text(recent)
                memories = recent.structured_content["memories"]
                assert [m["content"] for m in memories] == [SECRET], memories
                assert memories[0]["id"] == sc["id"]

                bad_limit = await session.call_tool("mem0_recent", {"limit": 0})
                assert bad_limit.is_error, structured_text(bad_limit)

                # The lifecycle tools, every one, on a save never sent (no
                # server is configured: changes apply to the local copy).
                assert names >= LIFECYCLE_TOOLS, names
                mid = sc["id"]
                got = await session.call_tool("mem0_get", {"id": mid})
                assert not got.is_error, structured_text(got)
                assert got.structured_content["memory"]["memory"] == SECRET, got.structured_content
                assert got.structured_content["memory"]["state"] == "pending"
                upd = await session.call_tool("mem0_update", {"id": mid, "text": SECRET + " (edited)"})
                assert not upd.is_error, structured_text(upd)
                assert upd.structured_content["change"]["outcome"] == "applied_locally", upd.structured_content
                empty = await session.call_tool("mem0_update", {"id": mid})
                assert empty.is_error and structured_text(empty).startswith("NOT CHANGED"), structured_text(empty)
                listed = await session.call_tool("mem0_list", {"project": "python-sdk"})
                assert not listed.is_error, structured_text(listed)
                lc = listed.structured_content
                assert lc["local_only"] is True and lc["total"] == 1, lc
                assert lc["memories"][0]["memory"] == SECRET + " (edited)", lc
                ents = await session.call_tool("mem0_entities", {})
                assert not ents.is_error, structured_text(ents)
                assert {"type": "user", "id": "python-sdk", "local_memories": 1, "on_server": False} in [
                    {k: e[k] for k in ("type", "id", "local_memories", "on_server")}
                    for e in ents.structured_content["entities"]
                ], ents.structured_content
                unconfirmed = await session.call_tool("mem0_forget", {"project": "python-sdk"})
                assert unconfirmed.is_error, structured_text(unconfirmed)
                other = await session.call_tool("mem0_save", {"content": "forget me", "project": "python-sdk"})
                deleted = await session.call_tool("mem0_delete", {"id": other.structured_content["id"]})
                assert not deleted.is_error, structured_text(deleted)
                forgot = await session.call_tool(
                    "mem0_forget", {"project": "python-sdk", "confirm": "python-sdk"}
                )
                assert not forgot.is_error, structured_text(forgot)
                assert forgot.structured_content["forget"]["cancelled"] == 1, forgot.structured_content
                gone = await session.call_tool("mem0_get", {"id": mid})
                assert gone.is_error, structured_text(gone)
            tg.cancel_scope.cancel()

    schemas = schemas_by_revision[HANDSHAKE_VERSION]
    responses = 0
    for m in received:
        if "id" in m and ("result" in m or "error" in m):
            method = sent_methods.get(m["id"])
            assert method is not None, f"a response to an unknown request id: {m}"
            check_reply(schemas, m, method)
            responses += 1
        elif "method" in m and "id" not in m:
            schemas.check("JSONRPCNotification", m, f"the {m['method']} notification")
            schemas.check("ServerNotification", m, f"the {m['method']} notification")
        else:
            schemas.check("JSONRPCRequest", m, "a server request")
    assert responses == len(sent_methods), (responses, sent_methods)
    return responses


class RawPipe:
    """A server on plain pipes: one JSON-RPC message per line."""

    def __init__(self, binary, data, home, stderr_file):
        env = server_env(home)
        self.proc = subprocess.Popen(
            [binary, "--data-dir", data, "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            env=env,
        )
        self.buf = b""

    def send(self, msg):
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def reply(self, req_id, timeout=TIMEOUT_S):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    raise AssertionError(f"stdout carried a non-JSON line: {line[:200]!r}")
                assert msg.get("jsonrpc") == "2.0", msg
                if msg.get("id") == req_id:
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no reply to request {req_id} within {timeout} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"the server closed stdout before replying to {req_id}")
                self.buf += chunk

    def close(self):
        self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the server did not exit within 30 s of stdin closing")


def stateless_meta():
    return {
        "io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-client-check-raw", "version": "0"},
    }


def raw_stateless(binary, data, home, stderr_file, schemas):
    pipe = RawPipe(binary, data, home, stderr_file)
    checked = 0
    try:
        requests = [
            ("server/discover", {"_meta": stateless_meta()}),
            ("tools/list", {"_meta": stateless_meta()}),
            (
                "tools/call",
                {
                    "_meta": stateless_meta(),
                    "name": "mem0_save",
                    "arguments": {"content": "saved over a raw 2026-07-28 pipe", "project": "raw-pipe"},
                },
            ),
            ("tools/call", {"_meta": stateless_meta(), "name": "mem0_recent", "arguments": {"limit": 0}}),
        ]
        request_defs = {
            "server/discover": "DiscoverRequest",
            "tools/list": "ListToolsRequest",
            "tools/call": "CallToolRequest",
        }
        for i, (method, params) in enumerate(requests, start=1):
            req = {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            # The request itself is checked too, so a failure below is the server's.
            schemas.check(request_defs[method], req, f"our {method} request")
            pipe.send(req)
            msg = pipe.reply(i)
            check_reply(schemas, msg, method, f" ({STATELESS_VERSION})")
            checked += 1
            result = msg["result"]
            if method == "server/discover":
                assert STATELESS_VERSION in result.get("supportedVersions", []), result
                assert "tools" in result.get("capabilities", {}), result
            elif method == "tools/list":
                assert {t["name"] for t in result["tools"]} >= CORE_TOOLS, result["tools"]
            elif params["name"] == "mem0_save":
                assert result.get("isError") is not True, result
                assert result["structuredContent"]["status"] == "queued", result
            else:
                assert result.get("isError") is True, result
    finally:
        code = pipe.close()
    assert code == 0, f"the raw-pipe server exited with {code}"
    return checked


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    binary, schema_dir = sys.argv[1], sys.argv[2]
    schemas_by_revision = {
        rev: Schemas(load_schema(schema_dir, rev), rev) for rev in (HANDSHAKE_VERSION, STATELESS_VERSION)
    }
    with tempfile.TemporaryDirectory(prefix="mem0-queue-pycheck-") as tmp:
        home = os.path.join(tmp, "home")
        os.mkdir(home)
        data = os.path.join(tmp, "data")
        stderr_path = os.path.join(tmp, "server-stderr.log")
        with open(stderr_path, "w+", encoding="utf-8") as stderr_file:

            async def sdk():
                with anyio.fail_after(TIMEOUT_S):
                    return await sdk_session(binary, data, home, stderr_file, schemas_by_revision)

            n_sdk = anyio.run(sdk)
            print(f"ok: python mcp SDK session at {HANDSHAKE_VERSION}: {n_sdk} responses valid")
            n_raw = raw_stateless(binary, data, home, stderr_file, schemas_by_revision[STATELESS_VERSION])
            print(f"ok: raw {STATELESS_VERSION} pipe: server/discover and {n_raw - 1} more replies valid")
        with open(stderr_path, encoding="utf-8", errors="replace") as f:
            err = f.read()
        assert "4b1d" not in err, f"server stderr holds memory text:\n{err}"
    print("PASSED: python mcp SDK client and official schemas")
    return 0


if __name__ == "__main__":
    sys.exit(main())
