"""A thread's in-context messages as turns need them, kept between turns by the agent's
activation: the messages, their chat form (what the model is sent), and a running count
of their characters (the context-window estimate). A turn then costs the same however
long its thread is: it reads the messages once per activation, adds only what it wrote,
and builds the model request from forms made once per message.

A copy is current while the store's head of the thread (see `ContextIds`) is the one it
was taken or last written at; a turn that fails leaves the copy to be dropped."""

from collections.abc import Iterable, Sequence
from typing import Final

from kelpie.agent._turn import to_chat
from kelpie.llm import ChatMessage, HistoryEncodings
from kelpie.schemas import Message

# Rough memory of one kept message besides its text (the Message, its chat form, lists),
# and how many copies of its text are kept: the Message's, the chat form's, its provider
# encoding and the history's joined encoding (HistoryEncodings).
MESSAGE_OVERHEAD_BYTES: Final = 1_200
TEXT_COPIES: Final = 4


def message_chars(message: Message) -> int:
    """The characters of a message that count towards the context-window estimate."""
    chars = len(message.text or "") + len(message.reasoning or "")
    for call in message.tool_calls:
        chars += len(call.arguments)
    return chars


class ThreadContext:
    """One thread's in-context list: `system` (its first message, when it is a system
    message) and `history` (the rest, oldest first), with `chat` (the history's chat form)
    and `chars` (the history's characters) kept in step. `head` is the store's head of
    the thread this copy matches."""

    def __init__(self, head: int, messages: Sequence[Message]) -> None:
        self.head = head
        self.system: Message | None = None
        self.history: list[Message] = []
        self.chat: list[ChatMessage] = []
        self.chars = 0
        self.nbytes = 0
        self.reset(messages)

    def reset(self, messages: Sequence[Message]) -> None:
        """The whole list anew (first message system or not)."""
        if messages and messages[0].role == "system":
            self.system, rest = messages[0], list(messages[1:])
        else:
            self.system, rest = None, list(messages)
        self.history, self.chat, self.chars, self.nbytes = [], [], 0, 0
        # The history's joined wire encodings: kept while `chat` only grows at its end.
        self.encodings = HistoryEncodings()
        self.extend(rest)

    def extend(self, messages: Iterable[Message]) -> None:
        """Messages added at the end of the thread."""
        for message in messages:
            chars = message_chars(message)
            self.history.append(message)
            self.chat.extend(to_chat([message]))
            self.chars += chars
            self.nbytes += MESSAGE_OVERHEAD_BYTES + TEXT_COPIES * chars

    @property
    def last(self) -> Message | None:
        """The thread's newest message."""
        return self.history[-1] if self.history else self.system

    def __len__(self) -> int:
        return len(self.history) + (self.system is not None)
