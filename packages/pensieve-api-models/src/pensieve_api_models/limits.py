"""What one request body may hold: each number with the reason it is that number.

Each is checked at the wire (a 400, or a 413 for bytes, naming the JSON path) before any work
is done; docs/api.md lists them. Claude Code's largest bodies sit far inside every one."""

# Arrays and objects inside one another; Claude Code's deepest is ~12 (schemas ~8). msgspec
# recurses to ~1000 and chat templates fail near 500 (a RecursionError: a 500, not a 400).
MAX_NESTING_DEPTH = 64

# The API rejects it; larger values never fit a context and overflow 32-bit token counts.
MAX_TOKENS_LIMIT = 2**31 - 1

# Every stop string is matched against each new token: 100,000 slowed a whole batch 10x.
MAX_STOP_SEQUENCES = 64
MAX_STOP_SEQUENCE_CHARS = 1024

# Claude Code sends 12-60 tools; a grammar is compiled for each one of a constrained call.
MAX_TOOLS = 512

# One tool's input_schema as JSON; Claude Code's largest are ~3 KB, big MCP ones ~20 KB.
MAX_TOOL_SCHEMA_BYTES = 64 * 1024

# count_tokens runs outside the generation admission cap and tokenising costs ~0.7 s per MB:
# 8 MiB holds twice the text of a 1M-token context (images are refused anyway).
COUNT_TOKENS_MAX_BODY_BYTES = 8 * 1024 * 1024
