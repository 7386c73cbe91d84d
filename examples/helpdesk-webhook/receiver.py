#!/usr/bin/env python3
"""A help-desk webhook receiver: a new ticket gets Lore's suggested reply as an internal note.

The help desk (Zendesk here; others send a similar payload) calls this receiver when a ticket is
created. The receiver checks the webhook's signature, asks Lore for a suggestion
(`POST /v1/suggest`) with the ticket's subject and description, and adds the suggestion, with its
sources and how sure Lore is, to the ticket as an internal note the agent sees before replying.
Nothing reaches the customer without an agent.

Standard library only. Configuration by environment:
  LORE_URL         e.g. http://127.0.0.1:8080
  LORE_KEY         an agent's API key for Lore
  HELPDESK_URL     e.g. https://acme.zendesk.com
  HELPDESK_AUTH    the Authorization header value for the help desk's API (e.g. "Basic …")
  WEBHOOK_SECRET   the webhook's signing secret
  PORT             where to listen (0: any free port; the port is printed first)

Run: python3 examples/helpdesk-webhook/receiver.py, and point the help desk's webhook at
http://<host>:<port>/webhook.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LORE_URL = os.environ["LORE_URL"].rstrip("/")
LORE_KEY = os.environ["LORE_KEY"]
HELPDESK_URL = os.environ["HELPDESK_URL"].rstrip("/")
HELPDESK_AUTH = os.environ.get("HELPDESK_AUTH", "")
WEBHOOK_SECRET = os.environ["WEBHOOK_SECRET"].encode()


def signed(timestamp: str, body: bytes, signature: str) -> bool:
    """Zendesk's scheme: base64(HMAC-SHA256(secret, timestamp + body))."""
    expected = base64.b64encode(hmac.new(WEBHOOK_SECRET, timestamp.encode() + body, hashlib.sha256).digest())
    return hmac.compare_digest(expected, signature.encode())


def call(method: str, url: str, payload: dict, auth: str) -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method=method)
    request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", auth)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"{}")


def note(suggestion: dict) -> str:
    """The internal note: the reply, its sources, and how sure Lore is."""
    if suggestion.get("kind") in ("no_answer", "refused"):
        return "Lore found no answer in the knowledge base for this ticket."
    lines = ["Suggested reply from Lore (check before sending):", "", suggestion["reply"], ""]
    for citation in suggestion.get("citations", []):
        page = f", page {citation['page']}" if citation.get("page") else ""
        lines.append(f"[{citation['marker']}] {citation['title']}{page} ({citation['source_path']})")
    if suggestion.get("answerability") is not None:
        lines.append(f"Confidence: {suggestion['answerability']:.2f}")
    return "\n".join(lines)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/webhook":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        timestamp = self.headers.get("X-Zendesk-Webhook-Signature-Timestamp", "")
        signature = self.headers.get("X-Zendesk-Webhook-Signature", "")
        if not signed(timestamp, body, signature):
            self.send_error(401, "bad signature")
            return
        ticket = json.loads(body)["ticket"]
        suggestion = call("POST", f"{LORE_URL}/v1/suggest", {
            "subject": ticket["subject"],
            "body": ticket.get("description", ""),
            "requester": ticket.get("requester"),
            "tags": ticket.get("tags", []),
        }, f"Bearer {LORE_KEY}")
        comment = {"ticket": {"comment": {"body": note(suggestion), "public": False}}}
        call("PUT", f"{HELPDESK_URL}/api/v2/tickets/{ticket['id']}.json", comment, HELPDESK_AUTH)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"noted": ticket["id"], "kind": suggestion.get("kind")}).encode())

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "0"))), Handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
