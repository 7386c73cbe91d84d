"""Lore as a model for the real `openai` Python package: run by tests/api/openai.rs with
LORE_URL and LORE_KEY set; prints one JSON object with what the client saw."""
import json
import os

from openai import OpenAI

client = OpenAI(base_url=os.environ["LORE_URL"] + "/v1", api_key=os.environ["LORE_KEY"])
question = "How many days of paid vacation do I get?"

models = [m.id for m in client.models.list()]
whole = client.chat.completions.create(
    model="lore", messages=[{"role": "user", "content": question}], temperature=0.3, max_tokens=300
)
extra = whole.model_extra or {}
streamed = []
finish = None
lore = None
for chunk in client.chat.completions.create(
    model="lore", messages=[{"role": "user", "content": question}], stream=True
):
    choice = chunk.choices[0]
    if choice.delta.content:
        streamed.append(choice.delta.content)
    if choice.finish_reason:
        finish = choice.finish_reason
        lore = (chunk.model_extra or {}).get("lore")
try:
    client.chat.completions.create(model="lore", messages=[{"role": "system", "content": "no question"}])
    error = None
except Exception as e:  # the SDK raises on a 400, with OpenAI's error body
    error = {"type": type(e).__name__, "status": getattr(e, "status_code", None)}
print(json.dumps({
    "models": models,
    "content": whole.choices[0].message.content,
    "finish_reason": whole.choices[0].finish_reason,
    "lore": extra.get("lore"),
    "usage": whole.usage.total_tokens if whole.usage else None,
    "streamed": "".join(streamed),
    "stream_finish": finish,
    "stream_lore": lore,
    "error": error,
}))
