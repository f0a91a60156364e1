"""Countersign over MCP (needs the ``mcp`` extra: ``pip install 'countersign-client[mcp]'``).

``countersign-mcp serve``: an MCP server with one tool, ``request_approval``, that asks and
returns the decision. ``countersign-mcp gate -- COMMAND…``: a gateway in front of a stdio MCP
server that asks before each tool call and runs only approved ones. See docs/mcp.md.
"""

from countersign_client.mcp._ask import DEFAULT_WAIT, Answer, Asker
from countersign_client.mcp.gate import Upstream, build_gate
from countersign_client.mcp.serve import TOOL_NAME, build_server

__all__ = ["DEFAULT_WAIT", "TOOL_NAME", "Answer", "Asker", "Upstream", "build_gate", "build_server"]
