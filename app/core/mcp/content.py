"""An MCP tool result as text an LLM can use."""

from __future__ import annotations

import base64
import binascii
import json

import mcp_types as types

MAX_OUTPUT_CHARS = 20_000
_MAX_INLINE_RESOURCE_CHARS = 8_000


def result_to_text(result: types.CallToolResult) -> str:
    """Text blocks as they are; structured content as JSON when there is no text;
    images, audio and binary resources described (the model cannot see bytes); text
    resources inlined with their URI."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent | types.AudioContent):
            kind = "image" if isinstance(block, types.ImageContent) else "audio"
            parts.append(f"[{kind}: {block.mime_type}, {_decoded_size(block.data)} bytes]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                text = resource.text
                if len(text) > _MAX_INLINE_RESOURCE_CHARS:
                    text = text[:_MAX_INLINE_RESOURCE_CHARS] + " [...]"
                parts.append(f"[resource {resource.uri}]\n{text}")
            else:
                size = _decoded_size(resource.blob)
                parts.append(
                    f"[resource {resource.uri}: {resource.mime_type or 'binary'}, {size} bytes]"
                )
        elif isinstance(block, types.ResourceLink):
            label = block.title or block.name
            parts.append(
                f"[link: {label} <{block.uri}>]"
                + (f" {block.description}" if block.description else "")
            )
    if result.structured_content is not None and not any(
        isinstance(b, types.TextContent) for b in result.content
    ):
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    text = (
        "\n".join(parts)
        if parts
        else ("(no output)" if not result.is_error else "(error without details)")
    )
    return text if len(text) <= MAX_OUTPUT_CHARS else text[:MAX_OUTPUT_CHARS] + " [truncated]"


def _decoded_size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except (binascii.Error, ValueError):
        return len(data)
