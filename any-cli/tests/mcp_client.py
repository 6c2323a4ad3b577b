"""The official MCP Python SDK's client against `any agent --serve-mcp` (run by
tests/serve_openai.rs).

Usage: mcp_client.py ANY_BINARY. The client starts the binary itself, over stdio, as MCP
clients start servers. Prints `ok <case>` per case; any failure raises, so the process exits
non-zero with the traceback.
"""

import sys

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

any_binary = sys.argv[1]
server = StdioServerParameters(
    command=any_binary,
    args=["agent", "--serve-mcp", "--name", "helper", "--threads", "2", "-n", "24"],
)


def ok(case):
    print(f"ok {case}", flush=True)


def text_of(result):
    return "\n".join(block.text for block in result.content if block.type == "text")


async def main():
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.server_info.name == "helper", init
            ok("initialize")

            listed = await session.list_tools()
            assert [t.name for t in listed.tools] == ["helper"], listed
            schema = listed.tools[0].input_schema
            assert schema["properties"]["task"]["type"] == "string", schema
            assert "task" in schema.get("required", []), schema
            ok("list tools")

            answer = await session.call_tool("helper", {"task": "Say hello."})
            assert not answer.is_error, answer
            assert text_of(answer).strip(), answer
            ok("call")

            # Arguments that violate the schema: an error result naming the problem.
            wrong = await session.call_tool("helper", {"task": 5})
            assert wrong.is_error, wrong
            assert "invalid arguments for tool `helper`" in text_of(wrong), wrong
            missing = await session.call_tool("helper", {})
            assert missing.is_error, missing
            assert "task" in text_of(missing), missing
            ok("invalid arguments")

            # An unknown tool is a protocol error, and the server goes on serving.
            try:
                await session.call_tool("nothing-here", {})
            except MCPError as e:
                assert "nothing-here" in str(e), e
            else:
                raise AssertionError("an unknown tool did not fail")
            again = await session.call_tool("helper", {"task": "Say hello."})
            assert not again.is_error, again
            ok("unknown tool")


anyio.run(main)
