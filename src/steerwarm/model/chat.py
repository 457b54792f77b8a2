"""Chat templates: a conversation rendered as the model's own prompt text.

Invariant: the model's own template is used as it is (its default system prompt included unless one is given); a
tokenizer without a template gets the messages joined by newlines, so tiny test models still work.
"""

from __future__ import annotations

from collections.abc import Sequence

from steerwarm.model.load import LoadedModel

Message = dict[str, str]


def chat_text(loaded: LoadedModel, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
    """The model's chat template applied to `messages`, as text."""
    tok = loaded.tokenizer
    if not getattr(tok, "chat_template", None):
        return "\n".join(m["content"] for m in messages) + ("\n" if add_generation_prompt else "")
    out = tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)
    return str(out)
