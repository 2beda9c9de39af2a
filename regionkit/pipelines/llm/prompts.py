"""Prompts as versioned files: `prompts/<name>.v<N>.toml`, each with the id rows record.

A prompt file holds the system message, the user message (a `string.Template`: `$facts` and
the like, filled by the step from what is known about a region), the sampling parameters and
the message that asks again after an invalid answer. Changing a prompt means a new file with a
new version, so a row's `provenance.prompt_id` always names the text that produced it.
"""

from __future__ import annotations

import base64
import json
import string
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPTS = Path(__file__).parent / "prompts"


@dataclass(frozen=True)
class Prompt:
    """A prompt file, read.

    Attributes:
        id: `<name>.v<N>`, the file's stem.
        system: the system message.
        user: the user message, a `string.Template` over the step's fields.
        correction: asks again after an invalid answer; `$problems` lists what was wrong.
        temperature: sampling temperature.
        max_tokens: most tokens an answer may take.
    """

    id: str
    system: str
    user: str
    correction: str
    temperature: float
    max_tokens: int

    def messages(
        self, fields: dict[str, str], images: Sequence[bytes] = ()
    ) -> list[dict[str, Any]]:
        """The chat messages for one request (raises KeyError naming a field not given);
        `images` (JPEG bytes) follow the user's text, for a vision endpoint."""
        text = string.Template(self.user).substitute(fields).strip()
        content: str | list[dict[str, Any]] = text
        if images:
            content = [{"type": "text", "text": text}] + [
                {"type": "image_url", "image_url": {"url": jpeg_data_url(image)}}
                for image in images
            ]
        return [
            {"role": "system", "content": self.system.strip()},
            {"role": "user", "content": content},
        ]

    def again(self, answer: str, problems: list[str]) -> list[dict[str, Any]]:
        """The turns that follow an invalid `answer`, asking for a corrected one."""
        listed = "\n".join(f"- {problem}" for problem in problems)
        text = string.Template(self.correction).substitute(problems=listed).strip()
        return [{"role": "assistant", "content": answer}, {"role": "user", "content": text}]

    def params(self, schema_name: str, schema: dict[str, Any]) -> dict[str, Any]:
        """Sampling parameters and the structured-output format (a strict JSON schema)."""
        return {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema, "strict": True},
            },
        }


def jpeg_data_url(jpeg: bytes) -> str:
    """JPEG bytes as the `data:` URL the chat API takes for an image."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def load_prompt(prompt_id: str, folder: Path = PROMPTS) -> Prompt:
    """The prompt `prompt_id` (e.g. `describe_region.v1`) from `folder`."""
    path = folder / f"{prompt_id}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.toml"))
        raise FileNotFoundError(f"no prompt {prompt_id!r} in {folder}; there are {known}")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    missing = {"system", "user", "correction", "temperature", "max_tokens"} - set(data)
    if missing:
        raise ValueError(f"{path}: missing {sorted(missing)}")
    return Prompt(
        prompt_id,
        data["system"],
        data["user"],
        data["correction"],
        float(data["temperature"]),
        int(data["max_tokens"]),
    )


def facts_text(facts: dict[str, Any]) -> str:
    """Facts as the prompt shows them: one `name: value` line each, values as JSON."""
    return "\n".join(
        f"{name}: {json.dumps(value, ensure_ascii=False)}"
        for name, value in facts.items()
        if value not in (None, [], "")
    )
