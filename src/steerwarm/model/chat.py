"""Chat templates: a conversation rendered as the model's own prompt text.

Invariants:
- The model's own template is used as it is (its default system prompt included unless one is given), or the one a
  user supplied at load time (`load(..., chat_template=FILE)`, `--chat-template FILE`).
- A tokenizer without any template is a `ChatTemplateError` that says how to supply one: steerwarm never guesses a
  chat format, because a wrong one silently changes what the model is asked (and every measurement made with it).
"""

from __future__ import annotations

from collections.abc import Sequence

from steerwarm.model.load import LoadedModel

Message = dict[str, str]


class ChatTemplateError(ValueError):
    """The model has no chat template; the message names the option that supplies one."""


def chat_text(loaded: LoadedModel, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
    """The model's chat template applied to `messages`, as text."""
    tok = loaded.tokenizer
    if not getattr(tok, "chat_template", None):
        raise ChatTemplateError(
            f"model {loaded.name} has no chat template; pass --chat-template FILE (a Jinja template over `messages`, "
            "e.g. the one of the instruct model it was tuned from), or load(..., chat_template=FILE)")
    out = tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)
    return str(out)
