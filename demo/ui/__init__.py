"""The page: its layout (a builder per tab), the handlers of each step, typed replies, the look,
and the stateless tools (API endpoints and MCP)."""
