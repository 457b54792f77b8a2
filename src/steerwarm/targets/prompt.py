"""Prompting as a target: a system instruction of ours (warm, cold, or a user's file) placed in the model's chat
template so that the only difference from the `base` target is that instruction.

The instruction meets the chat template by one rule, found generically by rendering the template twice (a probe
conversation with a sentinel system message, and the same conversation without one):
- If the template writes a DEFAULT system prompt when none is given (SmolLM2: "You are a helpful AI assistant named
  SmolLM, trained by Hugging Face"), the system message we send is that default, a blank line (SEPARATOR), then our
  instruction. The default is what the no-system rendering holds where the sentinel rendering holds the sentinel.
- If it writes none (or an empty one, e.g. a header with no text), the system message is our instruction alone.
- A template that refuses a system message, or does not write the message's text exactly once, is refused.

Invariants:
- With a default, the prompt target's rendered conversation equals the base target's with SEPARATOR + instruction
  inserted right after the default (checked on a probe conversation whenever a system message is built: a
  template for which it does not hold is refused, never silently measured). Without one, the only difference is
  one system turn holding the instruction.
- Prompt texts are read as UTF-8 and stripped of leading and trailing whitespace; `SystemPrompt.sha256` is the hash
  of that stripped text, so any change of the words changes the target's description.
- The shipped texts (`prompts/warm.txt`, `prompts/cold.txt`, package data) ask for the paper's warm and cold styles
  in our own words and both say: keep the answer's facts and accuracy unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steerwarm.paths import display, package_dir

if TYPE_CHECKING:
    from steerwarm.model.chat import Message
    from steerwarm.model.load import LoadedModel

SHIPPED_PROMPTS = ("warm", "cold")
SEPARATOR = "\n\n"  # between the template's default system prompt and our instruction
SENTINEL = "STEERWARM-SYSTEM-SENTINEL-7d1e"
PROBE_USER = "hello"


@dataclass(frozen=True)
class SystemPrompt:
    """A system instruction of ours: `name` is warm, cold or the file's name; `text` is stripped."""

    name: str
    text: str
    source: str  # "shipped" or the file's path (display form)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def record(self) -> dict[str, Any]:
        return {"prompt": self.name, "prompt_source": self.source, "prompt_sha256": self.sha256}


def prompts_dir() -> Path:
    """The folder of the shipped prompt texts (package data of steerwarm.targets)."""
    return package_dir("steerwarm.targets") / "prompts"


def load_prompt(value: str) -> SystemPrompt:
    """The prompt `prompt=VALUE` names: `warm` or `cold` (shipped; these names win over files of the same name,
    write `./warm` for such a file), else a UTF-8 text file holding a system prompt."""
    usage = "use prompt=warm, prompt=cold or prompt=FILE (a UTF-8 text file holding a system prompt)"
    if value in SHIPPED_PROMPTS:
        return SystemPrompt(value, (prompts_dir() / f"{value}.txt").read_text(encoding="utf-8").strip(), "shipped")
    if not value.strip():
        raise ValueError(f"prompt= names no prompt: {usage}")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"prompt={value}: no such file; {usage}")
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ValueError(f"prompt={value}: the file is not UTF-8 text ({exc.reason}); {usage}") from exc
    if not text:
        raise ValueError(f"prompt={value}: the file is empty; write the system prompt into it, or {usage}")
    return SystemPrompt(path.name, text, display(path))


def user_turn(user: str, system: str | None = None) -> list[Message]:
    """A single-turn conversation: the user message, after a system message when `system` is given."""
    head: list[Message] = [{"role": "system", "content": system}] if system is not None else []
    return [*head, {"role": "user", "content": user}]


def default_system_prompt(loaded: LoadedModel) -> str | None:
    """The system prompt the chat template writes when the conversation has none (None when it writes none or an
    empty one); see the module doc. Raises ValueError for a template that cannot take a system message."""
    from steerwarm.model.chat import ChatTemplateError, chat_text

    try:
        with_system = chat_text(loaded, user_turn(PROBE_USER, SENTINEL))
    except ChatTemplateError:
        raise
    except Exception as exc:  # jinja raises its own exception types (e.g. "System role not supported")
        raise ValueError(f"the chat template of {loaded.name} refuses a system message ({exc}); a prompt target "
                         "needs one (pass --chat-template FILE with a template that accepts it)") from exc
    if with_system.count(SENTINEL) != 1:
        raise ValueError(f"the chat template of {loaded.name} does not write a system message's text exactly once; "
                         "a prompt target cannot place its instruction (pass --chat-template FILE)")
    without = chat_text(loaded, user_turn(PROBE_USER))
    before, after = with_system.split(SENTINEL)
    if len(without) >= len(before) + len(after) and without.startswith(before) and without.endswith(after):
        return without[len(before):len(without) - len(after)] or None
    return None


def system_message(loaded: LoadedModel, instruction: str) -> str:
    """The system message that carries `instruction` for this model: the template's default system prompt, then
    SEPARATOR and the instruction, or the instruction alone (see the module doc). Checks the invariant."""
    from steerwarm.model.chat import chat_text

    default = default_system_prompt(loaded)
    if default is None:
        return instruction
    message = default + SEPARATOR + instruction
    base = chat_text(loaded, user_turn(PROBE_USER))
    rendered = chat_text(loaded, user_turn(PROBE_USER, message))
    at = base.find(default) + len(default)
    if rendered != base[:at] + SEPARATOR + instruction + base[at:]:
        raise ValueError(f"the chat template of {loaded.name} writes its default system prompt differently when a "
                         "system message is given; a prompt target would differ from base by more than its "
                         "instruction (pass --chat-template FILE)")
    return message
