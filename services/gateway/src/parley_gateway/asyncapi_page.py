"""`/asyncapi`: the AsyncAPI document rendered as one HTML page, on the server.

An AsyncAPI renderer is a large browser bundle fetched from a CDN; the page must work with no Internet
access, so the gateway renders the document's channels, messages and payload schemas itself (every
schema reference is a link to the schema).
"""

from __future__ import annotations

import html
import re
from typing import Any

import msgspec

_REF = re.compile(r"&quot;#/components/schemas/([^&]+)&quot;")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 72rem;
       padding: 1rem 2rem; color: #222; }
code, pre { font: 13px ui-monospace, monospace; }
pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; border-radius: 4px; }
section.channel { border-top: 1px solid #ddd; padding: .4rem 0; }
.tag { display: inline-block; background: #eef; border-radius: 3px; padding: 0 .4rem; margin-right: .3rem; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ddd; padding: .2rem .5rem; text-align: left; }
"""


def _json(value: Any) -> str:
    """Pretty JSON, escaped, its schema references made links."""
    text = html.escape(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())
    return _REF.sub(
        lambda m: f'<a href="#schema-{m.group(1)}">&quot;#/components/schemas/{m.group(1)}&quot;</a>', text
    )


def _text(value: str) -> str:
    """Prose (the document's descriptions are CommonMark), escaped, its `code` and **bold** spans set."""
    return _BOLD.sub(r"<b>\1</b>", _CODE.sub(r"<code>\1</code>", html.escape(value)))


def _payload(payload: Any, schemas: dict[str, Any]) -> str:
    """A message's payload: the schema it names, shown in place (its own references stay links)."""
    ref = payload.get("$ref", "") if isinstance(payload, dict) else ""
    name = ref.rsplit("/", 1)[-1]
    if ref.startswith("#/components/schemas/") and name in schemas:
        return (
            f'<a href="#schema-{html.escape(name)}">{html.escape(name)}</a><pre>{_json(schemas[name])}</pre>'
        )
    return f"<pre>{_json(payload)}</pre>"


def _message_name(ref: dict[str, str]) -> str:
    return ref["$ref"].rsplit("/", 1)[-1]


def render_asyncapi(document: dict[str, Any]) -> str:
    esc = html.escape
    info = document["info"]
    messages: dict[str, Any] = document["components"]["messages"]
    schemas: dict[str, Any] = document["components"]["schemas"]
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(info['title'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(info['title'])} <small>{esc(info['version'])}</small></h1>",
        f'<p>AsyncAPI {esc(document["asyncapi"])}: <a href="/asyncapi.json">/asyncapi.json</a>; '
        'the HTTP API: <a href="/docs">/docs</a>.</p>',
        f"<p>{_text(info.get('description', ''))}</p>",
        "<h2>Streams</h2><table><tr><th>stream</th><th>subjects</th><th>description</th></tr>",
    ]
    for stream in document.get("x-parley-streams", []):
        out.append(
            f"<tr><td><code>{esc(stream['name'])}</code></td>"
            f"<td><code>{esc(', '.join(stream['subjects']))}</code></td>"
            f"<td>{_text(stream.get('description', ''))}</td></tr>"
        )
    out.append("</table><h2>Channels</h2>")
    for channel_id, channel in document["channels"].items():
        if channel.get("address") is None:
            continue  # a reply inbox: shown with its request
        out.append(f'<section class="channel" id="channel-{esc(channel_id)}">')
        out.append(f"<h3>{esc(channel_id)}</h3><p><code>{esc(channel['address'])}</code></p>")
        tags = [f"stream {channel['x-parley-stream']}"] if "x-parley-stream" in channel else []
        if "x-parley-publisher" in channel:
            tags.append(f"published by {channel['x-parley-publisher']}")
        out.append("".join(f'<span class="tag">{esc(tag)}</span>' for tag in tags))
        out.append(f"<p>{_text(channel.get('description', ''))}</p>")
        for parameter, spec in channel.get("parameters", {}).items():
            meaning = spec.get("description") or "one of " + ", ".join(spec.get("enum", ()))
            out.append(f"<p><code>{{{esc(parameter)}}}</code>: {_text(meaning)}</p>")
        channel_summary = channel.get("description", "").split(". ", 1)[-1]
        replies = document["channels"].get(f"{channel_id}.reply", {}).get("messages", {})
        for role, ref in [*channel["messages"].items(), *replies.items()]:
            name = _message_name(ref)
            message = messages[name]
            label = esc(name) if role == name else f"{esc(role)}: {esc(name)}"
            out.append(f"<details><summary><b>{label}</b>")
            if message.get("summary") and message["summary"] != channel_summary:
                out.append(f" — {_text(message['summary'])}")
            out.append(f"</summary>{_payload(message['payload'], schemas)}</details>")
        out.append("</section>")
    out.append("<h2>Schemas</h2>")
    for name, schema in schemas.items():
        out.append(f'<h4 id="schema-{esc(name)}">{esc(name)}</h4><pre>{_json(schema)}</pre>')
    out.append("</body></html>")
    return "\n".join(out)
