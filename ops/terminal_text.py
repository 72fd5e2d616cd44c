"""Text bound for a terminal that came from outside: a user, a file, the API, a stored record.

Such text is data, never markup: it reaches rich only as `Text` (never as a `str`, which rich
reads as markup), so `[/]` or `[bold]` in a prompt prints as typed and cannot crash or restyle
the output; and a control character prints as `\\xNN`, never raw, so none can drive the
terminal (records from before prompts were checked may hold them, and messages may quote a
file's bytes).
"""

from __future__ import annotations

import re
from typing import Final

from rich.text import Text

# Unicode's control characters (Cc: U+0000-001F, U+007F-009F) but newline and tab.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(value: object, style: str = "") -> Text:
    """`value` as text to print as it is: no markup, control characters escaped visibly (a CR
    or CRLF line break, and U+2028/U+2029, become a newline, a tab spaces)."""
    # Tabs expanded here: rich measures a tab as no width, so a table cell holding one is cut.
    # Unicode's line and paragraph separators are line breaks too: rich would measure them as
    # part of a word and cut the cell short.
    text = str(value).replace("\r\n", "\n").replace("\r", "\n").expandtabs()
    text = text.replace("\u2028", "\n").replace("\u2029", "\n")
    return Text(_CONTROL.sub(lambda char: f"\\x{ord(char[0]):02x}", text), style=style)
