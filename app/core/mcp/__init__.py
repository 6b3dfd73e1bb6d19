"""MCP client: external tool servers from mcp.json as llama_index tools."""

from app.core.mcp.config import ServerConfig, load_mcp_config
from app.core.mcp.connection import ToolCallResult
from app.core.mcp.manager import MCPManager, sanitize_tool_name

__all__ = ["MCPManager", "ServerConfig", "ToolCallResult", "load_mcp_config", "sanitize_tool_name"]
